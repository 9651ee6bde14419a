// Command example is a small gin service whose routes are rate-limited by a
// remote Sluice node through api/middleware and api/client — the pattern a Go
// service copies to put Sluice in front of its own handlers.
//
// Run a node and the example side by side:
//
//	go run ./cmd/sluice serve                      # node on :8000
//	go run ./api/example --sluice 127.0.0.1:8000   # this service on :8080
//
// Give the node rules keyed on what the middleware sends (ip, route as the
// gin route template, method, tenant from X-Tenant), e.g.
//
//	{"rules": [
//	  {"name": "orders", "match": {"route": "/api/orders/*"}, "key": ["ip"], "limit": {"rate": 5, "per": "1s"}},
//	  {"name": "login",  "match": {"route": "/login", "method": "POST"}, "key": ["ip"], "limit": {"rate": 5, "per": "1m"}},
//	  {"name": "tokens", "match": {"route": "/api/complete"}, "key": ["tenant"], "limit": {"rate": 1000, "per": "1m"}}
//	]}
//
// and watch the headers and the 429s:
//
//	for i in $(seq 8); do curl -si localhost:8080/api/orders/$i | grep -E '^HTTP|^X-Ratelimit|^Retry'; done
//	curl -si -X POST -H 'X-Tenant: acme' -H 'X-Tokens: 400' localhost:8080/api/complete
//
// With --fail-closed the service answers 503 while the node is unreachable;
// by default it lets requests through.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/middleware"
)

func main() {
	listen := flag.String("listen", ":8080", "address this example service listens on")
	sluiceAddr := flag.String("sluice", "127.0.0.1:8000", "Sluice node HTTP address (host:port or http://host:port)")
	timeout := flag.Duration("timeout", middleware.DefaultTimeout, "per-decision timeout")
	closed := flag.Bool("fail-closed", false, "answer 503 when Sluice is unreachable instead of letting requests through")
	trusted := flag.String("trusted-proxies", "", "CIDRs of the load balancers whose X-Forwarded-For is believed [none: the client is the TCP peer]")
	flag.Parse()
	proxies, err := clientip.Parse(*trusted)
	if err != nil {
		log.Fatalf("--trusted-proxies: %v", err)
	}

	srv := &http.Server{Addr: *listen, Handler: newRouter(*sluiceAddr, *timeout, *closed, proxies), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("example listening on %s, limited by Sluice at %s", *listen, *sluiceAddr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func newRouter(sluiceAddr string, timeout time.Duration, failClosed bool, proxies clientip.Proxies) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Logger(), gin.Recovery())

	onError := middleware.FailOpen()
	if failClosed {
		onError = middleware.FailClosed()
	}
	limited := middleware.New(client.New(sluiceAddr),
		middleware.WithTrustedProxies(proxies), middleware.WithClientIP(), middleware.WithRouteTemplate(), middleware.WithMethod(),
		middleware.WithHeader("X-Tenant", "tenant"),
		middleware.WithCost(tokensRequested),
		middleware.WithTimeout(timeout), onError)

	api := r.Group("/", limited)
	api.GET("/api/orders/:id", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"order": c.Param("id")})
	})
	api.POST("/api/complete", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"tokens": tokensRequested(c)})
	})
	api.POST("/login", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"login": "ok"}) })

	// Health checks stay outside the limiter.
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	return r
}

// tokensRequested charges a request by the X-Tokens header (e.g. LLM tokens);
// a missing or bad header costs 1.
func tokensRequested(c *gin.Context) int64 {
	n, err := strconv.ParseInt(c.GetHeader("X-Tokens"), 10, 64)
	if err != nil {
		return 1
	}
	return n
}
