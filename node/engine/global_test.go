package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// Unit tests of global mode use long slices and a patient Redis timeout, so
// that a loaded CI box cannot turn them into tests of timing.
var patient = globalOpts{nodes: 1, sliceTTL: 2 * time.Second, redisTimeout: time.Second}

const oneKeyRule = `{"rules": [{"name": "g", "key": ["k"], "limit": {"rate": 1000, "per": "1s", "burst": 1000}}]}`

func TestGlobalSliceHitsMakeNoRedisCall(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	e := newGlobalEngine(t, rdb, patient, oneKeyRule)

	// A new key's first slice is its first request; the second refill is
	// sized by the demand the first showed.
	for range 2 {
		mustGlobal(t, decide(t, e.Engine, 1, "k", "a"))
	}
	if n := e.calls.count(); n != 2 {
		t.Fatalf("%d Redis calls for the first two decisions, want 2", n)
	}
	prev := decide(t, e.Engine, 1, "k", "a")
	for range 100 {
		d := decide(t, e.Engine, 1, "k", "a")
		mustGlobal(t, d)
		if !d.Allowed || d.Remaining != prev.Remaining-1 {
			t.Fatalf("slice hit: %+v after remaining %d, want allowed with one less", d, prev.Remaining)
		}
		prev = d
	}
	if n := e.calls.count(); n != 2 {
		t.Fatalf("%d Redis calls after 101 slice hits, want still 2", n)
	}
	// Remaining is what the slice holds plus what Redis reported it held.
	s := e.entry("k", "a").Current()
	if want := s.Left() + s.GlobalRemaining; prev.Remaining != want {
		t.Fatalf("remaining %d, want slice %d + global %d", prev.Remaining, s.Left(), s.GlobalRemaining)
	}
	if v := metricValue(t, e.metrics.requests.WithLabelValues("acquire", "ok")); v != 2 {
		t.Fatalf("sluice_redis_requests_total{op=acquire,result=ok} = %v, want 2", v)
	}
	if v := metricValue(t, e.metrics.refills); v != 2 {
		t.Fatalf("sluice_slice_refills_total = %v, want 2", v)
	}
	var h dto.Metric
	if err := e.metrics.duration.Write(&h); err != nil || h.GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("sluice_redis_request_duration_seconds: %v samples (%v), want 2", h.GetHistogram().GetSampleCount(), err)
	}
}

