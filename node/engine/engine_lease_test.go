package engine

import (
	"testing"

	"github.com/sluicehq/sluice/api/check"
)

// leaseRules: 100/s with a burst of 40, so that a share of 0.25 is a bucket
// of 25/s holding 10.
const leaseRules = `{"rules": [
	{"name": "r", "key": ["ip"], "limit": {"rate": 100, "per": "1s", "burst": 40}},
	{"name": "q", "key": ["tenant"], "quota": {"limit": 30, "per": "day"}}]}`

func newLeaseEngine(t *testing.T, share float64, members int) *Engine {
	t.Helper()
	e := New(WithLeases(LeaseConfig{
		Share:   func(string) float64 { return share },
		Members: func() int { return members },
	}))
	e.SetRules(1, mustRules(t, leaseRules))
	return e
}

// admitBurst sends requests on one key at once until one is denied and
// returns how many were admitted and the denial.
func admitBurst(t *testing.T, e *Engine, kv ...string) (int, check.Decision) {
	t.Helper()
	for n := 0; n < 1000; n++ {
		if d := decide(t, e, 1, kv...); !d.Allowed {
			return n, d
		}
	}
	t.Fatal("1000 requests admitted at once")
	return 0, check.Decision{}
}

func TestLeaseModeDecidesAtTheShare(t *testing.T) {
	e := newLeaseEngine(t, 0.25, 4)
	n, d := admitBurst(t, e, "ip", "a")
	// The burst is split with the share: max(1, 40·0.25) = 10, plus what
	// refills (25/s) while the loop runs, which is well under one token.
	if n < 10 || n > 11 || d.Mode != check.ModeLease {
		t.Fatalf("admitted %d at once, last answer %+v; want the share's burst of 10 in lease mode", n, d)
	}
	// Retry-After is this node's own wait: one token at 25/s.
	if d.RetryAfterMs < 1 || d.RetryAfterMs > 40 {
		t.Fatalf("retry_after_ms %d, want at most 40 (one token at the share's 25/s)", d.RetryAfterMs)
	}
}

func TestLeaseShareBurstIsAtLeastOneToken(t *testing.T) {
	e := newLeaseEngine(t, 0.01, 4) // 40·0.01 = 0.4 tokens
	if n, d := admitBurst(t, e, "ip", "a"); n != 1 {
		t.Fatalf("admitted %d at once (%+v), want max(1, burst·s) = 1", n, d)
	}
}

func TestJoiningSplitsTheBucketWithoutAddingBurst(t *testing.T) {
	e := newLeaseEngine(t, 0.25, 4)
	e.SetClustered(false) // a single node
	if n, _ := admitBurst(t, e, "ip", "spent"); n < 40 {
		t.Fatalf("local burst %d, want 40", n)
	}
	// A second member joins: a bucket spent at the full limit stays spent
	// at the share, and a full one holds the share's burst, not more.
	e.SetClustered(true)
	if d := decide(t, e, 1, "ip", "spent"); d.Allowed || d.Mode != check.ModeLease {
		t.Fatalf("spent bucket after the switch to lease mode: %+v, want denied in lease mode", d)
	}
	if n, _ := admitBurst(t, e, "ip", "full"); n < 10 || n > 11 {
		t.Fatalf("full bucket after the switch admitted %d at once, want the share's 10", n)
	}
}

func TestBackToLocalModeEmptiesTheBuckets(t *testing.T) {
	e := newLeaseEngine(t, 0.25, 4)
	if n, _ := admitBurst(t, e, "ip", "a"); n < 10 {
		t.Fatalf("lease burst %d", n)
	}
	// Back to one member: the node has just admitted at its share, so its
	// buckets do not jump to the whole burst.
	e.SetClustered(false)
	if d := decide(t, e, 1, "ip", "b"); d.Allowed || d.Mode != check.ModeLocal {
		t.Fatalf("first local decision after lease mode: %+v, want denied in local mode", d)
	}
}

func TestSingleNodeStartsWithFullLocalBuckets(t *testing.T) {
	// A node starts in lease mode until it knows it is alone; if it never
	// decided meanwhile, local mode keeps today's full buckets.
	e := newLeaseEngine(t, 0.25, 1)
	e.SetClustered(false)
	n, d := admitBurst(t, e, "ip", "a")
	if n < 40 || d.Mode != check.ModeLocal {
		t.Fatalf("admitted %d at once (%+v), want the whole burst of 40 in local mode", n, d)
	}
}

func TestQuotaInLeaseModeIsSplitByMembers(t *testing.T) {
	e := newLeaseEngine(t, 0.25, 3)
	n, d := admitBurst(t, e, "tenant", "acme")
	if n != 10 || d.Mode != check.ModeLease || d.Limit != 10 {
		t.Fatalf("quota admitted %d (%+v), want 30/3 = 10 with limit 10", n, d)
	}
}
