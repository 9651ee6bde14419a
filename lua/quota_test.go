package lua_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// The quota script's tests, against a standalone server and a Redis Cluster.

func TestQuotaStandalone(t *testing.T) {
	t.Parallel()
	runQuotaTests(t, dial(t, redistest.StartServer(t).Addr()))
}

func TestQuotaCluster(t *testing.T) {
	t.Parallel()
	runQuotaTests(t, dial(t, redistest.StartCluster(t).Addrs()[0]))
}

func runQuotaTests(t *testing.T, rdb redis.UniversalClient) {
	for name, test := range map[string]func(*testing.T, *quotaEnv){
		"GrantSettlePeek":     testQuotaGrantSettlePeek,
		"Exhaustion":          testQuotaExhaustion,
		"OutOfWindow":         testQuotaOutOfWindow,
		"GrantEndsWithWindow": testQuotaGrantEndsWithWindow,
		"ExpiredGrantIsSpent": testQuotaExpiredGrantIsSpent,
		"Charge":              testQuotaCharge,
		"ResetKeepsGrants":    testQuotaResetKeepsGrants,
		"KeysExpire":          testQuotaKeysExpire,
		"WindowsApart":        testQuotaWindowsApart,
		"BadArguments":        testQuotaBadArguments,
		"NeverOverLimit":      testQuotaNeverOverLimit,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, newQuotaEnv(t, rdb))
		})
	}
}

// quotaEnv is one test's quota (limit 100) in a window of two hours around Redis's now.
type quotaEnv struct {
	*env
	w     lua.Window
	limit int64
}

func newQuotaEnv(t *testing.T, rdb redis.UniversalClient) *quotaEnv {
	e := &quotaEnv{env: newEnv(t, rdb), limit: 100}
	now := e.redisNow()
	e.w = lua.Window{Start: now.Add(-time.Hour), End: now.Add(time.Hour)}
	return e
}

func (e *quotaEnv) acquire(charge int64, prev lua.Settlement, want, min int64, ttl time.Duration) lua.QuotaGrant {
	e.t.Helper()
	g, err := e.lim.AcquireQuota(e.t.Context(), e.rule, "k", e.w, e.limit, charge, prev, want, min, ttl)
	if err != nil {
		e.t.Fatalf("AcquireQuota(charge %d, want %d, min %d): %v", charge, want, min, err)
	}
	if !g.InWindow {
		e.t.Fatalf("AcquireQuota: Redis time %v outside %v", g.Now, e.w)
	}
	return g
}

func (e *quotaEnv) settle(g lua.QuotaGrant, unused int64) bool {
	e.t.Helper()
	found, err := e.lim.SettleQuota(e.t.Context(), e.rule, "k", e.w, e.limit, g.ID, g.Granted, unused)
	if err != nil {
		e.t.Fatalf("SettleQuota: %v", err)
	}
	return found
}

func (e *quotaEnv) peek() lua.QuotaUsage {
	e.t.Helper()
	u, err := e.lim.PeekQuota(e.t.Context(), e.rule, "k", e.w, e.limit)
	if err != nil || !u.InWindow {
		e.t.Fatalf("PeekQuota: %+v, %v", u, err)
	}
	return u
}

func (e *quotaEnv) wantUsage(used, remaining int64) {
	e.t.Helper()
	if u := e.peek(); u.Used != used || u.Remaining != remaining {
		e.t.Fatalf("usage %d used, %d remaining; want %d, %d", u.Used, u.Remaining, used, remaining)
	}
}

