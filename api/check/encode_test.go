package check

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"testing"
)

// plainDecision has Decision's fields and tags but not its MarshalJSON, so
// encoding/json serves as an independent reference encoder.
type plainDecision Decision

// referenceJSON encodes d with encoding/json, HTML escaping off as in AppendDecision.
func referenceJSON(t testing.TB, d Decision) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(plainDecision(d)); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func int64p(v int64) *int64 { return &v }

func encodeCases() map[string]Decision {
	return map[string]Decision{
		"spec example":    sampleDecision(),
		"no rule applies": {Allowed: true, Mode: ModeLocal, Results: []Result{}},
		"quota with reason": {Allowed: false, Rule: "tenant-monthly", Limit: 1000000, ResetMs: 86400000,
			RetryAfterMs: 86400000, Reason: "cost exceeds burst", Mode: ModeFallback, Results: []Result{
				{Rule: "tenant-monthly", Key: "acme", Limit: 1000000, Used: int64p(1000000), ResetMs: 86400000,
					RetryAfterMs: 86400000, Reason: "quota exhausted"},
				{Rule: "tenant", Key: "acme", Allowed: true, Shadow: true, Limit: 10000, Remaining: 9999,
					Used: int64p(0), ResetMs: -1, RetryAfterMs: -9223372036854775808},
			}},
		"strings needing escapes": {Rule: "r\"\\\b\f\n\r\t\x00\x1f\x7f<>&", Mode: "m\u2028\u2029é日本😀",
			Results: []Result{{Rule: "/api/*", Key: "k\u00e9\ufffd"}}},
		"invalid UTF-8": {Rule: "a\xffb\xed\xa0\x80c", Mode: ModeGlobal, Results: []Result{{Key: "\xc3"}}},
	}
}

func TestAppendDecisionMatchesEncodingJSON(t *testing.T) {
	for name, d := range encodeCases() {
		got := AppendDecision(nil, &d)
		if want := referenceJSON(t, d); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestAppendDecisionRoundTrip(t *testing.T) {
	for name, d := range encodeCases() {
		if name == "invalid UTF-8" {
			continue // replaced by U+FFFD on the way out, so it cannot come back unchanged
		}
		var back Decision
		if err := json.Unmarshal(AppendDecision(nil, &d), &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, d) {
			t.Errorf("%s: round trip gave %+v, want %+v", name, back, d)
		}
	}
}

func TestAppendDecisionShape(t *testing.T) {
	d := Decision{Allowed: true, Mode: ModeLocal}
	got := string(AppendDecision([]byte("prefix:"), &d))
	const want = `prefix:{"allowed":true,"limit":0,"remaining":0,"reset_ms":0,"retry_after_ms":0,"mode":"local","results":[]}`
	if got != want {
		t.Errorf("AppendDecision = %s, want %s", got, want)
	}
	viaMarshal, err := json.Marshal(d)
	if err != nil || string(viaMarshal) != want[len("prefix:"):] {
		t.Errorf("json.Marshal(Decision) = %s, %v; want the AppendDecision shape", viaMarshal, err)
	}
}

func TestAppendDecisionIsAllocationFree(t *testing.T) {
	d := sampleDecision()
	buf := AppendDecision(nil, &d)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendDecision(buf[:0], &d) }); allocs != 0 {
		t.Errorf("AppendDecision into a reused buffer: %v allocs/op, want 0", allocs)
	}
}

func TestAttrsJSON(t *testing.T) {
	for _, attrs := range []Attrs{
		nil,
		{{"ip", "203.0.113.7"}},
		{{"route", "/api/*"}, {"q\"\\\n", "é\u2028😀<&>"}, {"empty", ""}},
	} {
		data, err := json.Marshal(attrs)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) || data[0] != '{' {
			t.Errorf("Marshal(%v) = %s, want a JSON object", attrs, data)
		}
		var back Attrs
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", data, err)
		}
		if len(attrs) != len(back) || (len(attrs) > 0 && !reflect.DeepEqual(attrs, back)) {
			t.Errorf("Attrs round trip: %#v became %#v", attrs, back)
		}
	}
}

func TestAttrsUnmarshalRejects(t *testing.T) {
	tests := []struct{ data, field, msg string }{
		{`{"ip": 1}`, "ip", "must be a string"},
		{`{"ip": "a", "ip": "b"}`, "ip", "duplicate attribute"},
		{`{"": "a"}`, "", "attribute names must not be empty"},
		{`["ip"]`, "", "must be an object"},
	}
	for _, tt := range tests {
		var attrs Attrs
		checkFieldError(t, tt.data, attrs.UnmarshalJSON([]byte(tt.data)), tt.field, tt.msg)
	}
	attrs := Attrs{{"kept", "yes"}}
	if err := json.Unmarshal([]byte(`null`), &attrs); err != nil || len(attrs) != 1 {
		t.Errorf("Unmarshal(null) = %v, %v; want the attributes left unchanged", attrs, err)
	}
}

func TestRequestRoundTripsThroughEncodingJSON(t *testing.T) {
	for _, req := range []Request{
		{},
		{Attributes: Attrs{{"ip", "203.0.113.7"}, {"tenant", "acme"}}, Cost: 3},
	} {
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var viaJSON, viaDecoder Request
		if err := json.Unmarshal(data, &viaJSON); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", data, err)
		}
		var d Decoder
		if err := d.DecodeRequest(data, &viaDecoder); err != nil {
			t.Fatalf("DecodeRequest(%s): %v", data, err)
		}
		if !reflect.DeepEqual(viaJSON, req) || !reflect.DeepEqual(viaDecoder, req) {
			t.Errorf("%s decoded as %#v (encoding/json) and %#v (Decoder), want %#v", data, viaJSON, viaDecoder, req)
		}
	}
}

func TestAppendIntMatchesStrconv(t *testing.T) {
	for _, v := range []int64{0, 1, 9, 10, 11, 99, 100, 101, 12345, -1, -9, -10, -12345,
		math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1} {
		if got, want := string(appendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Errorf("appendInt(%d) = %q, want %q", v, got, want)
		}
	}
}
