package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/fsm/rules"
)

// recordingEngine is a real engine that remembers the attributes of the
// last request it decided, so tests can see what forward-auth derived.
type recordingEngine struct {
	*engine.Engine
	mu   sync.Mutex
	last check.Attrs
}

func (r *recordingEngine) DecideInto(ctx context.Context, req *check.Request, d *check.Decision) error {
	r.mu.Lock()
	r.last = slices.Clone(req.Attributes)
	r.mu.Unlock()
	return r.Engine.DecideInto(ctx, req, d)
}

func (r *recordingEngine) lastAttrs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]string{}
	for _, a := range r.last {
		m[a.Name] = a.Value
	}
	return m
}

const forwardAuthRules = `{"rules": [
	{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1, "per": "10s", "burst": 2}},
	{"name": "login", "match": {"route": "/login", "method": "POST"}, "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 1}}]}`

func newForwardAuthServer(t *testing.T, trusted string) (http.Handler, *recordingEngine) {
	t.Helper()
	return newServerTrusting(t, forwardAuthRules, trusted)
}

// newServerTrusting serves rulesJSON with --trusted-proxies set to trusted.
func newServerTrusting(t *testing.T, rulesJSON, trusted string) (http.Handler, *recordingEngine) {
	t.Helper()
	set, err := rules.Parse([]byte(rulesJSON))
	if err != nil {
		t.Fatal(err)
	}
	e := &recordingEngine{Engine: engine.New()}
	e.SetRules(1, set)
	prefixes, err := clientip.Parse(trusted)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{Engine: e, TrustedProxies: prefixes})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler(), e
}

