package lua_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lua"
)

func testRefill(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 100, Per: time.Second, Burst: 10}
	g := e.acquire("k", b, 10, 10, time.Second)
	if g.Granted != 10 || g.Remaining != 0 {
		t.Fatalf("first grant %+v, want all 10 tokens of a new bucket", g)
	}
	// Settling it all used lifts the cap burst - o; refill runs from the settle on.
	t1 := e.redisNow()
	if !e.settle("k", b, g, 0) {
		t.Fatal("settle of a live grant not found")
	}
	t2 := e.redisNow()
	time.Sleep(50 * time.Millisecond) // let tokens accrue
	t3 := e.redisNow()
	remaining, reset := e.peek("k", b)
	t4 := e.redisNow()

	// A stalled test (a loaded machine) may see the bucket full: both ranges stop there.
	low, high := min(b.Burst, tokensIn(b, t3.Sub(t2))), min(b.Burst, tokensIn(b, t4.Sub(t1)))
	if remaining < low || remaining > high {
		t.Errorf("after refilling for %v..%v remaining = %d, want %d..%d", t3.Sub(t2), t4.Sub(t1), remaining, low, high)
	}
	perToken := b.Per / time.Duration(b.Rate)
	resetLow := max(0, time.Duration(b.Burst)*perToken-t4.Sub(t1))
	resetHigh := max(0, time.Duration(b.Burst)*perToken-t3.Sub(t2)) + time.Microsecond
	if reset < resetLow || reset > resetHigh {
		t.Errorf("reset = %v, want %v..%v", reset, resetLow, resetHigh)
	}

	waitUntil(t, 2*time.Second, "the bucket to refill", func() bool {
		g := e.acquire("k", b, b.Burst, b.Burst, time.Second)
		if g.Granted == 0 && (g.RetryAfter <= 0 || g.RetryAfter > time.Duration(b.Burst)*perToken) {
			t.Fatalf("denied with retry after %v, want 0..%v", g.RetryAfter, time.Duration(b.Burst)*perToken)
		}
		return g.Granted == b.Burst
	})
	if full := e.redisNow().Sub(t1); full < time.Duration(b.Burst)*perToken {
		t.Errorf("bucket full again %v after being emptied, faster than %d/%v allows", full, b.Rate, b.Per)
	}
}

func testPartialGrants(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	g1 := e.acquire("k", b, 7, 7, time.Minute)
	if g1.Granted != 7 || g1.Remaining != 3 || g1.ID == 0 {
		t.Fatalf("grant 1 = %+v, want 7 granted, 3 remaining", g1)
	}
	// The next request of 7 needs 4 more tokens: 4 h at 1/h.
	if g1.RetryAfter <= 4*time.Hour-time.Second || g1.RetryAfter > 4*time.Hour {
		t.Errorf("grant 1 retry after %v, want about 4h until 7 more tokens", g1.RetryAfter)
	}
	g2 := e.acquire("k", b, 7, 1, time.Minute)
	if g2.Granted != 3 || g2.Remaining != 0 || g2.ID != g1.ID+1 {
		t.Fatalf("grant 2 = %+v, want the last 3 tokens under the next id", g2)
	}
	g3 := e.acquire("k", b, 5, 2, time.Minute)
	if g3.Granted != 0 || g3.ID != 0 || g3.Never {
		t.Fatalf("grant 3 = %+v, want a denial", g3)
	}
	if g3.RetryAfter <= 2*time.Hour-time.Second || g3.RetryAfter > 2*time.Hour {
		t.Errorf("retry after %v, want about 2h for 2 tokens at 1/h", g3.RetryAfter)
	}
	if g3.Reset <= 10*time.Hour-time.Second || g3.Reset > 10*time.Hour {
		t.Errorf("reset %v, want about 10h for 10 tokens at 1/h", g3.Reset)
	}
}

