package client_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
)

func init() { gin.SetMode(gin.TestMode) }

// fakeNode stands in for a Sluice node's check endpoints: one fixed-window
// counter of `limit` tokens per (ip, route) key, decoded with encoding/json.
type fakeNode struct {
	limit int64

	mu    sync.Mutex
	used  map[string]int64
	asked []check.Request

	newConns atomic.Int64
	srv      *httptest.Server
}

const fakeRule = "per-ip"

func startFakeNode(t *testing.T, limit int64) *fakeNode {
	t.Helper()
	n := &fakeNode{limit: limit, used: map[string]int64{}}
	r := gin.New()
	r.POST("/v1/check", func(c *gin.Context) {
		var req check.Request
		if err := json.NewDecoder(c.Request.Body).Decode(&req); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error(), "field": ""})
			return
		}
		if req.Cost < 0 {
			c.JSON(http.StatusBadRequest, gin.H{"error": "must be >= 1", "field": "cost"})
			return
		}
		d := n.decide(req)
		status := http.StatusOK
		if !d.Allowed {
			status = http.StatusTooManyRequests
		}
		c.JSON(status, d)
	})
	r.POST("/v1/check/batch", func(c *gin.Context) {
		var batch struct {
			Requests []check.Request `json:"requests"`
		}
		if err := json.NewDecoder(c.Request.Body).Decode(&batch); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error(), "field": ""})
			return
		}
		results := make([]check.Decision, len(batch.Requests))
		for i, req := range batch.Requests {
			results[i] = n.decide(req)
		}
		c.JSON(http.StatusOK, gin.H{"results": results})
	})
	n.srv = httptest.NewUnstartedServer(r)
	n.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.newConns.Add(1)
		}
	}
	n.srv.Start()
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) decide(req check.Request) check.Decision {
	ip, _ := req.Attributes.Get("ip")
	route, _ := req.Attributes.Get("route")
	key := ip + "|" + route
	n.mu.Lock()
	defer n.mu.Unlock()
	n.asked = append(n.asked, req)
	cost := req.EffectiveCost()
	ok := n.used[key]+cost <= n.limit
	if ok {
		n.used[key] += cost
	}
	res := check.Result{Rule: fakeRule, Key: key, Allowed: ok, Limit: n.limit,
		Remaining: n.limit - n.used[key], ResetMs: 1000 * n.used[key] / n.limit}
	if !ok {
		res.RetryAfterMs = 1000 * (n.used[key] + cost - n.limit) / n.limit
	}
	return check.Decision{Allowed: ok, Rule: fakeRule, Limit: res.Limit, Remaining: res.Remaining,
		ResetMs: res.ResetMs, RetryAfterMs: res.RetryAfterMs, Mode: check.ModeLocal, Results: []check.Result{res}}
}

func (n *fakeNode) lastAsked(t *testing.T) check.Request {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.asked) == 0 {
		t.Fatal("the node was never asked")
	}
	return n.asked[len(n.asked)-1]
}