func testQuotaGrantSettlePeek(t *testing.T, e *quotaEnv) {
	e.wantUsage(0, 100)
	g := e.acquire(0, lua.Settlement{}, 30, 1, time.Minute)
	if g.Granted != 30 || g.ID == 0 || g.Remaining != 70 {
		t.Fatalf("grant %+v, want 30 granted, 70 remaining", g)
	}
	e.wantUsage(30, 70) // out in a grant counts as used
	if !e.settle(g, 10) {
		t.Fatal("settle did not find the grant")
	}
	e.wantUsage(20, 80)
	if e.settle(g, 10) {
		t.Fatal("a second settle found the grant again")
	}
	e.wantUsage(20, 80)
	// Renewing settles the previous grant in the same call.
	g1 := e.acquire(0, lua.Settlement{}, 10, 1, time.Minute)
	g2 := e.acquire(0, lua.Settlement{ID: g1.ID, Granted: g1.Granted, Unused: 4}, 5, 1, time.Minute)
	if g2.Granted != 5 || g2.Remaining != 80-6-5 {
		t.Fatalf("renew %+v, want 5 granted, %d remaining", g2, 80-6-5)
	}
}

func testQuotaExhaustion(t *testing.T, e *quotaEnv) {
	if g := e.acquire(0, lua.Settlement{}, 80, 1, time.Minute); g.Granted != 80 {
		t.Fatalf("first grant %+v", g)
	}
	if g := e.acquire(0, lua.Settlement{}, 50, 5, time.Minute); g.Granted != 20 || g.Remaining != 0 {
		t.Fatalf("partial grant %+v, want the last 20", g)
	}
	if g := e.acquire(0, lua.Settlement{}, 1, 1, time.Minute); g.Granted != 0 || g.ID != 0 {
		t.Fatalf("grant from an exhausted quota: %+v", g)
	}
}

func testQuotaOutOfWindow(t *testing.T, e *quotaEnv) {
	now := e.redisNow()
	for _, w := range []lua.Window{
		{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)},
		{Start: now.Add(time.Hour), End: now.Add(2 * time.Hour)},
	} {
		g, err := e.lim.AcquireQuota(t.Context(), e.rule, "k", w, 100, 5, lua.Settlement{}, 10, 1, time.Minute)
		if err != nil || g.InWindow || g.Granted != 0 {
			t.Fatalf("acquire in %v at %v: %+v, %v; want refused as out of window", w, now, g, err)
		}
		if d := g.Now.Sub(now); d < 0 || d > 5*time.Second {
			t.Fatalf("out-of-window answer says Redis time is %v, read %v just before", g.Now, now)
		}
	}
	e.wantUsage(0, 100) // the charges were not applied either
}

func testQuotaGrantEndsWithWindow(t *testing.T, e *quotaEnv) {
	now := e.redisNow()
	e.w = lua.Window{Start: now.Add(-time.Hour), End: now.Add(300 * time.Millisecond)}
	g := e.acquire(0, lua.Settlement{}, 10, 1, time.Minute)
	if g.Granted != 10 || g.TTL <= 0 || g.TTL > 300*time.Millisecond {
		t.Fatalf("grant %+v near the window's end, want a TTL cut to at most 300ms", g)
	}
	if g.Now.Add(g.TTL) != e.w.End.Truncate(time.Microsecond) {
		t.Fatalf("grant expires at %v, want the window's end %v", g.Now.Add(g.TTL), e.w.End)
	}
}

func testQuotaExpiredGrantIsSpent(t *testing.T, e *quotaEnv) {
	g := e.acquire(0, lua.Settlement{}, 25, 1, 30*time.Millisecond)
	if g.TTL != 30*time.Millisecond {
		t.Fatalf("grant TTL %v, want 30ms", g.TTL)
	}
	waitUntil(t, 5*time.Second, "the grant to expire", func() bool { return e.redisNow().After(g.Now.Add(g.TTL)) })
	if e.settle(g, 25) {
		t.Fatal("settled a grant after its expiry")
	}
	e.wantUsage(25, 75)
}

func testQuotaCharge(t *testing.T, e *quotaEnv) {
	if g := e.acquire(7, lua.Settlement{}, 0, 0, time.Minute); g.Granted != 0 || g.Remaining != 93 {
		t.Fatalf("charge-only call: %+v, want nothing granted, 93 remaining", g)
	}
	// Fallback spending may overshoot what Redis knew; the charge is recorded in full.
	if g := e.acquire(500, lua.Settlement{}, 1, 1, time.Minute); g.Granted != 0 || g.Remaining != 0 {
		t.Fatalf("over-charged: %+v, want nothing granted", g)
	}
	e.wantUsage(507, 0)
}

