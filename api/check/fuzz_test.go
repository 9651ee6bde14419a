package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The fuzz tests hold the Decoder to encoding/json as an independent oracle:
// whatever the Decoder accepts must be valid JSON that encoding/json decodes
// to the same values, and must survive a re-encoding unchanged. The Decoder
// may reject more (it is stricter), never less.

// referenceRequest is what encoding/json makes of a check body; a map keeps
// it independent of Attrs.UnmarshalJSON.
type referenceRequest struct {
	Attributes map[string]string `json:"attributes"`
	Cost       int64             `json:"cost"`
}

type referenceBatch struct {
	Requests []referenceRequest `json:"requests"`
}

// strictUnmarshal decodes like the Decoder's field rules: no unknown fields.
func strictUnmarshal(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(typicalBody)
	f.Add([]byte(`{"attributes": {"k": "\ud83d\ude00\ud800\u00e9\n"}, "cost": 9223372036854775807}`))
	f.Add([]byte(`{"cost": 1.5e3}`))
	// The bounds' edges: the most attributes and the longest value allowed,
	// and one past each (an escape counts once unescaped).
	f.Add(attrsBody(MaxAttributes, 1))
	f.Add(attrsBody(MaxAttributes+1, 1))
	f.Add(attrsBody(1, MaxValueBytes))
	f.Add(attrsBody(1, MaxValueBytes+1))
	f.Add([]byte(`{"attributes": {"k": "` + strings.Repeat(`\n`, MaxValueBytes) + `"}}`))
	f.Add([]byte(`{"attributes": {"` + strings.Repeat("n", MaxNameBytes+1) + `": "v"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Decoder
		var req Request
		err := d.DecodeRequest(body, &req)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var ref referenceRequest
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q, which encoding/json rejects: %v", body, err)
		}
		checkSameRequest(t, req, ref)
		checkReencoding(t, req)
		checkBounds(t, req)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	const max = 4
	f.Add(batchBody(2))
	f.Add(batchBody(max + 1))
	f.Add([]byte(`{"requests": [{}, {"cost": 2, "attributes": {"\u0069p": "a\"b"}}]}`))
	f.Add([]byte(`{"requests": [{}, ` + string(attrsBody(MaxAttributes+1, 1)) + `]}`))
	f.Add([]byte(`{"requests": [` + string(attrsBody(2, MaxValueBytes+1)) + `]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Decoder
		reqs, err := d.DecodeBatch(body, nil, max)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var ref referenceBatch
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q, which encoding/json rejects: %v", body, err)
		}
		if len(reqs) != len(ref.Requests) || len(reqs) > max {
			t.Fatalf("%d requests, encoding/json found %d (max %d)", len(reqs), len(ref.Requests), max)
		}
		for i := range reqs {
			checkSameRequest(t, reqs[i], ref.Requests[i])
			checkReencoding(t, reqs[i])
			checkBounds(t, reqs[i])
		}
	})
}

func checkSameRequest(t *testing.T, got Request, ref referenceRequest) {
	t.Helper()
	if got.Cost != ref.Cost || (got.Cost != 0 && got.Cost < 1) {
		t.Fatalf("cost %d, encoding/json says %d", got.Cost, ref.Cost)
	}
	if len(got.Attributes) != len(ref.Attributes) {
		t.Fatalf("attributes %q, encoding/json says %q", got.Attributes, ref.Attributes)
	}
	for _, a := range got.Attributes {
		if v, ok := ref.Attributes[a.Name]; !ok || v != a.Value || a.Name == "" {
			t.Fatalf("attribute %q=%q, encoding/json says %q", a.Name, a.Value, ref.Attributes)
		}
	}
}

// checkBounds fails when an accepted request breaks a bound.
func checkBounds(t *testing.T, req Request) {
	t.Helper()
	if err := req.Attributes.Validate(); err != nil {
		t.Fatalf("accepted a request out of bounds: %v", err)
	}
}

// attrsBody is a check body with n attributes whose values are size bytes.
func attrsBody(n, size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"attributes": {`)
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, `"a%d": "%s"`, i, strings.Repeat("v", size))
	}
	sb.WriteString(`}}`)
	return []byte(sb.String())
}

// checkReencoding encodes req with encoding/json and decodes it again.
func checkReencoding(t *testing.T, req Request) {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var back Request
	if err := d.DecodeRequest(data, &back); err != nil {
		t.Fatalf("re-encoded %s is rejected: %v", data, err)
	}
	if back.Cost != req.Cost || len(back.Attributes) != len(req.Attributes) {
		t.Fatalf("re-encoding %#v gave %#v", req, back)
	}
	for i := range back.Attributes {
		if back.Attributes[i] != req.Attributes[i] {
			t.Fatalf("re-encoding %#v gave %#v", req, back)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("\"\\\x00\x1f\x7f\u2028\u2029<>&é\xff\xed\xa0\x80")
	f.Fuzz(func(t *testing.T, s string) {
		d := Decision{Rule: s, Reason: s, Mode: Mode(s), Results: []Result{{Rule: s, Key: s}}}
		if got, want := AppendDecision(nil, &d), referenceJSON(t, d); !bytes.Equal(got, want) {
			t.Fatalf("AppendDecision:\n got %s\nwant %s", got, want)
		}
	})
}
