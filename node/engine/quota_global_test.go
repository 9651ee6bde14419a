package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// quotaTestTimeout bounds Redis calls in these tests: generous, for -race on
// a loaded two-core machine. Fallback is entered by stopping Redis.
const quotaTestTimeout = time.Second

func quotaRedis(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	rdb, err := lua.Dial(context.Background(), addr, "single", quotaTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// quotaGlobalEngine is an engine in global mode on rdb, one of nodes nodes,
// with a fallback share of 1/nodes.
func quotaGlobalEngine(t *testing.T, rdb redis.UniversalClient, nodes int, doc string, opts ...Option) *Engine {
	t.Helper()
	opts = append([]Option{WithGlobal(GlobalConfig{
		Limiter:      lua.NewLimiter(rdb),
		SliceTTL:     100 * time.Millisecond,
		RedisTimeout: quotaTestTimeout,
		Nodes:        func() int { return nodes },
	})}, opts...)
	e := New(opts...)
	e.SetRules(1, mustRules(t, doc))
	runEngine(t, e)
	return e
}

// redisWindow is the current window of p by Redis's clock.
func redisWindow(t *testing.T, rdb redis.UniversalClient, p rules.Period) lua.Window {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return windowAt(p, now)
}

func peekQuota(t *testing.T, rdb redis.UniversalClient, rule, key string, w lua.Window, limit int64) lua.QuotaUsage {
	t.Helper()
	u, err := lua.NewLimiter(rdb).PeekQuota(context.Background(), rule, key, w, limit)
	if err != nil || !u.InWindow {
		t.Fatalf("peek: %+v, %v", u, err)
	}
	return u
}

func waitForQuota(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQuotaThreeNodesOneRedis drives one tenant over its quota from three
// engines sharing one Redis. Every admission is recorded; the total admitted
// in the window must never exceed the quota, and must reach 95% of it (slices
// handed back unused are found again).
func TestQuotaThreeNodesOneRedis(t *testing.T) {
	rdb := quotaRedis(t, redistest.StartServer(t).Addr())
	const limit = 3000
	doc := `{"rules": [{"name": "tenant-monthly", "key": ["tenant"], "quota": {"limit": 3000, "per": "month"}}]}`
	window := redisWindow(t, rdb, rules.Month)
	engines := make([]*Engine, 3)
	for i := range engines {
		engines[i] = quotaGlobalEngine(t, rdb, len(engines), doc)
	}
	var admitted, reachedAt atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for n, e := range engines {
		for w := range 3 {
			wg.Go(func() {
				req := check.Request{Attributes: attrs("tenant", "acme")}
				var d check.Decision
				for i := 0; time.Since(start) < 8*time.Second; i++ {
					if at := reachedAt.Load(); at != 0 && time.Since(start) > time.Duration(at)+time.Second {
						return // a second past the quota: long enough to show an over-admission
					}
					req.Cost = int64(1 + (n+w+i)%3)
					if err := e.DecideInto(context.Background(), &req, &d); err != nil {
						t.Error(err)
						return
					}
					if d.Mode != check.ModeGlobal {
						t.Errorf("decided in mode %s", d.Mode)
						return
					}
					if d.Allowed && admitted.Add(req.Cost) >= limit-2 {
						reachedAt.CompareAndSwap(0, int64(time.Since(start)))
					}
					if !d.Allowed {
						time.Sleep(time.Millisecond) // a client backing off
					}
				}
			})
		}
	}
	wg.Wait()
	for _, e := range engines {
		e.Close(context.Background()) // settles what is left in slices
	}
	if w := redisWindow(t, rdb, rules.Month); !w.Start.Equal(window.Start) {
		t.Fatalf("the month changed during the test (%v to %v); run it again", window.Start, w.Start)
	}
	got := admitted.Load()
	used := peekQuota(t, rdb, "tenant-monthly", "acme", window, limit).Used
	t.Logf("admitted %d of a quota of %d (%.1f%%); Redis counts %d used", got, limit, 100*float64(got)/limit, used)
	if got > limit {
		t.Fatalf("three nodes admitted %d, over the quota of %d", got, limit)
	}
	if got < limit*95/100 {
		t.Fatalf("three nodes admitted %d, under 95%% of the quota of %d", got, limit)
	}
	if used < got || used > limit {
		t.Fatalf("Redis counts %d used for %d admitted (quota %d)", used, got, limit)
	}
}

// TestQuotaGlobalFewRedisCalls: a hot tenant's quota costs Redis one call
// per slice, not per request.
func TestQuotaGlobalFewRedisCalls(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := quotaRedis(t, srv.Addr())
	e := quotaGlobalEngine(t, rdb, 1, quotaRules("day", 1_000_000))
	calls := func() int64 {
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
				if rest, ok := strings.CutPrefix(line, cmd); ok {
					v, _, _ := strings.Cut(rest, ",")
					x, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatalf("commandstats line %q: %v", line, err)
					}
					n += x
				}
			}
		}
		return n
	}
	before := calls()
	const requests = 20000
	for range requests {
		if d := decide(t, e, 1, "tenant", "hot"); !d.Allowed {
			t.Fatalf("%+v", d)
		}
	}
	n := calls() - before
	t.Logf("%d decisions took %d script calls", requests, n)
	if n > requests/20 {
		t.Fatalf("%d script calls for %d decisions, want at most one per 20", n, requests)
	}
}

