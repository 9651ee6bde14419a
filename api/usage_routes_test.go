package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/node/engine"
)

const usageRules = `{"rules": [
	{"name": "monthly", "key": ["tenant"], "quota": {"limit": 100, "per": "month"}},
	{"name": "per-ip", "key": ["ip"], "limit": {"rate": 10, "per": "1s", "burst": 20}},
	{"name": "shared", "match": {"route": "/shared"}, "limit": {"rate": 10, "per": "1s", "burst": 20}}]}`

func newUsageServer(t *testing.T) *httptest.Server {
	t.Helper()
	set, err := rules.Parse([]byte(usageRules))
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New()
	e.SetRules(1, set)
	srv, err := api.NewServer(api.Config{Engine: e, Usage: e, AdminToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// call sends one request and decodes the JSON object it answers with.
func call(t *testing.T, method, url, token, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, out
}

func TestUsageRoutes(t *testing.T) {
	ts := newUsageServer(t)
	// Cost 30 is over the bucket's burst of 20: denied by per-ip, and the
	// quota takes nothing.
	resp, d := call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"tenant": "acme", "ip": "10.0.0.1"}, "cost": 30}`)
	results, _ := d["results"].([]any)
	if resp.StatusCode != http.StatusTooManyRequests || d["rule"] != "per-ip" || len(results) != 2 ||
		results[0].(map[string]any)["used"] != 0.0 || results[0].(map[string]any)["remaining"] != 100.0 {
		t.Fatalf("check: %d %v, want denied by per-ip with the quota's result at 0 used", resp.StatusCode, d)
	}
	if resp, d := call(t, "GET", ts.URL+"/v1/usage?rule=monthly&key=acme", "", ""); resp.StatusCode != http.StatusOK || d["used"] != 0.0 {
		t.Fatalf("usage after a denied check: %d %v, want 0 used", resp.StatusCode, d)
	}
	resp, d = call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"tenant": "acme", "ip": "10.0.0.1"}, "cost": 15}`)
	results, _ = d["results"].([]any)
	if resp.StatusCode != http.StatusOK || len(results) != 2 || results[0].(map[string]any)["used"] != 15.0 {
		t.Fatalf("check: %d %v, want the quota's result to carry used 15", resp.StatusCode, d)
	}
	if resp.Header.Get("X-RateLimit-Limit") != "10" || resp.Header.Get("X-RateLimit-Remaining") != "5" {
		t.Fatalf("check headers %v, want the bucket (5 left) to speak", resp.Header)
	}
	resp, u := call(t, "GET", ts.URL+"/v1/usage?rule=monthly&key=acme", "", "")
	if resp.StatusCode != http.StatusOK || u["rule"] != "monthly" || u["key"] != "acme" || u["limit"] != 100.0 ||
		u["used"] != 15.0 || u["remaining"] != 85.0 || u["reset_ms"].(float64) <= 0 || u["mode"] != "local" {
		t.Fatalf("quota usage: %d %v", resp.StatusCode, u)
	}
	resp, u = call(t, "GET", ts.URL+"/v1/usage?rule=per-ip&key=10.0.0.1", "", "")
	if _, hasUsed := u["used"]; resp.StatusCode != http.StatusOK || u["limit"] != 10.0 || u["remaining"] != 5.0 || hasUsed {
		t.Fatalf("bucket usage: %d %v, want 5 left and no used", resp.StatusCode, u)
	}
	call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"route": "/shared", "ip": "10.0.0.2"}, "cost": 4}`)
	for _, query := range []string{"rule=shared&key=", "rule=shared"} {
		resp, u = call(t, "GET", ts.URL+"/v1/usage?"+query, "", "")
		if resp.StatusCode != http.StatusOK || u["key"] != "" || u["remaining"] != 16.0 {
			t.Fatalf("usage?%s of the key-less rule: %d %v, want the shared bucket with 16 left", query, resp.StatusCode, u)
		}
	}
	for _, c := range []struct {
		query, field string
		status       int
	}{
		{"key=acme", "rule", http.StatusBadRequest},
		{"rule=monthly", "key", http.StatusBadRequest},
		{"rule=monthly&key=", "key", http.StatusBadRequest},
		{"rule=nope&key=acme", "", http.StatusNotFound},
		{"rule=shared&key=acme", "key", http.StatusBadRequest}, // a key-less rule has only the empty key
	} {
		resp, body := call(t, "GET", ts.URL+"/v1/usage?"+c.query, "", "")
		if resp.StatusCode != c.status || (c.field != "" && body["field"] != c.field) || body["error"] == nil {
			t.Errorf("usage?%s: %d %v, want %d naming %q", c.query, resp.StatusCode, body, c.status, c.field)
		}
	}
}

func TestUsageResetNeedsToken(t *testing.T) {
	ts := newUsageServer(t)
	call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"tenant": "acme"}, "cost": 100}`)
	if resp, _ := call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"tenant": "acme"}}`); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("quota spent: %d, want 429", resp.StatusCode)
	}
	body := `{"rule": "monthly", "key": "acme"}`
	for _, token := range []string{"", "wrong"} {
		if resp, _ := call(t, "POST", ts.URL+"/v1/usage/reset", token, body); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("reset with token %q: %d, want 401", token, resp.StatusCode)
		}
	}
	if _, u := call(t, "GET", ts.URL+"/v1/usage?rule=monthly&key=acme", "", ""); u["used"] != 100.0 {
		t.Fatalf("an unauthorised reset changed the quota: %v", u)
	}
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"rule": "monthly", "key": "acme", "extra": 1}`, http.StatusBadRequest},
		{`{"key": "acme"}`, http.StatusBadRequest},
		{`{"rule": "per-ip", "key": "10.0.0.1"}`, http.StatusBadRequest},
		{`{"rule": "nope", "key": "acme"}`, http.StatusNotFound},
	} {
		if resp, out := call(t, "POST", ts.URL+"/v1/usage/reset", "s3cret", c.body); resp.StatusCode != c.status || out["error"] == nil {
			t.Errorf("reset %s: %d %v, want %d", c.body, resp.StatusCode, out, c.status)
		}
	}
	if resp, out := call(t, "POST", ts.URL+"/v1/usage/reset", "s3cret", body); resp.StatusCode != http.StatusOK || out["status"] != "reset" {
		t.Fatalf("reset with the token: %d %v", resp.StatusCode, out)
	}
	if resp, _ := call(t, "POST", ts.URL+"/v1/check", "", `{"attributes": {"tenant": "acme"}}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("check after the reset: %d, want 200", resp.StatusCode)
	}
}