// concurrentMisses releases n requests on one key at once while the first
// Redis acquire is held until all the others wait for it, and returns the
// acquires they made (the sweeper's settles of expired slices do not count).
func concurrentMisses(t *testing.T, e *globalEngine, n int, kv ...string) (calls int64, firstLate bool) {
	t.Helper()
	entry := e.entry(kv...)
	hold := func() {
		deadline := time.Now().Add(10 * time.Second)
		for entry.Queued() < int64(n-1) {
			if time.Now().After(deadline) {
				t.Errorf("only %d of %d requests queued behind the refill", entry.Queued(), n-1)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	first := true
	var once sync.Mutex
	var sent atomic.Int64 // when the first call was about to go out
	before := func() {
		once.Lock()
		f := first
		first = false
		once.Unlock()
		if f {
			sent.Store(e.now())
			hold()
		}
	}
	// The hold delays the first answer: on a loaded machine it may come
	// back near or after its slice's deadline, and a late grant is asked
	// for again by design (a 20 ms margin covers the time from the slice's
	// send time to the hook).
	after := func() {
		if at := sent.Swap(0); at != 0 && e.now()-at > int64(e.global.cfg.SliceTTL-20*time.Millisecond) {
			firstLate = true
		}
	}
	e.calls.before.Store(&before)
	e.calls.after.Store(&after)
	defer e.calls.before.Store(nil)
	defer e.calls.after.Store(nil)

	start := e.calls.acquires.Load()
	var wg sync.WaitGroup
	results := make([]check.Decision, n)
	for i := range n {
		wg.Go(func() {
			var err error
			if results[i], err = e.Decide(context.Background(), check.Request{Attributes: attrs(kv...), Cost: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, d := range results {
		mustGlobal(t, d)
		if !d.Allowed {
			t.Fatalf("concurrent miss denied: %+v", d)
		}
	}
	return e.calls.acquires.Load() - start, firstLate
}

func TestGlobalConcurrentMissesShareOneRedisCall(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	// Roomy slices off: the test waits for the warm key's slice to expire.
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: 300 * time.Millisecond, redisTimeout: 10 * time.Second, roomyTTL: -1}, oneKeyRule)
	const n = 16

	// A key seen before: its demand sizes the refill, which covers everyone.
	decide(t, e.Engine, 1, "k", "warm")
	decide(t, e.Engine, 1, "k", "warm")
	s := e.entry("k", "warm").Current()
	waitFor(t, 10*time.Second, "the warm key's slice to expire", func() bool { return e.now() >= s.Deadline })
	if calls, late := concurrentMisses(t, e, n, "k", "warm"); calls != 1 && !(late && calls == 2) {
		t.Fatalf("%d concurrent misses on a known key made %d Redis calls (first answer late: %v), want 1 (2 if late)", n, calls, late)
	}

	// A new key: the first call asks for itself and whoever queued before
	// it went out; the second for everyone still waiting.
	if calls, late := concurrentMisses(t, e, n, "k", "cold"); calls > 2 && !(late && calls == 3) {
		t.Fatalf("%d concurrent misses on a new key made %d Redis calls (first answer late: %v), want at most 2 (3 if late)", n, calls, late)
	}
}

// drainedRule refills one token an hour, so Redis's count moves only when
// slices are granted and settled.
const drainedRule = `{"rules": [{"name": "d", "key": ["k"], "limit": {"rate": 1, "per": "1h", "burst": 100}}]}`

var drainedBucket = lua.Bucket{Rate: 1, Per: time.Hour, Burst: 100}

func TestGlobalExpiredSliceUnusedTokensGoBack(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: 600 * time.Millisecond, redisTimeout: 500 * time.Millisecond}, drainedRule)

	decide(t, e.Engine, 1, "k", "a") // slice of 1
	d := decide(t, e.Engine, 1, "k", "a")
	if !d.Allowed || d.Remaining != 98 {
		t.Fatalf("second decision: %+v, want allowed with 98 remaining (slice of 99)", d)
	}
	if n := peek(t, rdb, "d", "a", drainedBucket); n != 0 {
		t.Fatalf("Redis holds %d tokens with a slice of 99 out, want 0", n)
	}
	waitFor(t, 10*time.Second, "the slice's 98 unused tokens back in Redis", func() bool {
		return peek(t, rdb, "d", "a", drainedBucket) == 98
	})
	// The metric counts the settle once its answer is in, just after Redis applied it.
	waitFor(t, 10*time.Second, "sluice_redis_requests_total{op=settle,result=ok} to count the settle", func() bool {
		return metricValue(t, e.metrics.requests.WithLabelValues("settle", "ok")) >= 1
	})
	if v := metricValue(t, e.metrics.requests.WithLabelValues("settle", "ok")); v != 1 {
		t.Fatalf("sluice_redis_requests_total{op=settle,result=ok} = %v, want 1", v)
	}
}

func TestGlobalCloseSettlesSlices(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: time.Minute, redisTimeout: time.Second}, drainedRule)
	decide(t, e.Engine, 1, "k", "a")
	decide(t, e.Engine, 1, "k", "a")
	decide(t, e.Engine, 1, "k", "a") // 97 left in the slice
	e.Close(context.Background())
	if n := peek(t, rdb, "d", "a", drainedBucket); n != 97 {
		t.Fatalf("after Close Redis holds %d tokens, want the slice's 97 back", n)
	}
}

func TestGlobalDryBucketPausesLocally(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	const slow = `{"rules": [{"name": "s", "key": ["k"], "limit": {"rate": 1, "per": "1s", "burst": 2}}]}`
	ttl := time.Second
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: ttl, redisTimeout: 500 * time.Millisecond}, slow)

	for i := range 2 {
		if d := decide(t, e.Engine, 1, "k", "a"); !d.Allowed {
			t.Fatalf("decision %d: %+v, want allowed from the burst", i, d)
		}
	}
	// The bucket is dry: the node settles the grant the second request spent
	// whole (so Redis stops counting it as outstanding), then waits for
	// tokens to build up (here capped at the slice TTL) instead of asking
	// Redis for every one.
	waitFor(t, 5*time.Second, "the spent grant settled", func() bool {
		return metricValue(t, e.metrics.requests.WithLabelValues("settle", "ok")) == 1
	})
	calls := e.calls.count()
	pausedUntil := time.Now().Add(ttl)
	var asked int
	for time.Now().Before(pausedUntil.Add(-400 * time.Millisecond)) {
		d := decide(t, e.Engine, 1, "k", "a")
		mustGlobal(t, d)
		if d.Allowed || d.RetryAfterMs <= 0 || d.RetryAfterMs > ttl.Milliseconds() {
			t.Fatalf("inside the pause: %+v, want denied with 0 < retry ≤ %v", d, ttl)
		}
		asked++
		time.Sleep(time.Millisecond)
	}
	if n := e.calls.count() - calls; n != 0 {
		t.Fatalf("%d denials inside the pause made %d Redis calls, want 0", asked, n)
	}
	// Afterwards the node asks again and gets the tokens that accrued.
	var polled int
	waitFor(t, 10*time.Second, "a token after the pause", func() bool {
		polled++
		return decide(t, e.Engine, 1, "k", "a").Allowed
	})
	if n := e.calls.count() - calls; n > 3 {
		t.Fatalf("%d decisions until a token came back made %d Redis calls, want at most 3", polled, n)
	}
}