func testQuotaResetKeepsGrants(t *testing.T, e *quotaEnv) {
	g := e.acquire(0, lua.Settlement{}, 30, 1, time.Minute)
	e.acquire(50, lua.Settlement{}, 0, 0, time.Minute)
	e.wantUsage(80, 20)
	inWindow, _, err := e.lim.ResetQuota(t.Context(), e.rule, "k", e.w)
	if err != nil || !inWindow {
		t.Fatalf("reset: %v, %v", inWindow, err)
	}
	e.wantUsage(30, 70) // the 30 still out are counted until settled
	e.settle(g, 30)
	e.wantUsage(0, 100)
}

func testQuotaKeysExpire(t *testing.T, e *quotaEnv) {
	e.acquire(0, lua.Settlement{}, 1, 1, time.Minute)
	key := lua.QuotaKey(e.rule, "k", e.w.Start)
	for _, k := range []string{key, key + ":g"} {
		at, err := e.rdb.PExpireTime(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		want := e.w.End.Add(time.Minute)
		if d := time.UnixMilli(int64(at / time.Millisecond)).Sub(want); d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("%s expires at %v, want the window's end + 1m = %v", k, time.UnixMilli(int64(at/time.Millisecond)), want)
		}
	}
}

func testQuotaWindowsApart(t *testing.T, e *quotaEnv) {
	e.acquire(40, lua.Settlement{}, 0, 0, time.Minute)
	now := e.redisNow()
	other := &quotaEnv{env: e.env, limit: 100, w: lua.Window{Start: now.Add(-time.Minute), End: now.Add(time.Minute)}}
	other.wantUsage(0, 100)
	e.wantUsage(40, 60)
	if a, b := lua.QuotaKey("r", "k", e.w.Start), lua.QuotaKey("r", "k", other.w.Start); a == b ||
		!strings.HasPrefix(a, "sluice:{q:r:k}:") {
		t.Fatalf("window keys %q and %q", a, b)
	}
}

func testQuotaBadArguments(t *testing.T, e *quotaEnv) {
	for _, c := range []struct {
		limit, want, min int64
		w                lua.Window
	}{
		{0, 1, 1, e.w},
		{100, 1, 2, e.w},
		{100, 1, 1, lua.Window{Start: e.w.End, End: e.w.Start}},
	} {
		_, err := e.lim.AcquireQuota(t.Context(), e.rule, "k", c.w, c.limit, 0, lua.Settlement{}, c.want, c.min, time.Minute)
		if err == nil || !strings.Contains(err.Error(), "sluice:") {
			t.Errorf("limit %d want %d min %d window %v: err %v, want the script's argument error", c.limit, c.want, c.min, c.w, err)
		}
	}
}

// testQuotaNeverOverLimit has workers take slices of 1 to 8 tokens until the quota is gone,
// spending a random part of each and settling the rest: what they spend must be exactly the
// limit, never more.
func testQuotaNeverOverLimit(t *testing.T, e *quotaEnv) {
	e.limit = 1000
	var spent atomic.Int64
	group, ctx := errgroup.WithContext(t.Context())
	for w := range 4 {
		group.Go(func() error {
			for i := 0; ; i++ {
				want := int64(1 + (w+i)%8)
				g, err := e.lim.AcquireQuota(ctx, e.rule, "k", e.w, e.limit, 0, lua.Settlement{}, want, 1, time.Minute)
				if err != nil {
					return err
				}
				if g.Granted == 0 {
					return nil
				}
				use := g.Granted - int64(i%2)
				if _, err := e.lim.SettleQuota(ctx, e.rule, "k", e.w, e.limit, g.ID, g.Granted, g.Granted-use); err != nil {
					return err
				}
				spent.Add(use)
			}
		})
	}
	if err := group.Wait(); err != nil {
		t.Fatal(err)
	}
	if spent.Load() != e.limit {
		t.Fatalf("spent %d of a quota of %d", spent.Load(), e.limit)
	}
	e.wantUsage(e.limit, 0)
}
