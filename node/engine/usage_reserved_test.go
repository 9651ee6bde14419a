package engine

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// TestUsageSeparatesUsedFromReserved: /v1/usage in global mode counts what
// was admitted as used and what sits unspent in slices as reserved, for
// quotas and rate limits alike, from the first admit on (before the slice
// settles). It used to report the whole slice as used.
func TestUsageSeparatesUsedFromReserved(t *testing.T) {
	rdb := quotaRedis(t, redistest.StartServer(t).Addr())
	doc := `{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": 1000, "per": "month"}},
		{"name": "r", "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 1000}}]}`
	e := New(WithGlobal(GlobalConfig{
		Limiter:      lua.NewLimiter(rdb),
		SliceTTL:     time.Minute, // the slices stay live while the test reads usage
		RedisTimeout: quotaTestTimeout,
		Nodes:        func() int { return 1 },
	}))
	e.SetRules(1, mustRules(t, doc))
	runEngine(t, e)
	for range 3 {
		if d := decide(t, e, 1, "tenant", "acme"); !d.Allowed {
			t.Fatalf("quota: %+v", d)
		}
		if d := decide(t, e, 1, "ip", "1.2.3.4"); !d.Allowed {
			t.Fatalf("rate limit: %+v", d)
		}
	}

	u, err := e.Usage(context.Background(), "q", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if *u.Used != 3 || u.Reserved <= 0 || *u.Used+u.Reserved+u.Remaining != 1000 {
		t.Fatalf("quota usage %+v (used %d): want 3 used, the rest of the slice reserved, all adding up to the limit", u, *u.Used)
	}
	b, err := e.Usage(context.Background(), "r", "1.2.3.4")
	if err != nil {
		t.Fatal(err)
	}
	if b.Used != nil || b.Reserved <= 0 || b.Remaining+b.Reserved != 1000-3 {
		t.Fatalf("bucket usage %+v: want the slice's unspent tokens reserved, the 3 admits gone", b)
	}

	// Once the slices are handed back, nothing is reserved and used stays 3.
	e.Close(context.Background())
	u, err = e.Usage(context.Background(), "q", "acme")
	if err != nil || *u.Used != 3 || u.Reserved != 0 || u.Remaining != 997 {
		t.Fatalf("after settling: %+v, %v; want 3 used, 0 reserved, 997 remaining", u, err)
	}
	b, err = e.Usage(context.Background(), "r", "1.2.3.4")
	if err != nil || b.Reserved != 0 || b.Remaining != 997 {
		t.Fatalf("bucket after settling: %+v, %v; want 997 remaining, 0 reserved", b, err)
	}
}