// With every token out in grants, tokens cannot accrue until grants end, however fast
// the rate: retry-after must wait for them.
func testRetryWaitsForGrants(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1000, Per: time.Second, Burst: 10}
	g1 := e.acquire("k", b, 7, 7, 10*time.Second)
	g2 := e.acquire("k", b, 3, 3, 20*time.Second)
	if g1.Granted+g2.Granted != 10 {
		t.Fatalf("grants %d + %d, want the whole burst", g1.Granted, g2.Granted)
	}
	g := e.acquire("k", b, 5, 5, time.Second)
	if g.Granted != 0 || g.RetryAfter <= 9*time.Second || g.RetryAfter > 10*time.Second {
		t.Fatalf("with all tokens granted: %+v, want a denial until the 7-token grant expires in 10s", g)
	}
	if !e.settle("k", b, g1, 0) {
		t.Fatal("settle of a live grant not found")
	}
	g = e.acquire("k", b, 5, 5, time.Second)
	if g.Granted == 0 && (g.RetryAfter <= 0 || g.RetryAfter > 5*time.Millisecond) {
		t.Fatalf("after settling: %+v, want a wait of at most 5ms for 5 tokens at 1000/s", g)
	}
}

// A grant that empties the bucket still says how long the next request of
// its size must wait: that is what a node reports when it denies next.
func testRetryAfterAGrant(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Minute, Burst: 1}
	g := e.acquire("k", b, 1, 1, time.Second)
	if g.Granted != 1 || g.RetryAfter < 59*time.Second || g.RetryAfter > time.Minute {
		t.Fatalf("grant emptying a 1/min bucket: %+v, want 1 granted and retry after about 1m", g)
	}
	if g := e.acquire("k2", lua.Bucket{Rate: 10, Per: time.Second, Burst: 5}, 1, 1, time.Second); g.Granted != 1 || g.RetryAfter != 0 {
		t.Fatalf("grant leaving tokens: %+v, want 1 granted and no wait", g)
	}
}

func testSettle(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	g := e.acquire("k", b, 6, 6, time.Minute)
	if !e.settle("k", b, g, 4) {
		t.Fatal("settle of a live grant not found")
	}
	if remaining, _ := e.peek("k", b); remaining != 8 {
		t.Fatalf("after handing back 4 of 6: remaining %d, want 8", remaining)
	}
	if e.settle("k", b, g, 4) {
		t.Fatal("a second settle of the same grant was found")
	}
	if remaining, _ := e.peek("k", b); remaining != 8 {
		t.Fatalf("a second settle changed remaining to %d, want 8", remaining)
	}

	g = e.acquire("k", b, 2, 2, time.Minute)
	wrong := lua.Grant{ID: g.ID, Granted: g.Granted + 1}
	if e.settle("k", b, wrong, wrong.Granted) {
		t.Fatal("a settle naming the wrong amount was found")
	}
	if s := e.state("k"); s.o != 2 || s.grantSum != 2 {
		t.Fatalf("after a wrong settle: %+v, want the grant of 2 still outstanding", s)
	}
	if !e.settle("k", b, g, 2) {
		t.Fatal("settle of a live grant not found")
	}
	if s := e.state("k"); s.o != 0 || s.grantSum != 0 || s.tk < 8 {
		t.Fatalf("after settling everything: %+v, want no grants and 8 tokens", s)
	}
}

func testSettleCap(t *testing.T, e *env) {
	// Refill stops at burst - o while tokens are out in grants.
	b := lua.Bucket{Rate: 1000, Per: time.Second, Burst: 10}
	g := e.acquire("refill", b, 6, 6, time.Minute)
	time.Sleep(30 * time.Millisecond) // long enough to refill 30 tokens, were there no cap
	if remaining, _ := e.peek("refill", b); remaining != 4 {
		t.Fatalf("with 6 tokens granted: remaining %d, want the cap 10-6 = 4", remaining)
	}
	if !e.settle("refill", b, g, 6) {
		t.Fatal("settle of a live grant not found")
	}
	if remaining, _ := e.peek("refill", b); remaining != 10 {
		t.Fatalf("after handing all 6 back: remaining %d, want 10", remaining)
	}

	// Handing back is capped at burst - o too, which bites when a rule's burst shrinks.
	slow := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	g = e.acquire("shrunk", slow, 6, 6, time.Minute)
	shrunk := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 5}
	if !e.settle("shrunk", shrunk, g, 6) {
		t.Fatal("settle of a live grant not found")
	}
	if s := e.state("shrunk"); s.tk != 5 || s.o != 0 {
		t.Fatalf("after handing 6 back to a bucket shrunk to 5: %+v, want 5 tokens", s)
	}
}

