package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/api"
)

// BenchmarkBatchHandler measures one 1000-check batch through the gin
// handler (decode, decide, encode) without the network; ns/decision is the
// CPU cost behind the batch API's decisions per second.
func BenchmarkBatchHandler(b *testing.B) {
	h := benchHandler(b, `{"rules": [
    {"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 5, "per": "1s", "burst": 10}},
    {"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 100, "per": "1s", "burst": 200}},
    {"name": "login", "match": {"route": "/login", "method": "POST"}, "key": ["ip"], "limit": {"rate": 5, "per": "1m"}},
    {"name": "tenant", "key": ["tenant"], "limit": {"rate": 10000, "per": "1m"}, "shadow": true}]}`)
	var body bytes.Buffer
	body.WriteString(`{"requests":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"attributes":{"ip":"10.0.%d.%d","route":"/api/orders","method":"GET"}}`, i/256, i%256)
	}
	body.WriteString(`]}`)
	data := body.Bytes()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/check/batch", bytes.NewReader(data))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/decision")
}

// BenchmarkCheckHandler measures one single check through the gin handler
// (routing, metrics middleware, decode, decide, encode, headers) without the
// network: what Sluice itself adds to each HTTP request.
func BenchmarkCheckHandler(b *testing.B) {
	h := benchHandler(b, `{"rules": [
    {"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1000000, "per": "1s", "burst": 1000000}}]}`)
	data := []byte(`{"attributes":{"ip":"10.0.0.1","route":"/api/orders","method":"GET"}}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(data))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// benchHandler is the HTTP handler of a local-mode node with metrics and
// the rules in doc, as `sluice serve` builds it.
func benchHandler(b *testing.B, doc string) http.Handler {
	return api.NewLocalServer(b, doc).Handler()
}
