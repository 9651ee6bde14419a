package api

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/gin-gonic/gin"
	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/middleware"
	"github.com/sluicehq/sluice/fsm/rules"
)

// The hand-written JSON codec of api/check against encoding/json and
// goccy/go-json, end to end through the same gin router, middleware and
// engine: BenchmarkCodecCheck and BenchmarkCodecBatch (1000 checks) run
// /v1/check and /v1/check/batch with each codec. The library handlers
// decode strictly (unknown fields refused) into a plain wire type, check
// the same bounds and encode the same answer shape, so the difference is
// the codec alone. docs/PERFORMANCE.md records the figures.

// jsonCodec is one JSON library's strict decode and encode.
type jsonCodec struct {
	name      string
	unmarshal func(data []byte, v any) error
	marshal   func(v any) ([]byte, error)
}

var libraryCodecs = []jsonCodec{
	{"encoding-json", func(data []byte, v any) error {
		dec := stdjson.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	}, stdjson.Marshal},
	{"goccy-go-json", func(data []byte, v any) error {
		dec := gojson.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	}, gojson.Marshal},
}

// wireRequest is a check as a JSON library sees it.
type wireRequest struct {
	Attributes map[string]string `json:"attributes"`
	Cost       *int64            `json:"cost"`
}

type wireBatch struct {
	Requests []wireRequest `json:"requests"`
}

// plainDecision is check.Decision without its MarshalJSON (which is the
// hand-written encoder), so a library encodes it by reflection.
type plainDecision check.Decision

type plainBatch struct {
	Results []plainDecision `json:"results"`
}

// toRequest applies the hand-written decoder's rules that a struct tag
// cannot: cost >= 1 and the attribute bounds.
func (w *wireRequest) toRequest(dst *check.Request) error {
	if w.Attributes == nil {
		return &check.FieldError{Field: "attributes", Msg: "is required"}
	}
	*dst = check.Request{Attributes: dst.Attributes[:0]}
	for name, value := range w.Attributes {
		dst.Attributes = append(dst.Attributes, check.Attr{Name: name, Value: value})
	}
	if w.Cost != nil {
		if *w.Cost < 1 {
			return &check.FieldError{Field: "cost", Msg: "must be an integer >= 1"}
		}
		dst.Cost = *w.Cost
	}
	return dst.Attributes.Validate()
}

func codecCheckHandler(s *Server, codec jsonCodec) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := io.ReadAll(c.Request.Body)
		if err != nil {
			writeError(c, err)
			return
		}
		var w wireRequest
		var req check.Request
		if err := codec.unmarshal(body, &w); err != nil {
			writeError(c, &check.FieldError{Msg: err.Error()})
			return
		}
		if err := w.toRequest(&req); err != nil {
			writeError(c, err)
			return
		}
		var d check.Decision
		if err := s.cfg.Engine.DecideInto(c.Request.Context(), &req, &d); err != nil {
			writeError(c, err)
			return
		}
		middleware.SetHeaders(c.Writer.Header(), d)
		status := http.StatusOK
		if !d.Allowed {
			status = http.StatusTooManyRequests
		}
		out, _ := codec.marshal(plainDecision(d))
		c.Data(status, "application/json", out)
	}
}

func codecBatchHandler(s *Server, codec jsonCodec) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := io.ReadAll(c.Request.Body)
		if err != nil {
			writeError(c, err)
			return
		}
		var w wireBatch
		if err := codec.unmarshal(body, &w); err != nil {
			writeError(c, &check.FieldError{Msg: err.Error()})
			return
		}
		if len(w.Requests) > maxBatch {
			writeError(c, &check.FieldError{Field: "requests", Msg: "more than 1000 checks"})
			return
		}
		reqs := make([]check.Request, len(w.Requests))
		for i := range w.Requests {
			if err := w.Requests[i].toRequest(&reqs[i]); err != nil {
				writeError(c, err)
				return
			}
		}
		decisions := make([]check.Decision, len(reqs))
		if err := s.cfg.Engine.DecideBatch(c.Request.Context(), reqs, decisions); err != nil {
			writeError(c, err)
			return
		}
		answer := plainBatch{Results: make([]plainDecision, len(decisions))}
		for i := range decisions {
			answer.Results[i] = plainDecision(decisions[i])
		}
		out, _ := codec.marshal(answer)
		c.Data(http.StatusOK, "application/json", out)
	}
}

