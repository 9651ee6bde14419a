package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const pingRules = `{"rules": [
	{"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 5}}]}`

// ping sends GET /ping from peer with headers as name, value pairs.
func ping(h http.Handler, peer string, headers ...string) int {
	req := httptest.NewRequest(http.MethodGet, "/ping", nil)
	req.RemoteAddr = peer
	for i := 0; i < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// The reproduction: with --trusted-proxies 10.0.0.0/8, a loopback
// client rotating forged X-Forwarded-For / X-Real-IP headers must still hit
// its own limit of 5 on /ping.
func TestPingIgnoresForgedHeadersFromUntrustedPeer(t *testing.T) {
	h, _ := newServerTrusting(t, pingRules, "10.0.0.0/8")
	allowed := 0
	for i := 0; i < 20; i++ {
		forged := fmt.Sprintf("198.51.100.%d", i)
		code := ping(h, "127.0.0.1:40000", "X-Forwarded-For", forged, "X-Real-IP", forged)
		switch code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("ping %d: status %d", i, code)
		}
	}
	if allowed != 5 {
		t.Fatalf("%d of 20 pings with forged headers allowed, want the burst of 5", allowed)
	}
}

// From a trusted proxy the forwarded client is believed: each client has
// its own bucket, and one client's sixth ping is refused.
func TestPingBelievesTrustedProxy(t *testing.T) {
	h, _ := newServerTrusting(t, pingRules, "10.0.0.0/8")
	for i := 0; i < 3; i++ {
		client := fmt.Sprintf("203.0.113.%d", i)
		if code := ping(h, "10.1.2.3:40000", "X-Forwarded-For", "6.6.6.6, "+client+", 10.0.0.9"); code != http.StatusOK {
			t.Fatalf("client %s via the proxy: status %d", client, code)
		}
	}
	for i := 0; i < 4; i++ {
		if code := ping(h, "10.1.2.3:40000", "X-Real-IP", "203.0.113.0"); code != http.StatusOK {
			t.Fatalf("ping %d of 203.0.113.0: %d", i+2, code)
		}
	}
	if code := ping(h, "10.1.2.3:40000", "X-Forwarded-For", "203.0.113.0"); code != http.StatusTooManyRequests {
		t.Fatalf("sixth ping of 203.0.113.0: %d, want 429", code)
	}
}

// A trusted proxy sending an unreadable X-Forwarded-For gets a 400 naming
// the header on /ping, as on /v1/forward-auth.
func TestPingMalformedForwardedFor(t *testing.T) {
	h, _ := newServerTrusting(t, pingRules, "10.0.0.0/8")
	req := httptest.NewRequest(http.MethodGet, "/ping", nil)
	req.RemoteAddr = "10.1.2.3:40000"
	req.Header.Set("X-Forwarded-For", "203.0.113.7, not-an-ip")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"X-Forwarded-For"`) {
		t.Fatalf("%d %s, want 400 naming X-Forwarded-For", w.Code, w.Body)
	}
}