func TestGlobalCostAboveBurstDeniedWithoutRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	e := newGlobalEngine(t, rdb, patient, oneKeyRule)
	d := decide(t, e.Engine, 1001, "k", "a")
	mustGlobal(t, d)
	if d.Allowed || d.Reason == "" {
		t.Fatalf("cost above burst: %+v, want denied with a reason", d)
	}
	if n := e.calls.count(); n != 0 {
		t.Fatalf("cost above burst made %d Redis calls, want 0", n)
	}
}

// An answer that arrives after the slice's deadline (a stalled node or a
// misconfigured timeout) is not spent: Redis may write the grant off soon,
// so spending it could break the promise (Redis keeps it for another ttl).
// The request asks once more: the node was slow, not the client, so one late
// answer costs a second call, two cost a denial with a retry. Either way
// every late grant goes back to Redis.
func TestGlobalLateGrants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		late    int32 // answers held past the slice's deadline
		allowed bool
	}{
		{"late once", 1, true},
		{"late twice", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartServer(t)
			rdb := dialRedis(t, time.Second, srv.Addr())
			ttl := 300 * time.Millisecond
			e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: ttl, redisTimeout: 5 * time.Second}, drainedRule)
			var answers atomic.Int32
			hold := func() {
				if answers.Add(1) <= tc.late {
					time.Sleep(ttl + 50*time.Millisecond)
				}
			}
			e.calls.after.Store(&hold)
			d := decide(t, e.Engine, 1, "k", "a")
			e.calls.after.Store(nil)
			if d.Allowed != tc.allowed || answers.Load() != 2 || (!d.Allowed && d.RetryAfterMs <= 0) {
				t.Fatalf("decision after %d late answers: %+v after %d answers, want allowed=%v after 2 (a denial with a retry)",
					tc.late, d, answers.Load(), tc.allowed)
			}
			e.Close(context.Background())
			spent := int64(0)
			if tc.allowed {
				spent = 1
			}
			if n := peek(t, rdb, "d", "a", drainedBucket); n != 100-spent {
				t.Fatalf("Redis holds %d tokens after the late grants were handed back, want %d", n, 100-spent)
			}
		})
	}
}

