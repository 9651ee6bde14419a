package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

const testRules = `{"rules": [
	{"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 3}},
	{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1, "per": "10s", "burst": 2}}]}`

func newTestServer(t *testing.T) (*httptest.Server, *engine.Engine) {
	t.Helper()
	set, err := rules.Parse([]byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e := engine.New(engine.WithMetrics(engine.NewMetrics(reg)))
	e.SetRules(1, set)
	srv, err := api.NewServer(api.Config{Engine: e, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, e
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestCheckAllowThenDeny(t *testing.T) {
	ts, _ := newTestServer(t)
	body := `{"attributes": {"ip": "203.0.113.7", "route": "/api/orders"}}`
	for i := 0; i < 2; i++ {
		resp, b := post(t, ts.URL+"/v1/check", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("check %d: %d %s", i, resp.StatusCode, b)
		}
		if got := resp.Header.Get("X-RateLimit-Remaining"); got != fmt.Sprint(1-i) {
			t.Fatalf("check %d: X-RateLimit-Remaining %q", i, got)
		}
		if resp.Header.Get("X-RateLimit-Limit") != "1" || resp.Header.Get("Retry-After") != "" {
			t.Fatalf("check %d headers: %v", i, resp.Header)
		}
	}
	resp, b := post(t, ts.URL+"/v1/check", body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("third check: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	var d check.Decision
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.Rule != "per-ip" || d.Mode != check.ModeLocal || d.RetryAfterMs < 9_000 || d.RetryAfterMs > 10_000 ||
		len(d.Results) != 1 || d.Results[0].Key != "203.0.113.7" {
		t.Fatalf("deny body: %s", b)
	}
}

func TestCheckNoRule(t *testing.T) {
	ts, _ := newTestServer(t)
	resp, b := post(t, ts.URL+"/v1/check", `{"attributes": {"ip": "1.1.1.1", "route": "/other"}}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"results":[]`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestCheckBadInput(t *testing.T) {
	ts, e := newTestServer(t)
	cases := []struct{ body, field string }{
		{`{"attributes": {"ip": 5}}`, "attributes.ip"},
		{`{"attributes": {}, "cost": 0}`, "cost"},
		{`{"attributes": {}, "cost": 1.5}`, "cost"},
		{`{"attributes": {}, "bogus": 1}`, "bogus"},
		{`{"attributes": `, ""},
		{`[]`, ""},
		{`{"attributes": {"ip": "` + strings.Repeat("a", check.MaxValueBytes+1) + `", "route": "/api/x"}}`, "attributes.ip"},
		{string(manyAttrsBody(check.MaxAttributes + 1)), "attributes"},
		{"{\"attributes\": {\"ip\": \"\xff\"}}", ""},
		{`{"attributes": {"ip": ` + strings.Repeat("[", 100000) + `}}`, "attributes.ip"},
	}
	for _, c := range cases {
		resp, b := post(t, ts.URL+"/v1/check", c.body)
		var eb struct{ Error, Field string }
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("%s: body %s is not JSON: %v", c.body, b, err)
		}
		if resp.StatusCode != http.StatusBadRequest || eb.Field != c.field || eb.Error == "" {
			t.Fatalf("%s: %d %s, want 400 naming %q", c.body, resp.StatusCode, b, c.field)
		}
	}
	// No bad request consumed a token.
	d := decide(t, e, "203.0.113.9")
	if d.Remaining != 1 {
		t.Fatalf("remaining after bad requests and one take: %d, want 1", d.Remaining)
	}
}

// manyAttrsBody is a check of the per-ip rule with n attributes in all.
func manyAttrsBody(n int) []byte {
	attrs := map[string]string{"ip": "203.0.113.9", "route": "/api/x"}
	for i := len(attrs); i < n; i++ {
		attrs[fmt.Sprintf("a%d", i)] = "v"
	}
	b, _ := json.Marshal(map[string]any{"attributes": attrs})
	return b
}

func TestBatchOutOfBoundsNamesTheItem(t *testing.T) {
	ts, e := newTestServer(t)
	long := strings.Repeat("a", check.MaxValueBytes+1)
	body := `{"requests": [{"attributes": {"ip": "203.0.113.9", "route": "/api/x"}}, {}, {}, {"attributes": {"ip": "` + long + `"}}]}`
	resp, b := post(t, ts.URL+"/v1/check/batch", body)
	var eb struct{ Error, Field string }
	_ = json.Unmarshal(b, &eb)
	if resp.StatusCode != http.StatusBadRequest || eb.Field != "requests[3].attributes.ip" || !strings.Contains(eb.Error, "longer than 4096") {
		t.Fatalf("%d %s, want 400 naming requests[3].attributes.ip", resp.StatusCode, b)
	}
	if d := decide(t, e, "203.0.113.9"); d.Remaining != 1 {
		t.Fatalf("remaining after a refused batch and one take: %d, want 1", d.Remaining)
	}
}

func decide(t *testing.T, e *engine.Engine, ip string) check.Decision {
	t.Helper()
	d, err := e.Decide(t.Context(), check.Request{Attributes: check.Attrs{{Name: "ip", Value: ip}, {Name: "route", Value: "/api/x"}}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheckBodyTooLarge(t *testing.T) {
	ts, _ := newTestServer(t)
	big := `{"attributes": {"ip": "` + strings.Repeat("a", 1<<20) + `"}}`
	resp, b := post(t, ts.URL+"/v1/check", big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s, want 413", resp.StatusCode, b)
	}
	resp, b = post(t, ts.URL+"/v1/check/batch", `{"requests": [`+strings.Repeat(`{"attributes": {"ip": "aaaaaaaaaaaaaaaaaa"}},`, 50000)+`{}]}`)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("batch: %d %.200s, want 413", resp.StatusCode, b)
	}
}

func TestBatch(t *testing.T) {
	ts, _ := newTestServer(t)
	var body bytes.Buffer
	body.WriteString(`{"requests": [`)
	for i := 0; i < 3; i++ {
		if i > 0 {
			body.WriteString(",")
		}
		body.WriteString(`{"attributes": {"ip": "9.9.9.9", "route": "/api/a"}}`)
	}
	body.WriteString(`, {"attributes": {"route": "/nothing"}, "cost": 2}]}`)
	resp, b := post(t, ts.URL+"/v1/check/batch", body.String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var out struct{ Results []check.Decision }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, true}
	if len(out.Results) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(out.Results), len(want), b)
	}
	for i, w := range want {
		if out.Results[i].Allowed != w {
			t.Fatalf("result %d allowed=%v, want %v: %s", i, out.Results[i].Allowed, w, b)
		}
	}
}

func TestBatchTooMany(t *testing.T) {
	ts, _ := newTestServer(t)
	body := `{"requests": [` + strings.Repeat(`{},`, 1000) + `{}]}`
	resp, b := post(t, ts.URL+"/v1/check/batch", body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"field":"requests"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	resp, b = post(t, ts.URL+"/v1/check/batch", `{"requests": [{}, {"cost": -1}]}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"field":"requests[1].cost"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestPingThrottled(t *testing.T) {
	ts, _ := newTestServer(t)
	for i := 0; i < 3; i++ {
		resp, err := http.Get(ts.URL + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != `{"message":"pong"}` {
			t.Fatalf("ping %d: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, err := http.Get(ts.URL + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var body struct {
		Detail       string `json:"detail"`
		RetryAfterMs int64  `json:"retry_after_ms"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || body.Detail != "Too Many Requests" || body.RetryAfterMs < 3_599_000 ||
		resp.Header.Get("Retry-After") != "3600" {
		t.Fatalf("throttled ping: %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	ts, _ := newTestServer(t)
	post(t, ts.URL+"/v1/check", `{"attributes": {"ip": "1.2.3.4", "route": "/api/x"}}`)
	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/readyz":  `"ready"`,
		"/metrics": `sluice_decisions_total{mode="local",result="allowed",rule="per-ip"} 1`,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d, want %q in:\n%.2000s", path, resp.StatusCode, want, b)
		}
	}
}

func TestCheckBeforeRulesIs503(t *testing.T) {
	srv, err := api.NewServer(api.Config{Engine: engine.New()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, path := range []string{"/v1/check", "/v1/check/batch"} {
		body := `{"attributes": {"ip": "1.2.3.4"}}`
		if path == "/v1/check/batch" {
			body = `{"requests": [` + body + `]}`
		}
		resp, b := post(t, ts.URL+path, body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s before rules: %d %s, want 503", path, resp.StatusCode, b)
		}
	}
}

// A known route asked with the wrong method is 405 naming the methods it
// serves, not 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	ts, _ := newTestServer(t)
	cases := []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/check", "POST"},
		{http.MethodPut, "/v1/check/batch", "POST"},
		{http.MethodDelete, "/ping", "GET"},
		{http.MethodPost, "/healthz", "GET"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow || !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s %s: %d Allow %q %s; want 405 with Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), b, tc.allow)
		}
	}
	resp, err := http.Get(ts.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: %d, want 404", resp.StatusCode)
	}
}
