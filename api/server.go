package api

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/middleware"
	"github.com/sluicehq/sluice/api/openapi"
	"github.com/sluicehq/sluice/api/top"
)

// Engine is what the check endpoints need from a node's decision engine.
type Engine interface {
	check.Decider
	// DecideInto decides req into d, reusing d.Results; allocation-free.
	DecideInto(ctx context.Context, req *check.Request, d *check.Decision) error
	// DecideBatch decides reqs[i] into out[i], each on its own.
	DecideBatch(ctx context.Context, reqs []check.Request, out []check.Decision) error
}

// Config wires a Server. Engine is required; the rest is optional.
type Config struct {
	Engine Engine
	// Admin serves the admin routes; nil leaves them out.
	Admin admin.Admin
	// Usage serves GET /v1/usage and POST /v1/usage/reset; nil leaves them out.
	Usage Usage
	// NodeInfo says what this node is doing, for GET /v1/node (the server
	// adds the decision counts from Registry); nil leaves the route out.
	NodeInfo func() admin.NodeInfo
	// Top serves GET /v1/top and GET /v1/internal/top; nil leaves them out.
	Top *top.Service
	// Estimator answers the throttled estimates of rules dry runs; nil
	// leaves them out.
	Estimator ThrottleEstimator
	// AdminToken guards the admin routes; empty means loopback clients only.
	AdminToken string
	// NodeClient reports whether a TLS client presented a node certificate
	// (--node-ca-cert); such clients pass the admin guard like the token.
	// Nil without node TLS.
	NodeClient func(*tls.ConnectionState) bool
	// Ready reports whether the node can serve (nil = ready).
	Ready func() error
	// Registry collects the metrics served on /metrics; nil means a private one.
	Registry *prometheus.Registry
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP
	// /v1/forward-auth and /ping believe; nil trusts nobody.
	TrustedProxies clientip.Proxies
}

// dryRunEstimator is what estimates rules dry runs: the cluster's top keys
// when the node serves them, else the engine's bucket state (or nothing).
func dryRunEstimator(cfg Config) ThrottleEstimator {
	if cfg.Top != nil {
		return demandEstimator{top: cfg.Top, engine: cfg.Estimator}
	}
	return cfg.Estimator
}

// Validate reports a configuration the server cannot run with.
func (c *Config) Validate() error {
	if c.Engine == nil {
		return errors.New("api: Config.Engine is required")
	}
	return nil
}

// maxBodyBytes is the request body limit (SPEC §5: 413 above 1 MiB).
const maxBodyBytes = 1 << 20

// maxBatch is the most checks one batch may carry (SPEC §5).
const maxBatch = 1000

// Server is a node's HTTP handler.
type Server struct {
	cfg    Config
	router *gin.Engine
}

// NewServer builds the routes.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// gin's own client-IP logic trusts every proxy by default; clientip is
	// the one notion of the client here, so c.ClientIP() is just the peer.
	if err := r.SetTrustedProxies(nil); err != nil {
		return nil, err
	}
	r.Use(gin.Recovery(), newHTTPMetrics(cfg.Registry).handler(), limitBody)
	s := &Server{cfg: cfg, router: r}

	r.POST("/v1/check", s.handleCheck)
	r.POST("/v1/check/batch", s.handleBatch)
	r.Any(forwardAuthPath, s.handleForwardAuth)
	r.GET("/ping", middleware.New(cfg.Engine,
		middleware.WithTrustedProxies(cfg.TrustedProxies),
		middleware.WithClientIP(), middleware.WithRouteTemplate(), middleware.WithMethod(),
		middleware.FailOpen()),
		func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"message": "pong"}) })
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.handleReady)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})))
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openapi.Document) })
	auth := newAdminAuth(cfg.AdminToken, cfg.NodeClient)
	guard := auth.guard(writeError)
	if cfg.Admin != nil {
		registerAdminRoutes(r, cfg.Admin, dryRunEstimator(cfg), guard)
		registerUIRoutes(r, auth)
	}
	if cfg.NodeInfo != nil {
		r.GET("/v1/node", guard, nodeInfoHandler(cfg.NodeInfo, cfg.Registry))
	}
	if cfg.Usage != nil {
		registerUsageRoutes(r, cfg.Usage, guard)
	}
	if cfg.Top != nil {
		registerTopRoutes(r, cfg.Top, guard)
	}
	r.NoRoute(func(c *gin.Context) { c.JSON(http.StatusNotFound, gin.H{"error": "no such route"}) })
	// A known route asked with the wrong method is 405 with Allow (RFC 9110
	// §15.5.6), not 404 — except forward-auth, which serves any method.
	r.HandleMethodNotAllowed = true
	r.NoMethod(s.handleNoMethod)
	return s, nil
}

// forwardAuthPath serves every method: Envoy's ext_authz forwards the
// original request's, which may be one gin has no tree for (PURGE).
const forwardAuthPath = "/v1/forward-auth"

// handleNoMethod answers a known route asked with a method it does not
// serve; gin has already set Allow.
func (s *Server) handleNoMethod(c *gin.Context) {
	if c.Request.URL.Path == forwardAuthPath {
		c.Writer.Header().Del("Allow")
		c.Status(http.StatusOK) // the handler sets the real status
		s.handleForwardAuth(c)
		return
	}
	c.JSON(http.StatusMethodNotAllowed, gin.H{"error": "method " + c.Request.Method + " not allowed; see Allow"})
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.router }

// limitBody caps request bodies; reading past the cap yields
// *http.MaxBytesError, which writeError maps to 413.
func limitBody(c *gin.Context) {
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes)
	}
	c.Next()
}

func (s *Server) handleReady(c *gin.Context) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// HTTPServer returns an *http.Server for addr with production timeouts.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.router,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