func testExpiredGrantIsSpent(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	g := e.acquire("k", b, 10, 10, 50*time.Millisecond)
	s := e.state("k")
	if len(s.expiries) != 1 {
		t.Fatalf("state after one grant: %+v", s)
	}
	waitUntil(t, 2*time.Second, "the grant to expire by Redis time", func() bool {
		return e.redisNow().UnixMicro() > s.expiries[0]
	})
	if e.settle("k", b, g, 10) {
		t.Fatal("settle after expiry found the grant")
	}
	if remaining, _ := e.peek("k", b); remaining != 0 {
		t.Fatalf("settling an expired grant gave back tokens: remaining %d, want 0", remaining)
	}
	if s := e.state("k"); s.o != 0 || s.grantSum != 0 {
		t.Fatalf("after expiry: %+v, want nothing outstanding", s)
	}
	if g := e.acquire("k", b, 1, 1, time.Second); g.Granted != 0 || g.RetryAfter < 59*time.Minute {
		t.Fatalf("after the expired grant: %+v, want a denial for about an hour", g)
	}
}

func testNever(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 10, Per: time.Second, Burst: 10}
	if g := e.acquire("k", b, 11, 11, time.Second); g.Granted != 0 || !g.Never || g.RetryAfter != 0 {
		t.Fatalf("cost above burst: %+v, want a denial marked never", g)
	}
	if g := e.acquire("k", b, 20, 5, time.Second); g.Granted != 10 || g.Never {
		t.Fatalf("want above burst, min below: %+v, want the whole burst", g)
	}
}

func testBadArguments(t *testing.T, e *env) {
	ok := lua.Bucket{Rate: 10, Per: time.Second, Burst: 10}
	for name, call := range map[string]func() error{
		"rate 0": func() error {
			_, err := e.lim.Acquire(t.Context(), e.rule, "k", lua.Bucket{Per: time.Second, Burst: 1}, 1, 1, time.Second)
			return err
		},
		"per below 1µs": func() error {
			_, err := e.lim.Acquire(t.Context(), e.rule, "k", lua.Bucket{Rate: 1, Per: time.Nanosecond, Burst: 1}, 1, 1, time.Second)
			return err
		},
		"negative burst": func() error {
			_, err := e.lim.Peek(t.Context(), e.rule, "k", lua.Bucket{Rate: 1, Per: time.Second, Burst: -1})
			return err
		},
		"want 0": func() error {
			_, err := e.lim.Acquire(t.Context(), e.rule, "k", ok, 0, 0, time.Second)
			return err
		},
		"min above want": func() error {
			_, err := e.lim.Acquire(t.Context(), e.rule, "k", ok, 1, 2, time.Second)
			return err
		},
		"ttl 0": func() error {
			_, err := e.lim.Acquire(t.Context(), e.rule, "k", ok, 1, 1, 0)
			return err
		},
		"unused above granted": func() error {
			_, err := e.lim.Settle(t.Context(), e.rule, "k", ok, 1, 1, 2)
			return err
		},
		"negative unused": func() error {
			_, err := e.lim.Settle(t.Context(), e.rule, "k", ok, 1, 1, -1)
			return err
		},
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "sluice:") {
			t.Errorf("%s: error %v, want the script to refuse", name, err)
		}
	}
	if n, err := e.rdb.Exists(t.Context(), lua.RedisKey(e.rule, "k")).Result(); err != nil || n != 0 {
		t.Errorf("refused calls left state behind: EXISTS = %d, %v", n, err)
	}
}

// testInvariant checks tk + o <= burst, and o against the grant set, after every step of
// a random mix of acquires, settles (some late, some wrong) and pauses.
func testInvariant(t *testing.T, e *env) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	b := lua.Bucket{Rate: 200, Per: time.Second, Burst: 20}
	var live []lua.Grant
	for step := range 300 {
		switch r := rng.IntN(10); {
		case r < 5:
			want := 1 + rng.Int64N(25)
			min := 1 + rng.Int64N(want)
			g := e.acquire("k", b, want, min, time.Duration(5+rng.IntN(40))*time.Millisecond)
			if g.Granted != 0 && (g.Granted < min || g.Granted > want) {
				t.Fatalf("step %d: granted %d for want %d, min %d", step, g.Granted, want, min)
			}
			if g.Granted > 0 {
				live = append(live, g)
			}
		case r < 9 && len(live) > 0:
			i := rng.IntN(len(live))
			g := live[i]
			live = append(live[:i], live[i+1:]...)
			if rng.IntN(10) == 0 {
				g.Granted++ // a settle that names the wrong amount must change nothing
			}
			e.settle("k", b, g, rng.Int64N(g.Granted+1))
		default:
			time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		}
		s := e.state("k")
		if s.tk < 0 || s.tk+float64(s.o) > float64(b.Burst)+1e-9 || s.o != s.grantSum {
			t.Fatalf("step %d: tk %v, o %d, grants %d: want tk >= 0, tk + o <= %d, o = grants",
				step, s.tk, s.o, s.grantSum, b.Burst)
		}
	}
}

