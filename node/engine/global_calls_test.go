package engine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// scriptCallsInRedis reads how many times Redis itself ran the token bucket
// script (INFO commandstats), independently of what the engines count.
func scriptCallsInRedis(t testing.TB, rdb redis.UniversalClient) int64 {
	return int64(redisStats(t, rdb).scriptCalls)
}

// TestGlobalHotKeyRedisCallsPerDecision measures how many Redis calls a hot
// key costs in global mode (docs/PERFORMANCE.md): three engines, a limit of
// 200000/s, demand below it, production slice TTL.
func TestGlobalHotKeyRedisCallsPerDecision(t *testing.T) {
	srv := redistest.StartServer(t)
	const doc = `{"rules": [{"name": "hot", "key": ["k"], "limit": {"rate": 200000, "per": "1s"}}]}`
	opts := globalOpts{nodes: 3, sliceTTL: 250 * time.Millisecond, redisTimeout: 200 * time.Millisecond}
	engines := make([]*globalEngine, 3)
	for i := range engines {
		engines[i] = newGlobalEngine(t, dialRedis(t, opts.redisTimeout, srv.Addr()), opts, doc)
	}
	probe := dialRedis(t, time.Second, srv.Addr())
	before := scriptCallsInRedis(t, probe)

	// Two drivers per engine, each at most 20 decisions a millisecond:
	// 120000/s at most, below the limit.
	const run = 3 * time.Second
	req := check.Request{Attributes: attrs("k", "hot"), Cost: 1}
	var decided, allowed, notGlobal atomic.Int64
	stop := time.Now().Add(run)
	var wg sync.WaitGroup
	for _, e := range engines {
		for range 2 {
			wg.Go(func() {
				var d check.Decision
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for time.Now().Before(stop) {
					for range 20 {
						if err := e.DecideInto(context.Background(), &req, &d); err != nil {
							t.Error(err)
							return
						}
						decided.Add(1)
						if d.Allowed {
							allowed.Add(1)
						}
						if d.Mode != check.ModeGlobal {
							notGlobal.Add(1)
						}
					}
					<-tick.C
				}
			})
		}
	}
	wg.Wait()
	for _, e := range engines {
		e.Close(context.Background())
	}
	inRedis := scriptCallsInRedis(t, probe) - before
	var counted int64
	for _, e := range engines {
		counted += e.calls.count()
	}
	ratio := float64(inRedis) / float64(allowed.Load())
	t.Logf("%d decisions in %v (%.0f/s), %d allowed; Redis ran the script %d times (engines counted %d): %.6f calls per allowed decision (1 per %.0f)",
		decided.Load(), run, float64(decided.Load())/run.Seconds(), allowed.Load(), inRedis, counted, ratio, 1/ratio)
	if notGlobal.Load() > 0 || allowed.Load() != decided.Load() {
		t.Fatalf("%d of %d decisions allowed, %d not in global mode; want all allowed in global mode below the limit",
			allowed.Load(), decided.Load(), notGlobal.Load())
	}
	if inRedis != counted {
		t.Errorf("Redis ran the script %d times, the engines' hooks saw %d", inRedis, counted)
	}
	if ratio > 0.01 {
		t.Errorf("%.4f Redis calls per allowed decision, want at most 1/100", ratio)
	}
}

// TestGlobalWarmKeysRedisCallsPerDecision: many keys, each far below its
// limit, get roomy slices that last many decisions, so after a warm-up
// Redis runs the script for at most 1 in 20 decisions. With slices sized by
// demand over one slice TTL only (about 7 tokens here) it ran it for about
// 1 in 6.
func TestGlobalWarmKeysRedisCallsPerDecision(t *testing.T) {
	srv := redistest.StartServer(t)
	const doc = `{"rules": [{"name": "warm", "key": ["k"], "limit": {"rate": 1000, "per": "1s"}}]}`
	e := newGlobalEngine(t, dialRedis(t, time.Second, srv.Addr()),
		globalOpts{nodes: 1, sliceTTL: 250 * time.Millisecond, redisTimeout: time.Second}, doc)
	probe := dialRedis(t, time.Second, srv.Addr())
	const keys, perMs = 200, 4 // each key 20 times a second
	reqs := make([]check.Request, keys)
	for i := range reqs {
		reqs[i] = check.Request{Attributes: attrs("k", "key-"+strconv.Itoa(i)), Cost: 1}
	}
	var d check.Decision
	drive := func(run time.Duration) (decided int64) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		next := 0
		for stop := time.Now().Add(run); time.Now().Before(stop); <-tick.C {
			for range perMs {
				if err := e.DecideInto(context.Background(), &reqs[next%keys], &d); err != nil || !d.Allowed || d.Mode != check.ModeGlobal {
					t.Fatalf("warm key decision %+v, %v; want allowed in global mode", d, err)
				}
				next++
				decided++
			}
		}
		return decided
	}
	drive(2 * time.Second) // every key seen, its demand known, its slice roomy
	before := scriptCallsInRedis(t, probe)
	decided := drive(3 * time.Second)
	calls := scriptCallsInRedis(t, probe) - before
	ratio := float64(calls) / float64(decided)
	t.Logf("%d keys, %d decisions after the warm-up: Redis ran the script %d times, %.4f per decision", keys, decided, calls, ratio)
	if ratio > 0.05 {
		t.Errorf("%.4f Redis script calls per decision on warm keys, want at most 0.05", ratio)
	}
}

