package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
)

func init() { gin.SetMode(gin.TestMode) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// fakeDecider records what it was asked and answers with decide.
type fakeDecider struct {
	mu     sync.Mutex
	seen   []check.Request
	decide func(ctx context.Context, req check.Request) (check.Decision, error)
}

func (f *fakeDecider) Decide(ctx context.Context, req check.Request) (check.Decision, error) {
	f.mu.Lock()
	f.seen = append(f.seen, req)
	f.mu.Unlock()
	return f.decide(ctx, req)
}

func (f *fakeDecider) last(t *testing.T) check.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("decider was never asked")
	}
	return f.seen[len(f.seen)-1]
}

func answering(d check.Decision) *fakeDecider {
	return &fakeDecider{decide: func(context.Context, check.Request) (check.Decision, error) { return d, nil }}
}

func failing(err error) *fakeDecider {
	return &fakeDecider{decide: func(context.Context, check.Request) (check.Decision, error) { return check.Decision{}, err }}
}

var denied = check.Decision{Allowed: false, Rule: "per-ip", Limit: 10, Remaining: 0, ResetMs: 1500, RetryAfterMs: 1001,
	Results: []check.Result{{Rule: "per-ip", Key: "k", Limit: 10, ResetMs: 1500, RetryAfterMs: 1001}}}

var allowed = check.Decision{Allowed: true, Rule: "per-ip", Limit: 10, Remaining: 7, ResetMs: 300,
	Results: []check.Result{{Rule: "per-ip", Key: "k", Allowed: true, Limit: 10, Remaining: 7, ResetMs: 300}}}

// app serves GET /users/:id behind the middleware; handled counts the
// requests that reached the handler.
func app(d check.Decider, handled *int, opts ...Option) *gin.Engine {
	r := gin.New()
	r.Use(New(d, opts...))
	r.GET("/users/:id", func(c *gin.Context) {
		*handled++
		c.String(http.StatusOK, "ok")
	})
	return r
}

