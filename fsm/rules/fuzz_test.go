package rules

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics, that every failure is a
// *ValidationError, and that every accepted document survives a
// marshal/parse round trip unchanged and compiles into something usable.
func FuzzParse(f *testing.F) {
	// The bounds' edges: the fastest rate a bucket keeps and one faster,
	// and text that is not UTF-8.
	f.Add([]byte(`{"rules": [{"name": "a", "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}}]}`))
	f.Add([]byte(`{"rules": [{"name": "a", "key": ["ip"], "limit": {"rate": 1000000001, "per": "1s"}}]}`))
	f.Add([]byte("{\"rules\": [{\"name\": \"a\", \"match\": {\"route\": \"\xff\"}, \"key\": [\"ip\"], \"limit\": {\"rate\": 1, \"per\": \"1s\"}}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse(data)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Errors) == 0 {
				t.Fatalf("Parse error %T %v is not a non-empty *ValidationError", err, err)
			}
			return
		}
		if !utf8.Valid(data) || len(data) > MaxDocumentBytes {
			t.Fatalf("accepted a document that is not UTF-8 or too large: %q", data)
		}
		for _, r := range set.Rules {
			if r.Limit != nil && r.Limit.Rate > int64(r.Limit.Per) {
				t.Fatalf("accepted rule %s faster than one token per nanosecond", r.Name)
			}
		}
		encoded, err := json.Marshal(set)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(encoded)
		if err != nil {
			t.Fatalf("re-Parse of %s: %v", encoded, err)
		}
		if !reflect.DeepEqual(again, set) {
			t.Fatalf("round trip changed the set:\n before %+v\n after  %+v", set, again)
		}
		c := Compile(set)
		attrs := attrsOf("ip", "203.0.113.7", "route", "/api/x", "method", "POST", "tenant", "acme")
		for _, i := range c.Applicable(attrs, nil) {
			c.Rule(i).AppendKey(nil, attrs)
		}
	})
}
