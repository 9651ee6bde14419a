package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets/hitters"
)

const topRules = `{"rules": [
	{"name": "per-ip", "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 3}},
	{"name": "tenant", "key": ["tenant"], "limit": {"rate": 1, "per": "1h", "burst": 100}}]}`

// waitTop polls e.Top until the decisions of the current second are in
// the window (a window counts whole seconds only).
func waitTop(t *testing.T, e *Engine, rule string, done func([]admin.RuleHitters) bool) []admin.RuleHitters {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		top, err := e.Top(rule, hitters.Short)
		if err != nil {
			t.Fatal(err)
		}
		if done(top) {
			return top
		}
		if time.Now().After(deadline) {
			t.Fatalf("Top(%q) still %+v after 10 s", rule, top)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEngineTopCountsEachRulesSide decides the same requests one by one
// and as one batch (recorded together at the batch's end): the summaries
// must be the same.
func TestEngineTopCountsEachRulesSide(t *testing.T) {
	reqs := make([]check.Request, 0, 6)
	for range 5 { // 3 admitted, then 2 denied by per-ip
		reqs = append(reqs, check.Request{Attributes: attrs("ip", "203.0.113.7", "tenant", "acme"), Cost: 1})
	}
	reqs = append(reqs, check.Request{Attributes: attrs("ip", "198.51.100.1", "tenant", "acme"), Cost: 2})
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			e := New(WithHitters())
			e.SetRules(1, mustRules(t, topRules))
			if batch {
				if err := e.DecideBatch(context.Background(), reqs, make([]check.Decision, len(reqs))); err != nil {
					t.Fatal(err)
				}
			} else {
				for i := range reqs {
					if _, err := e.Decide(context.Background(), reqs[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			top := waitTop(t, e, "", func(top []admin.RuleHitters) bool { return top[0].Admitted.Total > 0 })
			perIP, tenant := top[0], top[1]
			if perIP.Rule != "per-ip" || perIP.Admitted.Total != 5 || perIP.Denied.Total != 2 {
				t.Fatalf("per-ip: %+v, want 5 admitted (3 + cost 2) and 2 denied", perIP)
			}
			if got := fmt.Sprint(perIP.Denied.Entries); got != "[{203.0.113.7 2 0}]" {
				t.Fatalf("per-ip denied keys %s", got)
			}
			if got := fmt.Sprint(perIP.Admitted.Entries); got != "[{203.0.113.7 3 0} {198.51.100.1 2 0}]" {
				t.Fatalf("per-ip admitted keys %s", got)
			}
			// tenant admitted each request itself; per-ip's denials are its
			// results, not tenant's (tenant's tokens went back).
			if got := fmt.Sprint(tenant.Admitted.Entries); tenant.Denied.Total != 0 || got != "[{acme 7 0}]" {
				t.Fatalf("tenant: %+v", tenant)
			}
		})
	}
}

func TestEngineTopFollowsRuleChanges(t *testing.T) {
	e := New(WithHitters())
	e.SetRules(1, mustRules(t, topRules))
	decide(t, e, 1, "ip", "a", "tenant", "acme")
	waitTop(t, e, "tenant", func(top []admin.RuleHitters) bool { return top[0].Admitted.Total == 1 })
	// per-ip goes, tenant stays (with its summary), "new" arrives empty.
	e.SetRules(2, mustRules(t, `{"rules": [
		{"name": "new", "key": ["ip"], "limit": {"rate": 1, "per": "1s"}},
		{"name": "tenant", "key": ["tenant"], "limit": {"rate": 1, "per": "1h", "burst": 100}}]}`))
	if _, err := e.Top("per-ip", hitters.Long); !errors.Is(err, admin.ErrUnknownRule) {
		t.Fatalf("Top of a removed rule: %v, want ErrUnknownRule", err)
	}
	top, err := e.Top("", hitters.Long)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 2 || top[0].Rule != "new" || top[0].Admitted.Total != 0 || top[1].Rule != "tenant" || top[1].Admitted.Total != 1 {
		t.Fatalf("after the update: %+v", top)
	}
	if _, err := New().Top("", hitters.Long); !errors.Is(err, admin.ErrUnavailable) {
		t.Fatalf("Top without WithHitters: %v, want ErrUnavailable", err)
	}
}

// BenchmarkEngineDecideHitters is BenchmarkEngineDecide's decision with and
// without heavy hitters, in one run: the difference is what recording adds
// (three applicable rules, so three Records per decision).
func BenchmarkEngineDecideHitters(b *testing.B) {
	benchDecideHitters(b, `{"rules": [
		{"name": "ping", "match": {"route": "/ping"}, "key": ["ip"], "limit": {"rate": 5, "per": "1s", "burst": 10}},
		{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}},
		{"name": "route", "key": ["route"], "limit": {"rate": 1000000000, "per": "1s"}},
		{"name": "tenant", "key": ["tenant"], "limit": {"rate": 1000000000, "per": "1s"}, "shadow": true}]}`)
}

// BenchmarkEngineDecideHitters1Rule is the same with one applicable rule
// keyed on the client address: one Record per decision, so the difference
// is the cost of recording one decision.
func BenchmarkEngineDecideHitters1Rule(b *testing.B) {
	benchDecideHitters(b, `{"rules": [
		{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}}]}`)
}

func benchDecideHitters(b *testing.B, rules string) {
	for _, bc := range []struct {
		name string
		opts []Option
		keys int
	}{
		{"off/hot", nil, 1}, {"on/hot", []Option{WithHitters()}, 1},
		{"off/4096keys", nil, 4096}, {"on/4096keys", []Option{WithHitters()}, 4096},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := New(bc.opts...)
			e.SetRules(1, mustRules(b, rules))
			reqs := make([]check.Request, bc.keys)
			for i := range reqs {
				reqs[i] = check.Request{Attributes: attrs("ip", fmt.Sprintf("198.51.%d.%d", i/256, i%256),
					"route", "/api/orders", "method", "GET", "tenant", "acme")}
			}
			var d check.Decision
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := e.DecideInto(context.Background(), &reqs[i%len(reqs)], &d); err != nil || !d.Allowed {
					b.Fatal(err, d)
				}
			}
		})
	}
}

// BenchmarkEngineDecideBatchHitters decides batches of 1000 requests over
// 4096 client addresses (as deploy/batchload sends) with and without top
// keys: a batch records each rule's decisions together, so recording costs
// a batch far less per decision than one Record each.
func BenchmarkEngineDecideBatchHitters(b *testing.B) {
	const batch = 1000
	for _, bc := range []struct {
		name string
		opts []Option
	}{{"off", nil}, {"on", []Option{WithHitters()}}} {
		b.Run(bc.name, func(b *testing.B) {
			e := New(bc.opts...)
			e.SetRules(1, mustRules(b, `{"rules": [
				{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}}]}`))
			reqs := make([]check.Request, 4096)
			for i := range reqs {
				reqs[i] = check.Request{Attributes: attrs("ip", fmt.Sprintf("10.0.%d.%d", i/256, i%256), "route", "/api/orders", "method", "GET")}
			}
			out := make([]check.Decision, batch)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				from := i % (len(reqs) - batch)
				if err := e.DecideBatch(context.Background(), reqs[from:from+batch], out); err != nil {
					b.Fatal(err)
				}
				i += batch
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/decision")
		})
	}
}