func TestGlobalFallbackWhileRedisStopped(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: 250 * time.Millisecond, redisTimeout: 200 * time.Millisecond}, oneKeyRule)
	mustGlobal(t, decide(t, e.Engine, 1, "k", "a"))

	srv.Stop()
	// Every decision is still answered, from the fallback bucket. It starts
	// empty (docs/DESIGN.md, Safety), so a denial says when to come back.
	for i := range 50 {
		d := decide(t, e.Engine, 1, "k", "b")
		if d.Mode != check.ModeFallback || (!d.Allowed && d.RetryAfterMs <= 0) {
			t.Fatalf("decision %d with Redis stopped: %+v, want answered in fallback mode", i, d)
		}
	}
	waitFor(t, time.Second, "a token refilled in the fallback bucket", func() bool {
		d := decide(t, e.Engine, 1, "k", "b")
		return d.Allowed && d.Mode == check.ModeFallback
	})
	if v := metricValue(t, e.metrics.fallback); v != 1 {
		t.Fatalf("sluice_fallback_active = %v with Redis stopped, want 1", v)
	}
	if v := metricValue(t, e.metrics.requests.WithLabelValues("acquire", "error")); v != 1 {
		t.Fatalf("failed acquires %v, want 1: the breaker stops the others", v)
	}

	srv.Start()
	restarted := time.Now()
	waitFor(t, 10*time.Second, "global mode after Redis restarted", func() bool {
		return decide(t, e.Engine, 1, "k", "c").Mode == check.ModeGlobal
	})
	if took := time.Since(restarted); took > 2*time.Second {
		t.Fatalf("back to global mode %v after Redis restarted, want within 2s", took)
	}
	if v := metricValue(t, e.metrics.fallback); v != 0 {
		t.Fatalf("sluice_fallback_active = %v after recovery, want 0", v)
	}
	// The restarted Redis lost the script; EVALSHA's NOSCRIPT reloads it.
	d := decide(t, e.Engine, 1, "k", "d")
	mustGlobal(t, d)
	if !d.Allowed {
		t.Fatalf("after recovery: %+v, want allowed", d)
	}
}

// A denial in global mode reports the bucket's real wait as Redis last
// said it, never the node's own pause before it asks Redis again: for a
// bucket of one per minute, about a minute, from the first denial on.
func TestGlobalDenialReportsTheBucketsWait(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, time.Second, srv.Addr())
	const perMinute = `{"rules": [{"name": "m", "key": ["k"], "limit": {"rate": 1, "per": "1m", "burst": 1}}]}`
	ttl := 250 * time.Millisecond
	e := newGlobalEngine(t, rdb, globalOpts{nodes: 1, sliceTTL: ttl, redisTimeout: time.Second, roomyTTL: -1}, perMinute)
	if d := decide(t, e.Engine, 1, "k", "a"); !d.Allowed {
		t.Fatalf("first decision: %+v, want allowed from the burst", d)
	}
	realWait := func(what string, d check.Decision) {
		t.Helper()
		mustGlobal(t, d)
		if d.Allowed || d.RetryAfterMs < 55_000 || d.RetryAfterMs > 60_000 {
			t.Fatalf("%s: %+v, want denied with retry_after_ms about 60000 (one token per minute)", what, d)
		}
	}
	realWait("first denial, inside the node's pause", decide(t, e.Engine, 1, "k", "a"))
	calls := e.calls.count()
	waitFor(t, 5*time.Second, "the node asking Redis again after its pause", func() bool {
		d := decide(t, e.Engine, 1, "k", "a")
		realWait("denial", d)
		return e.calls.count() > calls
	})
	realWait("denial after Redis answered again", decide(t, e.Engine, 1, "k", "a"))
}
