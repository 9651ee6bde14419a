package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/node/engine"
)

// soloCluster is a one-member cluster: this node only.
type soloCluster struct{}

func (soloCluster) ID() string                  { return "n1" }
func (soloCluster) Members() []admin.NodeStatus { return []admin.NodeStatus{{ID: "n1"}} }
func (soloCluster) FetchTop(context.Context, string, string, string, int) (admin.NodeTop, error) {
	panic("a one-member cluster asks nobody")
}

// topRouter serves the top routes of a real engine that has seen one
// denied key, behind the admin guard with token.
func topRouter(t *testing.T, token string) *gin.Engine {
	t.Helper()
	set, err := rules.Parse([]byte(`{"rules": [{"name": "login", "key": ["ip"], "limit": {"rate": 1, "per": "1h"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.WithHitters())
	e.SetRules(1, set)
	for range 3 { // one admitted, two denied
		if _, err := e.Decide(context.Background(), check.Request{Attributes: check.Attrs{{Name: "ip", Value: "203.0.113.7"}}}); err != nil {
			t.Fatal(err)
		}
	}
	gin.SetMode(gin.TestMode)
	r := gin.New()
	registerTopRoutes(r, &top.Service{Local: e, Cluster: soloCluster{}, Timeout: time.Second}, newAdminAuth(token, nil).guard(writeError))
	return r
}

func TestTopBadParameters(t *testing.T) {
	h := topRouter(t, "")
	for _, path := range []string{"/v1/top", "/v1/internal/top"} {
		for query, field := range map[string]string{
			"?window=5m": "window", "?window=": "window", "?k=0": "k", "?k=1001": "k", "?k=ten": "k", "?k=-1": "k",
		} {
			code, body := serve(t, h, adminCall{method: "GET", path: path + query})
			if code != http.StatusBadRequest || body["field"] != field {
				t.Errorf("GET %s%s: %d %v, want 400 naming %s", path, query, code, body, field)
			}
		}
	}
	for query, field := range map[string]string{"?by=allowed": "by", "?scope=world": "scope"} {
		code, body := serve(t, h, adminCall{method: "GET", path: "/v1/top" + query})
		if code != http.StatusBadRequest || body["field"] != field {
			t.Errorf("GET /v1/top%s: %d %v, want 400 naming %s", query, code, body, field)
		}
	}
	for _, path := range []string{"/v1/top?rule=nope", "/v1/internal/top?rule=nope"} {
		if code, body := serve(t, h, adminCall{method: "GET", path: path}); code != http.StatusNotFound {
			t.Errorf("GET %s: %d %v, want 404", path, code, body)
		}
	}
}

func TestTopAnswersTheEnginesCounts(t *testing.T) {
	h := topRouter(t, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The window counts whole seconds: the decisions show within one.
		code, body := serve(t, h, adminCall{method: "GET", path: "/v1/top?window=10s&k=5"})
		if code != http.StatusOK {
			t.Fatalf("GET /v1/top: %d %v", code, body)
		}
		rules := body["rules"].([]any)
		if r := rules[0].(map[string]any); r["denied"] == 2.0 {
			keys := r["keys"].([]any)
			k := keys[0].(map[string]any)
			if r["admitted"] != 1.0 || len(keys) != 1 || k["key"] != "203.0.113.7" || k["denied"] != 2.0 || k["admitted"] != 1.0 || k["error"] != 0.0 {
				t.Fatalf("rule %v", r)
			}
			if body["window"] != "10s" || body["by"] != "denied" || body["k"] != 5.0 {
				t.Fatalf("echoed query: %v", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the denials never showed: %v", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTopNeedsAdmin(t *testing.T) {
	for _, path := range []string{"/v1/top", "/v1/internal/top"} {
		guarded := topRouter(t, "s3cret")
		for _, auth := range []string{"", "Bearer wrong"} {
			if code, _ := serve(t, guarded, adminCall{method: "GET", path: path, auth: auth, remote: "127.0.0.1:1"}); code != http.StatusUnauthorized {
				t.Errorf("GET %s with %q: %d, want 401", path, auth, code)
			}
		}
		if code, _ := serve(t, guarded, adminCall{method: "GET", path: path, auth: "Bearer s3cret", remote: "192.0.2.10:1"}); code != http.StatusOK {
			t.Errorf("GET %s with the token: %d, want 200", path, code)
		}
		open := topRouter(t, "")
		if code, _ := serve(t, open, adminCall{method: "GET", path: path, remote: "192.0.2.10:1"}); code != http.StatusUnauthorized {
			t.Errorf("GET %s from a remote peer without a token configured: %d, want 401", path, code)
		}
	}
}