func serve(r http.Handler, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func TestAllowedRequestContinuesWithHeaders(t *testing.T) {
	handled := 0
	w := serve(app(answering(allowed), &handled), httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if w.Code != http.StatusOK || handled != 1 {
		t.Fatalf("status %d, handled %d; want 200, 1", w.Code, handled)
	}
	if w.Header().Get(HeaderLimit) != "10" || w.Header().Get(HeaderRemaining) != "7" || w.Header().Get(HeaderReset) != "1" {
		t.Fatalf("headers %v", w.Header())
	}
	if w.Header().Get(HeaderRetryAfter) != "" {
		t.Fatalf("allowed answer has Retry-After %q", w.Header().Get(HeaderRetryAfter))
	}
}

func TestDeniedRequestGets429(t *testing.T) {
	handled := 0
	w := serve(app(answering(denied), &handled), httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if w.Code != http.StatusTooManyRequests || handled != 0 {
		t.Fatalf("status %d, handled %d; want 429, 0", w.Code, handled)
	}
	if got, want := w.Body.String(), `{"detail":"Too Many Requests","retry_after_ms":1001}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	if w.Header().Get(HeaderRetryAfter) != "2" || w.Header().Get(HeaderReset) != "2" || w.Header().Get(HeaderRemaining) != "0" {
		t.Fatalf("headers %v", w.Header())
	}
}

func TestCustomLimitReachedHandler(t *testing.T) {
	handled := 0
	var got check.Decision
	r := app(answering(denied), &handled, WithLimitReachedHandler(func(c *gin.Context, d check.Decision) {
		got = d
		c.String(http.StatusForbidden, "slow down")
	}))
	w := serve(r, httptest.NewRequest(http.MethodGet, "/users/1", nil))
	if w.Code != http.StatusForbidden || w.Body.String() != "slow down" || handled != 0 {
		t.Fatalf("status %d body %q handled %d", w.Code, w.Body.String(), handled)
	}
	if got.Rule != denied.Rule || got.RetryAfterMs != denied.RetryAfterMs {
		t.Fatalf("handler got %+v", got)
	}
	if w.Header().Get(HeaderRetryAfter) != "2" {
		t.Fatalf("Retry-After %q, want 2", w.Header().Get(HeaderRetryAfter))
	}
}

func TestSilentLimitReachedHandlerStillDenies(t *testing.T) {
	handled := 0
	r := app(answering(denied), &handled, WithLimitReachedHandler(func(*gin.Context, check.Decision) {}))
	w := serve(r, httptest.NewRequest(http.MethodGet, "/users/1", nil))
	if w.Code != http.StatusTooManyRequests || handled != 0 {
		t.Fatalf("status %d handled %d; want 429, 0", w.Code, handled)
	}
}

func TestDefaultAttributes(t *testing.T) {
	d := answering(allowed)
	handled := 0
	r := app(d, &handled, WithTrustedProxies(clientip.Proxies{netip.MustParsePrefix("192.0.2.1/32")}))
	req := httptest.NewRequest(http.MethodGet, "/users/42", nil) // RemoteAddr 192.0.2.1
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	serve(r, req)
	got := d.last(t)
	want := check.Attrs{{Name: "ip", Value: "203.0.113.7"}, {Name: "route", Value: "/users/:id"}, {Name: "method", Value: "GET"}}
	assertAttrs(t, got.Attributes, want)
	if got.Cost != 1 {
		t.Fatalf("cost %d, want 1", got.Cost)
	}
}

// gin.New() trusts every proxy for c.ClientIP(); the middleware must not:
// without WithTrustedProxies the client is the TCP peer whatever the
// headers say.
func TestClientIPIgnoresForgedHeadersByDefault(t *testing.T) {
	for _, header := range []string{"X-Forwarded-For", "X-Real-IP"} {
		d := answering(allowed)
		handled := 0
		r := app(d, &handled, WithClientIP())
		req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
		req.Header.Set(header, "203.0.113.7")
		serve(r, req)
		assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "ip", Value: "192.0.2.1"}})
	}
}

// Only hops that are themselves trusted are walked past.
func TestClientIPWalksTrustedHops(t *testing.T) {
	d := answering(allowed)
	handled := 0
	proxies, err := clientip.Parse("192.0.2.0/24, 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	r := app(d, &handled, WithClientIP(), WithTrustedProxies(proxies))
	req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.1.1")
	serve(r, req)
	assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "ip", Value: "203.0.113.7"}})
}

func TestClientIPMalformedHeaderFromTrustedProxyIs400(t *testing.T) {
	d := answering(allowed)
	handled := 0
	r := app(d, &handled, WithClientIP(), WithTrustedProxies(clientip.Proxies{netip.MustParsePrefix("192.0.2.1/32")}))
	req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
	req.Header.Set("X-Forwarded-For", "not-an-ip")
	w := serve(r, req)
	if w.Code != http.StatusBadRequest || handled != 0 || !strings.Contains(w.Body.String(), `"field":"X-Forwarded-For"`) {
		t.Fatalf("%d %s handled %d; want 400 naming X-Forwarded-For", w.Code, w.Body, handled)
	}
}

func TestRouteFallsBackToPathWithoutMatch(t *testing.T) {
	d := answering(allowed)
	r := gin.New()
	r.Use(New(d, WithRouteTemplate()))
	r.NoRoute(func(c *gin.Context) { c.Status(http.StatusNotFound) })
	w := serve(r, httptest.NewRequest(http.MethodGet, "/nowhere/7?x=1", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d", w.Code)
	}
	assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "route", Value: "/nowhere/7"}})
}

func TestHeaderAndCustomAttributes(t *testing.T) {
	d := answering(allowed)
	handled := 0
	r := app(d, &handled,
		WithHeader("X-Tenant", "tenant"),
		WithAttribute("user", func(c *gin.Context) (string, bool) { return c.Param("id"), c.Param("id") != "0" }),
		WithMethod())

	req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
	req.Header.Set("X-Tenant", "acme")
	serve(r, req)
	assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "tenant", Value: "acme"}, {Name: "user", Value: "42"}, {Name: "method", Value: "GET"}})

	serve(r, httptest.NewRequest(http.MethodGet, "/users/0", nil))
	assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "method", Value: "GET"}})
}

func TestLaterAttributeOptionReplacesEarlier(t *testing.T) {
	d := answering(allowed)
	handled := 0
	r := app(d, &handled, WithClientIP(), WithHeader("X-Real-IP", "ip"))
	req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
	req.Header.Set("X-Real-IP", "198.51.100.9")
	serve(r, req)
	assertAttrs(t, d.last(t).Attributes, check.Attrs{{Name: "ip", Value: "198.51.100.9"}})
}

func TestCostFunction(t *testing.T) {
	d := answering(allowed)
	handled := 0
	r := app(d, &handled, WithCost(func(c *gin.Context) int64 {
		n, _ := strconv.ParseInt(c.GetHeader("X-Tokens"), 10, 64)
		return n
	}))
	for _, tc := range []struct {
		header string
		want   int64
	}{{"7", 7}, {"1", 1}, {"0", 1}, {"-5", 1}, {"", 1}, {"250000", 250000}} {
		req := httptest.NewRequest(http.MethodGet, "/users/42", nil)
		req.Header.Set("X-Tokens", tc.header)
		serve(r, req)
		if got := d.last(t).Cost; got != tc.want {
			t.Errorf("X-Tokens %q: cost %d, want %d", tc.header, got, tc.want)
		}
	}
}

func TestDeciderErrorFailsOpenByDefault(t *testing.T) {
	for name, opts := range map[string][]Option{"default": nil, "FailOpen": {FailOpen()}} {
		handled := 0
		w := serve(app(failing(errors.New("boom")), &handled, opts...), httptest.NewRequest(http.MethodGet, "/users/42", nil))
		if w.Code != http.StatusOK || handled != 1 {
			t.Errorf("%s: status %d handled %d; want 200, 1", name, w.Code, handled)
		}
		if w.Header().Get(HeaderLimit) != "" {
			t.Errorf("%s: failed decision set headers %v", name, w.Header())
		}
	}
}

func TestDeciderErrorFailClosed(t *testing.T) {
	handled := 0
	w := serve(app(failing(errors.New("boom")), &handled, FailClosed()), httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if w.Code != http.StatusServiceUnavailable || handled != 0 {
		t.Fatalf("status %d handled %d; want 503, 0", w.Code, handled)
	}
	if got, want := w.Body.String(), `{"detail":"rate limiter unavailable"}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}

func TestCustomErrorHandlerGetsTheError(t *testing.T) {
	boom := errors.New("boom")
	var got error
	handled := 0
	r := app(failing(boom), &handled, WithErrorHandler(func(c *gin.Context, err error) { got = err }))
	serve(r, httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if !errors.Is(got, boom) || handled != 1 {
		t.Fatalf("handler got %v, handled %d", got, handled)
	}
}

// blocking answers only when its context ends.
func blocking() *fakeDecider {
	return &fakeDecider{decide: func(ctx context.Context, _ check.Request) (check.Decision, error) {
		<-ctx.Done()
		return check.Decision{}, ctx.Err()
	}}
}

func TestTimeoutHonoured(t *testing.T) {
	var got error
	handled := 0
	r := app(blocking(), &handled, WithTimeout(20*time.Millisecond),
		WithErrorHandler(func(c *gin.Context, err error) { got = err; failClosed(c, err) }))
	start := time.Now()
	w := serve(r, httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("decision took %v despite a 20ms timeout", elapsed)
	}
	if !errors.Is(got, context.DeadlineExceeded) || w.Code != http.StatusServiceUnavailable || handled != 0 {
		t.Fatalf("err %v, status %d, handled %d", got, w.Code, handled)
	}
}

func TestDefaultTimeoutBoundsDecision(t *testing.T) {
	var deadline time.Time
	var hasDeadline bool
	d := &fakeDecider{decide: func(ctx context.Context, _ check.Request) (check.Decision, error) {
		deadline, hasDeadline = ctx.Deadline()
		return allowed, nil
	}}
	handled := 0
	start := time.Now()
	serve(app(d, &handled), httptest.NewRequest(http.MethodGet, "/users/42", nil))
	end := time.Now()
	if !hasDeadline {
		t.Fatal("decision context has no deadline")
	}
	// The deadline was set DefaultTimeout after some instant within [start, end].
	if set := deadline.Add(-DefaultTimeout); set.Before(start) || set.After(end) {
		t.Fatalf("deadline %v after start, want %v after an instant in the request", deadline.Sub(start), DefaultTimeout)
	}
}

func TestZeroTimeoutLeavesRequestContext(t *testing.T) {
	var hasDeadline bool
	d := &fakeDecider{decide: func(ctx context.Context, _ check.Request) (check.Decision, error) {
		_, hasDeadline = ctx.Deadline()
		return allowed, nil
	}}
	handled := 0
	serve(app(d, &handled, WithTimeout(0)), httptest.NewRequest(http.MethodGet, "/users/42", nil))
	if hasDeadline {
		t.Fatal("WithTimeout(0) still set a deadline")
	}
}

func assertAttrs(t *testing.T, got, want check.Attrs) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("attributes %v, want %v", got, want)
		}
	}
}

// Attribute values out of check's bounds are answered 400 naming where they
// came from, before the decider is asked (which, failing open, would let the
// request through).
func TestOutOfBoundsAttributesAre400(t *testing.T) {
	cases := []struct {
		name, header, value, wantField, wantMsg string
	}{
		{"long header", "X-Tenant", strings.Repeat("x", check.MaxValueBytes+1), "X-Tenant", "longer than 4096"},
		{"invalid UTF-8", "X-Tenant", "ac\xffme", "X-Tenant", "valid UTF-8"},
		{"long path", "", "", "route", "longer than 4096"},
	}
	for _, tc := range cases {
		d := failing(errors.New("must not be asked"))
		handled := 0
		r := gin.New()
		r.Use(New(d, WithRouteTemplate(), WithHeader("X-Tenant", "tenant")))
		r.NoRoute(func(c *gin.Context) { handled++ })
		target := "/users/1"
		if tc.header == "" {
			target = "/" + strings.Repeat("p", check.MaxValueBytes+1)
		}
		req := httptest.NewRequest(http.MethodGet, target, nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		w := serve(r, req)
		var body struct{ Error, Field string }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusBadRequest || handled != 0 || body.Field != tc.wantField || !strings.Contains(body.Error, tc.wantMsg) {
			t.Errorf("%s: %d %s handled %d, want 400 naming %s", tc.name, w.Code, w.Body, handled, tc.wantField)
		}
		if len(d.seen) != 0 {
			t.Errorf("%s: the decider was asked", tc.name)
		}
	}
}

func TestTooManyAttributesIs400(t *testing.T) {
	var opts []Option
	for i := range check.MaxAttributes + 1 {
		name := "a" + strconv.Itoa(i)
		opts = append(opts, WithAttribute(name, func(*gin.Context) (string, bool) { return "v", true }))
	}
	handled := 0
	w := serve(app(answering(allowed), &handled, opts...), httptest.NewRequest(http.MethodGet, "/users/1", nil))
	if w.Code != http.StatusBadRequest || handled != 0 || !strings.Contains(w.Body.String(), "more than 64 attributes") {
		t.Fatalf("%d %s handled %d, want 400", w.Code, w.Body, handled)
	}
}