// TestQuotaGlobalWindowFromRedis: a node whose clock is months off still
// counts in the window Redis's clock says, and reports its end.
func TestQuotaGlobalWindowFromRedis(t *testing.T) {
	rdb := quotaRedis(t, redistest.StartServer(t).Addr())
	skewed := func() time.Time { return time.Now().AddDate(0, 3, 0) }
	e := quotaGlobalEngine(t, rdb, 1, quotaRules("month", 50), WithWallClock(skewed))
	window := redisWindow(t, rdb, rules.Month)
	d := decide(t, e, 5, "tenant", "acme")
	if !d.Allowed || d.Remaining != 45 {
		t.Fatalf("%+v", d)
	}
	untilEnd := time.Until(window.End)
	if got := time.Duration(d.ResetMs) * time.Millisecond; got < untilEnd-5*time.Second || got > untilEnd+5*time.Second {
		t.Fatalf("reset in %v, want the real month's end in %v", got, untilEnd)
	}
	e.Close(context.Background())
	if u := peekQuota(t, rdb, "q", "acme", window, 50); u.Used != 5 {
		t.Fatalf("Redis's window counts %d used, want 5", u.Used)
	}
}

// TestQuotaGlobalResetAndUsage: /v1/usage reads Redis; a reset starts the
// window over for every node.
func TestQuotaGlobalResetAndUsage(t *testing.T) {
	rdb := quotaRedis(t, redistest.StartServer(t).Addr())
	doc := `{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": 5, "per": "week"}},
		{"name": "r", "key": ["ip"], "limit": {"rate": 1, "per": "1h", "burst": 4}}]}`
	a := quotaGlobalEngine(t, rdb, 2, doc)
	b := quotaGlobalEngine(t, rdb, 2, doc)
	for _, step := range []struct {
		e    *Engine
		cost int64
	}{{a, 3}, {b, 2}} {
		if d := decide(t, step.e, step.cost, "tenant", "acme"); !d.Allowed || d.Mode != check.ModeGlobal {
			t.Fatalf("spending %d of the five: %+v, want allowed in global mode", step.cost, d)
		}
	}
	if d := decide(t, a, 1, "tenant", "acme"); d.Allowed {
		t.Fatalf("sixth of five: %+v", d)
	}
	u, err := b.Usage(context.Background(), "q", "acme")
	if err != nil || *u.Used != 5 || u.Remaining != 0 || u.Limit != 5 || u.Mode != check.ModeGlobal || u.ResetMs <= 0 {
		t.Fatalf("usage %+v, %v; want 5 used of 5", u, err)
	}
	if err := b.ResetUsage(context.Background(), "q", "acme"); err != nil {
		t.Fatal(err)
	}
	waitForQuota(t, "node a to admit again after the reset", func() bool {
		return decide(t, a, 1, "tenant", "acme").Allowed
	})
	decide(t, a, 1, "ip", "1.2.3.4")
	decide(t, b, 1, "ip", "1.2.3.4")
	a.Close(context.Background())
	b.Close(context.Background())
	if u, err := a.Usage(context.Background(), "r", "1.2.3.4"); err != nil || u.Remaining != 2 || u.Used != nil || u.Limit != 1 {
		t.Fatalf("bucket usage %+v, %v; want 2 of 4 left", u, err)
	}
}

// TestQuotaFallback: without Redis a node spends at most its share of what
// Redis last said was left, denies keys it knows nothing about, and charges
// what it spent to Redis once Redis is back.
func TestQuotaFallback(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := quotaRedis(t, srv.Addr())
	e := quotaGlobalEngine(t, rdb, 2, quotaRules("month", 1000)) // share 1/2
	for range 3 {
		if d := decide(t, e, 100, "tenant", "acme"); !d.Allowed || d.Mode != check.ModeGlobal {
			t.Fatalf("%+v", d)
		}
	}
	entry, _ := e.quotas.global.entries.load(e.rules.Load().compiled.Rule(0).AppendKey(nil, attrs("tenant", "acme")))
	entry.mu.Lock()
	lastSaid := entry.fb.syncRemaining
	entry.mu.Unlock()
	if lastSaid <= 0 || lastSaid >= 700 {
		t.Fatalf("Redis last said %d were left, want some of the 700 not in slices", lastSaid)
	}

	srv.Stop()
	var spent int64
	waitForQuota(t, "fallback mode", func() bool {
		d := decide(t, e, 1, "tenant", "acme")
		if d.Mode == check.ModeFallback && d.Allowed {
			spent++
		}
		return d.Mode == check.ModeFallback
	})
	for range 1000 {
		if d := decide(t, e, 1, "tenant", "acme"); d.Allowed {
			spent++
		} else if d.RetryAfterMs <= 0 || d.RetryAfterMs > 1000 {
			t.Fatalf("fallback denial %+v, want a retry within a second", d)
		}
	}
	if spent != lastSaid/2 {
		t.Fatalf("spent %d in fallback, want half of the %d Redis last reported", spent, lastSaid)
	}
	if d := decide(t, e, 1, "tenant", "stranger"); d.Allowed || d.Mode != check.ModeFallback || d.Reason == "" {
		t.Fatalf("unknown key in fallback: %+v, want denied with a reason", d)
	}
	srv.Start() // empty: the charge is all Redis will know of this window
	waitForQuota(t, "the fallback spending to be charged to Redis", func() bool {
		u, err := lua.NewLimiter(rdb).PeekQuota(context.Background(), "q", "acme", redisWindow(t, rdb, rules.Month), 1000)
		return err == nil && u.Used == spent
	})
}