func testRenew(t *testing.T, e *env) {
	// Renew settles the previous grant before acquiring, in one call: the unused tokens
	// handed back are available to the new grant.
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	first := e.acquire("k", b, 10, 10, time.Minute)
	if first.Granted != 10 {
		t.Fatalf("first grant %d, want 10", first.Granted)
	}
	g, err := e.lim.Renew(t.Context(), e.rule, "k", b, lua.Settlement{ID: first.ID, Granted: 10, Unused: 7}, 10, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if g.Granted != 7 || g.Remaining != 0 {
		t.Fatalf("renew after handing back 7 of 10: granted %d remaining %d, want 7 and 0", g.Granted, g.Remaining)
	}
	if s := e.state("k"); s.o != 7 || s.grantSum != 7 {
		t.Fatalf("after renew: %+v, want only the new grant of 7 outstanding", s)
	}
	if e.settle("k", b, first, 7) {
		t.Fatal("the grant settled by Renew was still outstanding")
	}
}

// testRoomy: a bucket far from empty grants the roomy slice for its longer lifetime; once
// the bucket would drop below half its burst, grants fall back to want and the short ttl.
func testRoomy(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 100}
	roomy := lua.Roomy{Want: 30, TTL: time.Minute}
	renew := func(want int64) lua.Grant {
		t.Helper()
		g, err := e.lim.RenewRoomy(t.Context(), e.rule, "k", b, lua.Settlement{}, want, 1, time.Second, roomy)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := renew(5)
	if g.Granted != 30 || g.TTL != time.Minute || g.Remaining != 70 {
		t.Fatalf("full bucket: %+v, want the roomy 30 tokens for a minute", g)
	}
	if s := e.state("k"); len(s.expiries) != 1 || s.expiries[0] < e.redisNow().Add(59*time.Second).UnixMicro() {
		t.Fatalf("roomy grant recorded as %+v, want it outstanding for its minute", s)
	}
	g = renew(5) // 70 - 30 = 40 < 50: would leave less than half the burst
	if g.Granted != 5 || g.TTL != time.Second || g.Remaining != 65 {
		t.Fatalf("bucket at 70: %+v, want want=5 for the short ttl", g)
	}
	// A roomy ask no larger than want changes nothing.
	g, err := e.lim.RenewRoomy(t.Context(), e.rule, "k", b, lua.Settlement{}, 40, 1, time.Second, lua.Roomy{Want: 40, TTL: time.Hour})
	if err != nil || g.Granted != 40 || g.TTL != time.Second {
		t.Fatalf("roomy not above want: %+v, %v, want 40 tokens for the short ttl", g, err)
	}
}

// testSettleAll settles grants of many keys in one pipeline of settle_many runs (on a
// cluster, one run per hash slot, split across the nodes owning them): each behaves as its own settle.
func testSettleAll(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	var calls []lua.SettleCall
	for i := range 40 {
		key := "k" + strconv.Itoa(i)
		g := e.acquire(key, b, 6, 6, time.Minute)
		calls = append(calls, lua.SettleCall{Rule: e.rule, Key: key, Bucket: b,
			Settlement: lua.Settlement{ID: g.ID, Granted: g.Granted, Unused: int64(i % 7)}})
	}
	calls = append(calls, lua.SettleCall{Rule: e.rule, Key: "k0", Bucket: b, Settlement: lua.Settlement{ID: 1, Granted: 6}})
	found, scripts, err := e.lim.SettleAll(t.Context(), calls)
	if err != nil || found != 40 {
		t.Fatalf("SettleAll of 40 live grants and an unknown one: found %d, %v; want 40", found, err)
	}
	if want := e.scriptRuns(keysOf(e.rule, calls)); scripts != want {
		t.Errorf("SettleAll of 41 settles made %d script runs, want %d", scripts, want)
	}
	for i := range 40 {
		if remaining, _ := e.peek("k"+strconv.Itoa(i), b); remaining != 4+int64(i%7) {
			t.Fatalf("key %d after handing back %d of 6: remaining %d, want %d", i, i%7, remaining, 4+i%7)
		}
	}
}
