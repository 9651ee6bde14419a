package engine

import (
	"context"
	"testing"
)

// A key-less rule is one bucket for every request it applies to, whoever
// sends it; a key-less quota one counter; both answer /v1/usage for the
// empty key only.
func TestKeylessRuleSharesOneBucket(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, `{"rules": [
		{"name": "backend", "match": {"route": "/pay/*"}, "key": [], "limit": {"rate": 1, "per": "1h", "burst": 3}},
		{"name": "daily", "match": {"route": "/report"}, "quota": {"limit": 2, "per": "day"}}]}`))
	for i, ip := range []string{"192.0.2.1", "192.0.2.2", "198.51.100.7"} {
		d := decide(t, e, 1, "ip", ip, "route", "/pay/card")
		if !d.Allowed || d.Rule != "backend" || d.Results[0].Key != "" || d.Remaining != int64(2-i) {
			t.Fatalf("take %d from %s: %+v, want allowed from the shared bucket", i, ip, d)
		}
	}
	if d := decide(t, e, 1, "ip", "203.0.113.9", "route", "/pay/other"); d.Allowed || d.Rule != "backend" {
		t.Fatalf("a fourth caller: %+v, want denied: the three before spent the shared burst", d)
	}
	if d := decide(t, e, 1, "route", "/pay/card"); d.Allowed {
		t.Fatalf("a request without any other attribute: %+v, want denied by the shared bucket", d)
	}

	for i, tenant := range []string{"a", "b"} {
		if d := decide(t, e, 1, "tenant", tenant, "route", "/report"); !d.Allowed || d.Results[0].Key != "" {
			t.Fatalf("quota take %d: %+v", i, d)
		}
	}
	if d := decide(t, e, 1, "tenant", "c", "route", "/report"); d.Allowed || d.Rule != "daily" {
		t.Fatalf("third quota take: %+v, want denied by the shared counter", d)
	}
	u, err := e.Usage(context.Background(), "daily", "")
	if err != nil || u.Used == nil || *u.Used != 2 || u.Remaining != 0 {
		t.Fatalf("Usage(daily, \"\") = %+v, %v; want used 2, remaining 0", u, err)
	}
	if u, err := e.Usage(context.Background(), "backend", ""); err != nil || u.Remaining != 0 {
		t.Fatalf("Usage(backend, \"\") = %+v, %v; want the spent shared bucket", u, err)
	}
	if _, err := e.Usage(context.Background(), "daily", "a"); err == nil {
		t.Fatal("Usage of a key-less quota accepted the key \"a\"")
	}
	if err := e.ResetUsage(context.Background(), "daily", ""); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, e, 1, "tenant", "d", "route", "/report"); !d.Allowed {
		t.Fatalf("after a reset: %+v, want allowed", d)
	}
}