// TestGlobalSweepSettlesInFewRoundTrips: when many keys' slices expire with
// tokens left, the sweeper hands them back in pipelines, a round trip per
// settleBatch keys rather than one per key, and every grant is settled.
func TestGlobalSweepSettlesInFewRoundTrips(t *testing.T) {
	srv := redistest.StartServer(t)
	const doc = `{"rules": [{"name": "sweep", "key": ["k"], "limit": {"rate": 1000, "per": "1s"}}]}`
	e := newGlobalEngine(t, dialRedis(t, time.Second, srv.Addr()),
		globalOpts{nodes: 1, sliceTTL: 2 * time.Second, redisTimeout: time.Second, roomyTTL: -1}, doc)
	const keys, workers = 600, 8
	// Eight at a time, so that the slices expire close together (in about
	// one sweep) even when a loaded machine makes each refill slow.
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				// The first slice of a new key is its one token; the second,
				// sized by the demand just seen, keeps tokens left to hand back.
				for range 2 {
					if _, err := e.Decide(context.Background(), check.Request{Attributes: attrs("k", "key-"+strconv.Itoa(i)), Cost: 1}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	open := 0
	for i := range keys {
		if s := e.entry("k", "key-"+strconv.Itoa(i)).Current(); s != nil && s.Left() > 0 {
			open++
		}
	}
	if open < keys/2 {
		t.Fatalf("only %d of %d keys hold tokens to hand back", open, keys)
	}
	settles, trips := e.calls.settles.Load(), e.calls.settleTrips.Load()
	waitFor(t, 20*time.Second, "the sweeper to settle every slice with tokens left", func() bool {
		return e.calls.settles.Load()-settles >= int64(open)
	})
	settled, used := e.calls.settles.Load()-settles, e.calls.settleTrips.Load()-trips
	t.Logf("%d keys with tokens left: %d settles in %d round trips", open, settled, used)
	if most := int64(4 * (open/settleBatch + 1)); used > most {
		t.Errorf("%d settles took %d round trips, want at most %d", settled, used, most)
	}
	// The metric counts a pipeline once its answers are in.
	waitFor(t, 10*time.Second, "sluice_redis_calls_total{kind=settle} to count every settle sent", func() bool {
		return metricValue(t, e.metrics.calls.WithLabelValues("settle")) == float64(e.calls.settles.Load())
	})
	if v, most := metricValue(t, e.metrics.trips), float64(e.calls.acquires.Load()+e.calls.settleTrips.Load()); v > most {
		t.Errorf("sluice_redis_round_trips_total = %v, want at most %v acquires + settle trips", v, most)
	}
}

// TestGlobalRenewsWarmKeysAhead: roomy slices of keys in use are renewed
// before they end, many per pipeline from the sweeper, so requests on warm
// keys do not wait for Redis at a slice's end. Roomy lifetime 2 s here, so
// the 5 s measured span 2.5 of them once the pace is steady.
func TestGlobalRenewsWarmKeysAhead(t *testing.T) {
	srv := redistest.StartServer(t)
	const doc = `{"rules": [{"name": "ahead", "key": ["k"], "limit": {"rate": 10000, "per": "1s"}}]}`
	e := newGlobalEngine(t, dialRedis(t, time.Second, srv.Addr()),
		globalOpts{nodes: 1, sliceTTL: 250 * time.Millisecond, redisTimeout: time.Second, roomyTTL: 2 * time.Second}, doc)
	const keys, perMs = 100, 4 // each key 40 times a second
	reqs := make([]check.Request, keys)
	for i := range reqs {
		reqs[i] = check.Request{Attributes: attrs("k", "key-"+strconv.Itoa(i)), Cost: 1}
	}
	var d check.Decision
	next := 0
	drive := func(run time.Duration) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for stop := time.Now().Add(run); time.Now().Before(stop); <-tick.C {
			for range perMs {
				if err := e.DecideInto(context.Background(), &reqs[next%keys], &d); err != nil || !d.Allowed || d.Mode != check.ModeGlobal {
					t.Fatalf("warm key decision %+v, %v; want allowed in global mode", d, err)
				}
				next++
			}
		}
	}
	// Warm up until the keys' slices are roomy and sized for the steady
	// pace: half a second in which no request had to refill. A slow start
	// (the first refills of 100 keys, a loaded machine) makes the pace
	// measured early low, and a roomy slice sized from it runs out in the
	// measured span; that is one refill for a change in demand, not a
	// failure to renew ahead.
	drive(time.Second)
	for steady := time.Now().Add(15 * time.Second); ; {
		before := e.calls.acquires.Load()
		drive(500 * time.Millisecond)
		if e.calls.acquires.Load() == before {
			break
		}
		if time.Now().After(steady) {
			t.Fatalf("requests still refilled warm keys' slices after 15 s at a steady pace")
		}
	}
	lone, ahead, trips := e.calls.acquires.Load(), e.calls.aheadAcquires.Load(), e.calls.aheadTrips.Load()
	drive(5 * time.Second)
	lone, ahead, trips = e.calls.acquires.Load()-lone, e.calls.aheadAcquires.Load()-ahead, e.calls.aheadTrips.Load()-trips
	t.Logf("%d keys over 5 s: %d renewals ahead in %d pipelines, %d refills by requests", keys, ahead, trips, lone)
	if ahead < keys {
		t.Errorf("%d renewals ahead, want every key's roomy slice renewed at least once (%d)", ahead, keys)
	}
	if trips > ahead/10 {
		t.Errorf("%d renewals ahead took %d round trips, want at least 10 per pipeline", ahead, trips)
	}
	if lone > keys/10 {
		t.Errorf("%d refills waited on by requests, want at most %d: warm keys should be renewed ahead", lone, keys/10)
	}
}

// TestGlobalSlowKeyDoesNotBlockOthers: while one key's refill hangs in
// Redis, other keys' decisions, their own refills included, go on.
func TestGlobalSlowKeyDoesNotBlockOthers(t *testing.T) {
	srv := redistest.StartServer(t)
	e := newGlobalEngine(t, dialRedis(t, 30*time.Second, srv.Addr()), globalOpts{nodes: 1, sliceTTL: 250 * time.Millisecond, redisTimeout: 20 * time.Second}, oneKeyRule)
	slow := &slowKey{bucket: lua.RedisKey("g", "slow"), release: make(chan struct{})}
	e.calls.slow.Store(slow)
	done := make(chan check.Decision)
	go func() { done <- decide(t, e.Engine, 1, "k", "slow") }()
	waitFor(t, 10*time.Second, "the slow key's refill to be held", func() bool { return e.calls.acquires.Load() >= 1 })
	for i := range 50 {
		if d := decide(t, e.Engine, 1, "k", "other-"+strconv.Itoa(i)); !d.Allowed {
			t.Fatalf("key other-%d while the slow key's refill hangs: %+v, want allowed", i, d)
		}
	}
	select {
	case d := <-done:
		t.Fatalf("the slow key was decided (%+v) before its refill was released", d)
	default:
	}
	close(slow.release)
	if d := <-done; !d.Allowed {
		t.Fatalf("slow key after release: %+v, want allowed", d)
	}
}

func TestGlobalSliceHitDoesNotAllocate(t *testing.T) {
	srv := redistest.StartServer(t)
	e := newGlobalEngine(t, dialRedis(t, time.Second, srv.Addr()), globalOpts{nodes: 1, sliceTTL: time.Hour, redisTimeout: time.Second}, sliceHitRule)
	req := check.Request{Attributes: attrs("k", "a"), Cost: 1}
	var d check.Decision
	for range 2 { // the second refill is sized for an hour of demand
		e.DecideInto(context.Background(), &req, &d)
	}
	calls := e.calls.count()
	allocs := testing.AllocsPerRun(1000, func() { e.DecideInto(context.Background(), &req, &d) })
	if e.calls.count() != calls || !d.Allowed {
		t.Fatalf("the measured decisions were not slice hits: %d Redis calls, last %+v", e.calls.count()-calls, d)
	}
	if allocs != 0 {
		t.Fatalf("a slice hit allocates %v times, want 0", allocs)
	}
}

const sliceHitRule = `{"rules": [{"name": "b", "key": ["k"], "limit": {"rate": 1000000000, "per": "1s"}}]}`

// BenchmarkGlobalSliceHit is the global-mode hot path: a decision spent from
// the node's slice, with a real Redis behind it that the loop (nearly)
// never needs.
func BenchmarkGlobalSliceHit(b *testing.B) {
	srv := redistest.StartServer(b)
	e := newGlobalEngine(b, dialRedis(b, time.Second, srv.Addr()), globalOpts{nodes: 1, sliceTTL: time.Hour, redisTimeout: time.Second}, sliceHitRule)
	req := check.Request{Attributes: attrs("k", "a"), Cost: 1}
	var d check.Decision
	for range 2 {
		e.DecideInto(context.Background(), &req, &d)
	}
	calls := e.calls.count()
	b.ReportAllocs()
	for b.Loop() {
		e.DecideInto(context.Background(), &req, &d)
	}
	b.ReportMetric(float64(e.calls.count()-calls), "redis-calls")
}
