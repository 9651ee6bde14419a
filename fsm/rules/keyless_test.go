package rules

import (
	"slices"
	"testing"
)

// A rule with "key": [] or no key parses, applies to every request its
// match admits, and puts them all in one bucket: "<name>\x00", shown and
// addressed in /v1/usage as the empty key.
func TestKeylessRules(t *testing.T) {
	set, err := Parse([]byte(`{"rules": [
		{"name": "payments", "match": {"route": "/pay/*"}, "key": [], "limit": {"rate": 5000, "per": "1s"}},
		{"name": "everything", "quota": {"limit": 1000000, "per": "day"}},
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}}]}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c := Compile(set)
	pay, all, perIP := c.Rule(0), c.Rule(1), c.Rule(2)
	if len(pay.Rule.Key) != 0 || len(all.Rule.Key) != 0 {
		t.Fatalf("keys %q and %q, want none", pay.Rule.Key, all.Rule.Key)
	}
	for _, tc := range []struct {
		attrs []string
		want  []string
	}{
		{[]string{"route", "/pay/card", "ip", "192.0.2.1"}, []string{"payments", "everything", "per-ip"}},
		{[]string{"route", "/pay/card"}, []string{"payments", "everything"}},
		{[]string{"route", "/other"}, []string{"everything"}},
		{nil, []string{"everything"}},
	} {
		if got := ruleNames(c, c.Applicable(attrsOf(tc.attrs...), nil)); !slices.Equal(got, tc.want) {
			t.Errorf("Applicable(%q) = %q, want %q", tc.attrs, got, tc.want)
		}
	}
	for _, attrs := range [][]string{{"route", "/pay/a", "ip", "1"}, {"route", "/pay/b", "ip", "2", "tenant", "x"}} {
		if got := string(pay.AppendKey(nil, attrsOf(attrs...))); got != "payments\x00" {
			t.Errorf("AppendKey(%q) = %q, want one shared bucket %q", attrs, got, "payments\x00")
		}
		if got := pay.DisplayKey(attrsOf(attrs...)); got != "" {
			t.Errorf("DisplayKey(%q) = %q, want empty", attrs, got)
		}
	}
	back, err := all.AttrsForDisplayKey("")
	if err != nil || string(all.AppendKey(nil, back)) != "everything\x00" {
		t.Errorf("AttrsForDisplayKey(\"\") = %v, %v; want the shared bucket", back, err)
	}
	if _, err := all.AttrsForDisplayKey("acme"); err == nil {
		t.Error("a key-less rule accepted the key \"acme\"")
	}
	if _, err := perIP.AttrsForDisplayKey(""); err == nil {
		t.Error("a keyed rule accepted the empty key")
	}
}