// forwardAuth sends GET /v1/forward-auth<query> from peer with headers
// given as name, value pairs (a name may repeat).
func forwardAuth(h http.Handler, peer, query string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/v1/forward-auth"+query, nil)
	req.RemoteAddr = peer
	for i := 0; i < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestForwardAuthClientIP(t *testing.T) {
	cases := []struct {
		name, peer string
		headers    []string
		want       string
	}{
		{"untrusted peer's XFF is ignored", "198.51.100.9:4000", []string{"X-Forwarded-For", "203.0.113.7"}, "198.51.100.9"},
		{"untrusted peer's X-Real-IP is ignored", "198.51.100.9:4000", []string{"X-Real-IP", "203.0.113.7"}, "198.51.100.9"},
		{"trusted peer, one hop", "127.0.0.1:4000", []string{"X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"right-most untrusted wins over a forged left part", "127.0.0.1:4000",
			[]string{"X-Forwarded-For", "192.0.2.66, 203.0.113.7, 10.1.2.3"}, "203.0.113.7"},
		{"header lines are one chain", "127.0.0.1:4000",
			[]string{"X-Forwarded-For", "192.0.2.66", "X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"all hops trusted: the origin", "127.0.0.1:4000", []string{"X-Forwarded-For", "10.0.0.5, 10.0.0.2"}, "10.0.0.5"},
		{"port on an entry", "127.0.0.1:4000", []string{"X-Forwarded-For", "203.0.113.7:5555"}, "203.0.113.7"},
		{"IPv6 entry with port", "127.0.0.1:4000", []string{"X-Forwarded-For", "[2001:db8::7]:443"}, "2001:db8::7"},
		{"X-Real-IP when no XFF", "127.0.0.1:4000", []string{"X-Real-IP", "203.0.113.8"}, "203.0.113.8"},
		{"XFF wins over X-Real-IP", "127.0.0.1:4000", []string{"X-Real-IP", "203.0.113.8", "X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"trusted peer without headers", "127.0.0.1:4000", nil, "127.0.0.1"},
		{"IPv4-mapped peer is matched as IPv4", "[::ffff:127.0.0.1]:4000", []string{"X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"IPv6 loopback peer", "[::1]:4000", []string{"X-Forwarded-For", "2001:db8::9"}, "2001:db8::9"},
	}
	h, e := newForwardAuthServer(t, "127.0.0.0/8, ::1, 10.0.0.0/8")
	for _, tc := range cases {
		w := forwardAuth(h, tc.peer, "", tc.headers...)
		if w.Code != http.StatusOK {
			t.Errorf("%s: status %d %s", tc.name, w.Code, w.Body)
			continue
		}
		if got := e.lastAttrs()["ip"]; got != tc.want {
			t.Errorf("%s: ip %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestForwardAuthNothingTrustedByDefault(t *testing.T) {
	h, e := newForwardAuthServer(t, "")
	forwardAuth(h, "127.0.0.1:4000", "", "X-Forwarded-For", "203.0.113.7")
	if got := e.lastAttrs()["ip"]; got != "127.0.0.1" {
		t.Fatalf("ip %q with no trusted proxies, want the peer", got)
	}
}

func TestForwardAuthAttributes(t *testing.T) {
	h, e := newForwardAuthServer(t, "127.0.0.1")
	w := forwardAuth(h, "127.0.0.1:4000", "",
		"X-Forwarded-For", "203.0.113.7",
		"X-Original-URI", "/api/orders?page=2#top",
		"X-Original-Method", "DELETE",
		"X-Forwarded-Host", "Shop.Example.com",
		"X-Sluice-Tenant", "acme",
		"X-Sluice-Api-Key", "k-123",
		"X-Sluice-Empty", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	want := map[string]string{"ip": "203.0.113.7", "route": "/api/orders", "method": "DELETE",
		"host": "shop.example.com", "tenant": "acme", "api-key": "k-123"}
	if got := e.lastAttrs(); !mapsEqual(got, want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
	// Traefik's header names.
	forwardAuth(h, "127.0.0.1:4000", "", "X-Forwarded-Uri", "/login", "X-Forwarded-Method", "POST")
	if got := e.lastAttrs(); got["route"] != "/login" || got["method"] != "POST" {
		t.Fatalf("Traefik headers gave %v", got)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestForwardAuthRouteIsNormalized(t *testing.T) {
	cases := map[string]string{
		"/api/orders?x=1":        "/api/orders",
		"/%6Cogin":               "/login",
		"/api/../login":          "/login",
		"//login":                "/login",
		"/api/":                  "/api/",
		"http://example.com/x?y": "/x",
		"?only=query":            "/",
	}
	h, e := newForwardAuthServer(t, "127.0.0.1")
	for uri, want := range cases {
		if w := forwardAuth(h, "127.0.0.1:4000", "", "X-Original-URI", uri); w.Code != http.StatusOK {
			t.Errorf("%q: status %d %s", uri, w.Code, w.Body)
			continue
		}
		if got := e.lastAttrs()["route"]; got != want {
			t.Errorf("%q: route %q, want %q", uri, got, want)
		}
	}
}

func TestForwardAuthLimitsWithCheckHeaders(t *testing.T) {
	h, _ := newForwardAuthServer(t, "127.0.0.1")
	send := func(query string) *httptest.ResponseRecorder {
		return forwardAuth(h, "127.0.0.1:4000", query, "X-Forwarded-For", "203.0.113.7", "X-Original-URI", "/api/orders")
	}
	for i := 0; i < 2; i++ {
		w := send("")
		if w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Fatalf("request %d: %d %q, want 200 with an empty body", i, w.Code, w.Body)
		}
		if w.Header().Get("X-RateLimit-Limit") != "1" || w.Header().Get("X-RateLimit-Remaining") != strconv.Itoa(1-i) ||
			w.Header().Get("Retry-After") != "" {
			t.Fatalf("request %d headers %v", i, w.Header())
		}
	}
	w := send("")
	if w.Code != http.StatusTooManyRequests || w.Body.Len() != 0 || w.Header().Get("Retry-After") != "10" ||
		w.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("third request: %d %v %q, want 429 with Retry-After 10 and no body", w.Code, w.Header(), w.Body)
	}
	w = send("?deny_status=403")
	if w.Code != http.StatusForbidden || w.Header().Get("Retry-After") != "10" {
		t.Fatalf("deny_status=403: %d %v", w.Code, w.Header())
	}
	// Another client is unaffected.
	w = forwardAuth(h, "127.0.0.1:4000", "", "X-Forwarded-For", "203.0.113.8", "X-Original-URI", "/api/orders")
	if w.Code != http.StatusOK {
		t.Fatalf("other client: %d", w.Code)
	}
}

func TestForwardAuthSpoofedHeaderFromUntrustedPeer(t *testing.T) {
	h, _ := newForwardAuthServer(t, "127.0.0.1")
	denied := 0
	for i := 0; i < 10; i++ {
		w := forwardAuth(h, "198.51.100.9:4000", "",
			"X-Forwarded-For", "203.0.113."+strconv.Itoa(i), "X-Real-IP", "192.0.2."+strconv.Itoa(i),
			"X-Original-URI", "/api/orders")
		if w.Code == http.StatusTooManyRequests {
			denied++
		}
	}
	if denied != 8 {
		t.Fatalf("a client rotating forged headers got %d denials of 10, want 8 (burst 2 on its own address)", denied)
	}
}

func TestForwardAuthBadInput(t *testing.T) {
	h, _ := newForwardAuthServer(t, "127.0.0.1")
	cases := []struct {
		query     string
		headers   []string
		wantField string
	}{
		{"?deny_status=500", nil, "deny_status"},
		{"?deny_status=", nil, "deny_status"},
		{"", []string{"X-Forwarded-For", "203.0.113.7, not-an-ip"}, "X-Forwarded-For"},
		{"", []string{"X-Real-IP", "nope"}, "X-Real-IP"},
		{"", []string{"X-Original-URI", "/a%zz"}, "X-Original-URI"},
		{"", []string{"X-Forwarded-Uri", "relative/path"}, "X-Forwarded-Uri"},
		{"", []string{"X-Sluice-Ip", "203.0.113.7"}, "X-Sluice-Ip"},
		{"", []string{"X-Sluice-Tenant", "a", "X-Sluice-Tenant", "b"}, "X-Sluice-Tenant"},
	}
	for _, tc := range cases {
		w := forwardAuth(h, "127.0.0.1:4000", tc.query, tc.headers...)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"`+tc.wantField+`"`) {
			t.Errorf("%s %v: %d %s, want 400 naming %s", tc.query, tc.headers, w.Code, w.Body, tc.wantField)
		}
	}
}

// Headers that become attributes are held to check's bounds, with a 400
// naming the header, and nothing is counted.
func TestForwardAuthBounds(t *testing.T) {
	h, _ := newForwardAuthServer(t, "127.0.0.1")
	long := strings.Repeat("x", check.MaxValueBytes+1)
	many := make([]string, 0, 2*check.MaxAttributes)
	for i := range check.MaxAttributes {
		many = append(many, "X-Sluice-A"+strconv.Itoa(i), "v")
	}
	cases := []struct {
		name      string
		headers   []string
		wantField string
		wantMsg   string
	}{
		{"long X-Sluice value", []string{"X-Sluice-Tenant", long}, "X-Sluice-Tenant", "longer than 4096"},
		{"long host", []string{"X-Forwarded-Host", long}, "X-Forwarded-Host", "longer than 4096"},
		{"long method", []string{"X-Original-Method", long}, "X-Original-Method", "longer than 4096"},
		{"long route", []string{"X-Original-URI", "/" + long}, "X-Original-URI", "longer than 4096"},
		{"invalid UTF-8", []string{"X-Sluice-Tenant", "ac\xffme"}, "X-Sluice-Tenant", "valid UTF-8"},
		{"too many attributes", many, "", "more than 64 attributes"},
		{"long header name", []string{"X-Sluice-" + strings.Repeat("n", check.MaxNameBytes+1), "v"}, "X-Sluice-*", "attribute name of 257 bytes"},
	}
	for _, tc := range cases {
		w := forwardAuth(h, "127.0.0.1:4000", "", tc.headers...)
		var body struct{ Error, Field string }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusBadRequest || !strings.Contains(body.Error, tc.wantMsg) ||
			(tc.wantField != "" && body.Field != tc.wantField) || !strings.HasPrefix(body.Field, "X-") {
			t.Errorf("%s: %d %s, want 400 naming %q with %q", tc.name, w.Code, w.Body, tc.wantField, tc.wantMsg)
		}
	}
	// 63 X-Sluice-* headers plus ip: 64 attributes, the most allowed.
	if w := forwardAuth(h, "127.0.0.1:4000", "", many[:2*(check.MaxAttributes-1)]...); w.Code != http.StatusOK {
		t.Fatalf("64 attributes: %d %s, want 200", w.Code, w.Body)
	}
}

// Envoy's ext_authz forwards the original method, whatever it is: every
// method is answered as GET is, and counts.
func TestForwardAuthAnswersAnyMethod(t *testing.T) {
	h, _ := newForwardAuthServer(t, "127.0.0.1")
	for i, method := range []string{"PURGE", "PROPFIND", http.MethodPatch, "GET"} {
		req := httptest.NewRequest(method, "/v1/forward-auth", nil)
		req.RemoteAddr = "127.0.0.1:4000"
		req.Header.Set("X-Forwarded-For", "203.0.113.50")
		req.Header.Set("X-Original-URI", "/api/orders")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		want := http.StatusOK
		if i >= 2 { // burst 2
			want = http.StatusTooManyRequests
		}
		if w.Code != want || w.Header().Get("Allow") != "" || w.Body.Len() != 0 {
			t.Fatalf("%s: %d %v %q, want %d with no body", method, w.Code, w.Header(), w.Body, want)
		}
	}
	// Bad input is still a 400 whatever the method.
	req := httptest.NewRequest("PURGE", "/v1/forward-auth?deny_status=500", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("PURGE with a bad deny_status: %d, want 400", w.Code)
	}
}
