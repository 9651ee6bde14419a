package check

import (
	"strconv"
	"strings"
	"testing"
)

var typicalBody = []byte(`{"attributes": {"ip": "203.0.113.7", "route": "/api/orders", "method": "GET", "tenant": "acme"}, "cost": 1}`)

func BenchmarkDecodeRequest(b *testing.B) {
	var d Decoder
	var req Request
	b.SetBytes(int64(len(typicalBody)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.DecodeRequest(typicalBody, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBatch1000(b *testing.B) {
	body := batchBody(1000)
	var d Decoder
	var reqs []Request
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if reqs, err = d.DecodeBatch(body, reqs, 1000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/item")
}

func BenchmarkAppendDecision(b *testing.B) {
	d := sampleDecision()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDecision(buf[:0], &d)
	}
}

// batchBody builds a batch of n typical requests with distinct IPs.
func batchBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"requests": [`)
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(`{"attributes": {"ip": "203.0.113.` + strconv.Itoa(i%256) +
			`", "route": "/api/orders", "method": "GET", "tenant": "acme"}, "cost": 1}`)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

func sampleDecision() Decision {
	return Decision{
		Allowed: false, Rule: "per-ip", Limit: 100, Remaining: 0, ResetMs: 1730, RetryAfterMs: 10, Mode: ModeGlobal,
		Results: []Result{{Rule: "per-ip", Key: "203.0.113.7", Allowed: false, Shadow: false,
			Limit: 100, Remaining: 0, ResetMs: 1730, RetryAfterMs: 10}},
	}
}

// BenchmarkAttrsValidate is the engine's bounds check of a typical
// three-attribute check, paid once per decision.
func BenchmarkAttrsValidate(b *testing.B) {
	a := Attrs{{Name: "ip", Value: "10.0.12.34"}, {Name: "route", Value: "/api/orders"}, {Name: "method", Value: "GET"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