// NewLocalServer is the server of a local-mode node with metrics and the
// rules in doc, as `sluice serve` builds it (for benchmarks and tests).
func NewLocalServer(tb testing.TB, doc string) *Server {
	set, err := rules.Parse([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e := engine.New(engine.WithMetrics(engine.NewMetrics(reg)))
	e.SetRules(1, set)
	s, err := NewServer(Config{Engine: e, Registry: reg})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// codecServer is NewLocalServer's handler with each library codec's check
// and batch routes beside the real ones.
func codecServer(tb testing.TB, doc string) http.Handler {
	s := NewLocalServer(tb, doc)
	for _, codec := range libraryCodecs {
		s.router.POST("/bench/"+codec.name+"/check", codecCheckHandler(s, codec))
		s.router.POST("/bench/"+codec.name+"/batch", codecBatchHandler(s, codec))
	}
	return s.router
}

// codecRoutes maps each codec's name to its check or batch route.
func codecRoutes(kind, real string) map[string]string {
	routes := map[string]string{"hand-written": real}
	for _, codec := range libraryCodecs {
		routes[codec.name] = "/bench/" + codec.name + "/" + kind
	}
	return routes
}

var codecOrder = []string{"hand-written", "encoding-json", "goccy-go-json"}

const codecBenchRules = `{"rules": [
    {"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 5, "per": "1s", "burst": 10}},
    {"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1000000, "per": "1s", "burst": 1000000}},
    {"name": "login", "match": {"route": "/login", "method": "POST"}, "key": ["ip"], "limit": {"rate": 5, "per": "1m"}},
    {"name": "tenant", "key": ["tenant"], "limit": {"rate": 10000, "per": "1m"}, "shadow": true}]}`

func BenchmarkCodecCheck(b *testing.B) {
	h := codecServer(b, codecBenchRules)
	data := []byte(`{"attributes": {"ip": "203.0.113.7", "route": "/api/orders", "method": "GET"}, "cost": 1}`)
	routes := codecRoutes("check", "/v1/check")
	for _, name := range codecOrder {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveBench(b, h, routes[name], data)
			}
		})
	}
}

func BenchmarkCodecBatch(b *testing.B) {
	h := codecServer(b, codecBenchRules)
	var body bytes.Buffer
	body.WriteString(`{"requests":[`)
	for i := range 1000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"attributes":{"ip":"10.0.%d.%d","route":"/api/orders","method":"GET"}}`, i/256, i%256)
	}
	body.WriteString(`]}`)
	routes := codecRoutes("batch", "/v1/check/batch")
	for _, name := range codecOrder {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveBench(b, h, routes[name], body.Bytes())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/decision")
		})
	}
}

func serveBench(b *testing.B, h http.Handler, route string, body []byte) {
	req := httptest.NewRequest("POST", route, bytes.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("%s: %d %s", route, w.Code, w.Body)
	}
}

// The library handlers answer what the real ones answer, so the benchmark
// compares equal work: same statuses, same decisions (field by field), the
// same 400 for an unknown field.
func TestCodecHandlersAgree(t *testing.T) {
	bodies := map[string][]string{
		"check": {`{"attributes": {"ip": "203.0.113.7", "route": "/api/orders"}, "cost": 2}`, `{"attributes": {"tenant": "acme"}}`,
			`{"attributes": {"ip": "1.2.3.4"}, "extra": 1}`},
		"batch": {`{"requests": [{"attributes": {"ip": "203.0.113.8", "route": "/api/orders"}}, {"attributes": {"tenant": "acme"}, "cost": 3}]}`},
	}
	for kind, list := range bodies {
		real := map[string]string{"check": "/v1/check", "batch": "/v1/check/batch"}[kind]
		for _, body := range list {
			var want any
			wantCode := 0
			for _, name := range codecOrder {
				h := codecServer(t, codecBenchRules) // fresh buckets for each codec
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("POST", codecRoutes(kind, real)[name], bytes.NewReader([]byte(body))))
				var got any
				if err := stdjson.Unmarshal(w.Body.Bytes(), &got); err != nil {
					t.Fatalf("%s %s: %v", name, body, err)
				}
				if w.Code == http.StatusBadRequest {
					got = "400" // messages differ by library
				}
				if want == nil {
					want, wantCode = got, w.Code
					continue
				}
				if w.Code != wantCode || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s on %s: %d %v; hand-written: %d %v", name, body, w.Code, got, wantCode, want)
				}
			}
		}
	}
}
