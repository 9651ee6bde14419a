package client_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/api/middleware"
)

// protectedApp is a service whose /orders/:id is limited by a remote node.
func protectedApp(sluiceURL string, opts ...middleware.Option) *gin.Engine {
	r := gin.New()
	r.GET("/orders/:id", middleware.New(client.New(sluiceURL), opts...),
		func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": c.Param("id")}) })
	return r
}

func get(r http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

func TestMiddlewareOverRemoteNode(t *testing.T) {
	node := startFakeNode(t, 3)
	app := protectedApp(node.srv.URL)
	for i := range 3 {
		// Different ids share one bucket: the key is the route template.
		w := get(app, "/orders/"+strconv.Itoa(i))
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, w.Code)
		}
		if w.Header().Get(middleware.HeaderLimit) != "3" {
			t.Fatalf("request %d: headers %v", i, w.Header())
		}
	}
	w := get(app, "/orders/z")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("fourth request: status %d, want 429", w.Code)
	}
	if w.Header().Get(middleware.HeaderRetryAfter) != "1" || w.Header().Get(middleware.HeaderRemaining) != "0" {
		t.Fatalf("fourth request headers %v", w.Header())
	}
	if got, want := w.Body.String(), `{"detail":"Too Many Requests","retry_after_ms":333}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	attrs := node.lastAsked(t).Attributes
	if route, _ := attrs.Get("route"); route != "/orders/:id" {
		t.Fatalf("node saw route %q", route)
	}
	if method, _ := attrs.Get("method"); method != http.MethodGet {
		t.Fatalf("node saw method %q", method)
	}
	if ip, _ := attrs.Get("ip"); ip != "192.0.2.1" {
		t.Fatalf("node saw ip %q", ip)
	}
}

func TestMiddlewareWhenNodeIsDown(t *testing.T) {
	node := startFakeNode(t, 3)
	url := node.srv.URL
	node.srv.Close()

	if w := get(protectedApp(url), "/orders/1"); w.Code != http.StatusOK {
		t.Fatalf("fail open: status %d, want 200", w.Code)
	}
	if w := get(protectedApp(url, middleware.FailClosed()), "/orders/1"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("fail closed: status %d, want 503", w.Code)
	}
}

func TestMiddlewareTimeoutOverRemoteNode(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)

	start := time.Now()
	w := get(protectedApp(slow.URL, middleware.WithTimeout(50*time.Millisecond), middleware.FailClosed()), "/orders/1")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("request took %v despite a 50ms decision timeout", elapsed)
	}
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
}
