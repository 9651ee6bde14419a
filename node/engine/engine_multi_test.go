package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/api/check"
)

const multiRules = `{"rules": [
	{"name": "user", "key": ["user"], "limit": {"rate": 1, "per": "1h", "burst": 5}},
	{"name": "path", "key": ["path"], "limit": {"rate": 1, "per": "1h", "burst": 2}}]}`

func decideAll(t *testing.T, e *Engine, reqs ...check.Request) (bool, []check.Decision) {
	t.Helper()
	out := make([]check.Decision, len(reqs))
	allowed, err := e.DecideAll(context.Background(), reqs, out)
	if err != nil {
		t.Fatalf("DecideAll: %v", err)
	}
	return allowed, out
}

func TestDecideAllConsumesEveryRequestWhenAllAllow(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, multiRules))
	allowed, out := decideAll(t, e,
		check.Request{Attributes: attrs("user", "u1"), Cost: 2},
		check.Request{Attributes: attrs("path", "/a")})
	if !allowed || !out[0].Allowed || !out[1].Allowed {
		t.Fatalf("allowed %v, decisions %+v", allowed, out)
	}
	if out[0].Rule != "user" || out[0].Remaining != 3 || out[1].Rule != "path" || out[1].Remaining != 1 {
		t.Fatalf("decisions %+v, want user remaining 3 and path remaining 1", out)
	}
	if d := decide(t, e, 1, "user", "u1"); d.Remaining != 2 {
		t.Fatalf("user bucket after the group: remaining %d, want 2", d.Remaining)
	}
}

func TestDecideAllDenialRefundsEveryRequest(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, multiRules))
	decide(t, e, 2, "path", "/a") // path bucket now empty
	allowed, out := decideAll(t, e,
		check.Request{Attributes: attrs("user", "u1"), Cost: 1},
		check.Request{Attributes: attrs("user", "u1", "path", "/a")},
		check.Request{Attributes: attrs("user", "u2")})
	if allowed {
		t.Fatal("group with an empty bucket was allowed")
	}
	if !out[0].Allowed || out[1].Allowed || !out[2].Allowed {
		t.Fatalf("per-request verdicts %v %v %v, want true false true", out[0].Allowed, out[1].Allowed, out[2].Allowed)
	}
	if out[1].Rule != "path" || out[1].RetryAfterMs <= 0 {
		t.Fatalf("denied request %+v, want denied by path with a retry time", out[1])
	}
	// Nothing the group took stays taken: u1 took 2 (requests 0 and 1), u2 took 1.
	if d := decide(t, e, 1, "user", "u1"); d.Remaining != 4 {
		t.Fatalf("u1 after a denied group: remaining %d, want 4 (nothing consumed)", d.Remaining)
	}
	if d := decide(t, e, 1, "user", "u2"); d.Remaining != 4 {
		t.Fatalf("u2 after a denied group: remaining %d, want 4 (nothing consumed)", d.Remaining)
	}
}

func TestDecideAllSharedBucketCountsTwice(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, multiRules))
	same := check.Request{Attributes: attrs("path", "/a")}
	allowed, out := decideAll(t, e, same, same, same)
	if allowed || !out[0].Allowed || !out[1].Allowed || out[2].Allowed {
		t.Fatalf("three takes from a burst-2 bucket: allowed %v, verdicts %v %v %v", allowed, out[0].Allowed, out[1].Allowed, out[2].Allowed)
	}
	if d := decide(t, e, 2, "path", "/a"); !d.Allowed {
		t.Fatalf("bucket not refunded after the denied group: %+v", d)
	}
}

func TestDecideAllBadCostChangesNothing(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, multiRules))
	out := make([]check.Decision, 2)
	_, err := e.DecideAll(context.Background(), []check.Request{
		{Attributes: attrs("user", "u1")},
		{Attributes: attrs("user", "u1"), Cost: -1}}, out)
	var fe *check.FieldError
	if !errors.As(err, &fe) || fe.Field != "requests[1].cost" {
		t.Fatalf("err %v, want a FieldError on requests[1].cost", err)
	}
	if d := decide(t, e, 1, "user", "u1"); d.Remaining != 4 {
		t.Fatalf("u1 after a rejected call: remaining %d, want 4", d.Remaining)
	}
	if _, err := e.DecideAll(context.Background(), make([]check.Request, 2), out[:1]); err == nil {
		t.Fatal("mismatched out length accepted")
	}
}

func TestEngineRuleLookup(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, multiRules))
	r, ok := e.Rule("path")
	if !ok || r.Limit == nil || r.Limit.Burst != 2 || r.Limit.Rate != 1 {
		t.Fatalf("Rule(path) = %+v, %v", r, ok)
	}
	if _, ok := e.Rule("nope"); ok {
		t.Fatal("unknown rule found")
	}
}
