package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/ui"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/node/engine"
)

const remotePeer = "203.0.113.9:4000"

// uiServer is a whole server with the status page, /v1/node and the admin
// routes; the engine decided twice for "api" (one admit, one denial).
func uiServer(t *testing.T, token string) (http.Handler, *fakeAdmin) {
	t.Helper()
	set, err := rules.Parse([]byte(`{"rules": [{"name": "api", "key": ["user"], "limit": {"rate": 1, "per": "1h"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e := engine.New(engine.WithMetrics(engine.NewMetrics(reg)))
	e.SetRules(1, set)
	for range 2 {
		if _, err := e.Decide(context.Background(), check.Request{Attributes: check.Attrs{{Name: "user", Value: "mallory"}}, Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Rules: json.RawMessage("[]")}}
	srv, err := NewServer(Config{Engine: e, Admin: fake, Usage: e, AdminToken: token, Registry: reg,
		NodeInfo: func() admin.NodeInfo { return admin.NodeInfo{ID: "n1", Mode: string(e.Mode()), Redis: "none"} }})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler(), fake
}

// request runs one request from remote, with cookie (a session value) when set.
func request(h http.Handler, method, path, body, remote, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: ui.CookieName, Value: cookie})
	}
	if strings.HasPrefix(body, "token=") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Without --admin-token the page is the admin API's: loopback only; a
// remote browser is refused with a page that says how to get in.
func TestStatusPageWithoutTokenLoopbackOnly(t *testing.T) {
	h, _ := uiServer(t, "")
	for _, remote := range []string{"127.0.0.1:5000", "[::1]:5000"} {
		if w := request(h, "GET", "/ui", "", remote, ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `src="/ui/app.js"`) {
			t.Errorf("GET /ui from %s: %d %.200s", remote, w.Code, w.Body)
		}
	}
	w := request(h, "GET", "/ui", "", remotePeer, "")
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "loopback clients only") || strings.Contains(w.Body.String(), "app.js") {
		t.Errorf("GET /ui from a remote peer: %d %s", w.Code, w.Body)
	}
	// No token, so no sign-in: any posted token is refused.
	if w := request(h, "POST", "/ui/login", "token=", remotePeer, ""); w.Code != http.StatusUnauthorized || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("sign-in on a node without a token: %d %v", w.Code, w.Header())
	}
}

// With --admin-token a remote browser gets the sign-in form, the token
// signs it in with an HttpOnly, SameSite=Strict cookie (Secure over HTTPS),
// and the cookie opens the page and the read-only routes.
func TestStatusPageSignIn(t *testing.T) {
	h, _ := uiServer(t, "s3cret")
	w := request(h, "GET", "/ui", "", remotePeer, "")
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `action="/ui/login"`) {
		t.Fatalf("GET /ui without a session: %d %s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("sign-in page CSP %q", csp)
	}
	// A client that can send the header (curl, a proxy) needs no cookie.
	bearer := httptest.NewRequest("GET", "/ui", nil)
	bearer.RemoteAddr = remotePeer
	bearer.Header.Set("Authorization", "Bearer s3cret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, bearer)
	if rec.Code != http.StatusOK {
		t.Errorf("GET /ui with the bearer token: %d", rec.Code)
	}
	for _, body := range []string{"token=wrong", "token=s3cret2", "token=", "", "token=" + strings.Repeat("x", 100000)} {
		w := request(h, "POST", "/ui/login", body, remotePeer, "")
		if w.Code != http.StatusUnauthorized || w.Header().Get("Set-Cookie") != "" || !strings.Contains(w.Body.String(), "not this node") {
			t.Errorf("sign-in with %.20q: %d %v", body, w.Code, w.Header())
		}
	}
	w = request(h, "POST", "/ui/login", "token="+url.QueryEscape("s3cret"), remotePeer, "")
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui" || len(cookies) != 1 {
		t.Fatalf("sign-in with the token: %d %v", w.Code, w.Header())
	}
	c := cookies[0]
	if c.Name != ui.CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" ||
		c.MaxAge <= 0 || strings.Contains(c.Value, "s3cret") {
		t.Errorf("session cookie over HTTP: %+v", c)
	}
	w = request(h, "GET", "/ui", "", remotePeer, c.Value)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `action="/ui/logout"`) {
		t.Errorf("GET /ui with the session: %d %.300s", w.Code, w.Body)
	}
	for _, path := range []string{"/v1/cluster", "/v1/rules", "/v1/leases", "/v1/node"} {
		if w := request(h, "GET", path, "", remotePeer, c.Value); w.Code != http.StatusOK {
			t.Errorf("GET %s with the session: %d %s", path, w.Code, w.Body)
		}
	}
	// A forged, tampered or expired session is no session.
	expired := ui.NewSession("s3cret", time.Now().Add(-ui.SessionTTL-time.Minute))
	for _, bad := range []string{"x", c.Value + "x", ui.NewSession("other", time.Now()), expired, "s3cret"} {
		if w := request(h, "GET", "/v1/cluster", "", remotePeer, bad); w.Code != http.StatusUnauthorized {
			t.Errorf("GET /v1/cluster with session %q: %d", bad, w.Code)
		}
	}

	req := httptest.NewRequest("POST", "/ui/login", strings.NewReader("token=s3cret"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr, req.TLS = remotePeer, &tls.ConnectionState{}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if cs := rec.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("session cookie over HTTPS: %v", rec.Header())
	}
	out := request(h, "POST", "/ui/logout", "", remotePeer, c.Value).Result().Cookies()
	if len(out) != 1 || out[0].MaxAge >= 0 || out[0].Value != "" {
		t.Errorf("sign-out cookie: %+v", out)
	}
}

// The session cookie never authorizes a write: a cross-site request that
// carries it anyway (an old browser without SameSite) changes nothing.
func TestSessionCookieNeverWrites(t *testing.T) {
	h, fake := uiServer(t, "s3cret")
	session := ui.NewSession("s3cret", time.Now())
	writes := []adminCall{{method: "POST", path: "/v1/usage/reset", body: `{"rule":"api","key":"mallory"}`}}
	for _, call := range everyAdminRoute {
		if call.method != "GET" {
			writes = append(writes, call)
		}
	}
	for _, call := range writes {
		w := request(h, call.method, call.path, call.body, remotePeer, session)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s with the session cookie: %d %s", call.method, call.path, w.Code, w.Body)
		}
		if w := request(h, call.method, call.path, call.body, "127.0.0.1:5000", session); w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s from loopback with the session cookie: %d", call.method, call.path, w.Code)
		}
	}
	if len(fake.joined)+len(fake.removed)+len(fake.setDocs)+len(fake.reports) != 0 {
		t.Fatalf("cookie-borne writes reached the node: %+v", fake)
	}
}

// The page's own files are served to anyone (they hold no data), with
// their types; nothing else under /ui is.
func TestStatusPageFiles(t *testing.T) {
	h, _ := uiServer(t, "s3cret")
	for file, ctype := range map[string]string{"app.js": "javascript", "style.css": "text/css"} {
		w := request(h, "GET", "/ui/"+file, "", remotePeer, "")
		if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Type"), ctype) || w.Body.Len() == 0 {
			t.Errorf("GET /ui/%s: %d %v", file, w.Code, w.Header())
		}
	}
	for _, path := range []string{"/ui/index.html", "/ui/login.html", "/ui/nope.js", "/ui/..%2fui.go", "/ui/static"} {
		if w := request(h, "GET", path, "", "127.0.0.1:5000", ""); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, w.Code)
		}
	}
}

// GET /v1/node reports the node's own view plus its decision counters.
func TestNodeInfo(t *testing.T) {
	h, _ := uiServer(t, "")
	w := request(h, "GET", "/v1/node", "", "127.0.0.1:5000", "")
	var info admin.NodeInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || w.Code != http.StatusOK {
		t.Fatalf("GET /v1/node: %d %s %v", w.Code, w.Body, err)
	}
	if info.ID != "n1" || info.Mode != "local" || info.Redis != "none" || info.TimeMs <= 0 {
		t.Errorf("node info %+v", info)
	}
	if got := info.Decisions["api"]; got["allowed"] != 1 || got["denied"] != 1 {
		t.Errorf("decisions of api: %v, want 1 allowed and 1 denied", got)
	}
	if w := request(h, "GET", "/v1/node", "", remotePeer, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET /v1/node from a remote peer without a token: %d", w.Code)
	}
}
