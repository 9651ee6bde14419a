package rules

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is a
// *ValidationError, and that every accepted document survives a
// marshal/parse round trip unchanged and compiles into something usable.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse(data)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Errors) == 0 {
				t.Fatalf("Parse error %T %v is not a non-empty *ValidationError", err, err)
			}
			return
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
