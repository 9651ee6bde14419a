package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// accuracyCase is one load: keys under one rule, each driven above its
// limit by every engine.
type accuracyCase struct {
	name        string
	keys        int
	rate, burst int64
	per         time.Duration
	drivers     int // goroutines per engine
	// pace, if set, is how long one driver takes to go once over all keys,
	// visiting them evenly spread; without it a driver asks as fast as it
	// can, pausing at most a millisecond after a denial.
	pace time.Duration
	// keyless: the rule has no key, so the keys are just distinct callers
	// sharing its one bucket.
	keyless bool
}

var (
	hotKey = accuracyCase{name: "hot key", keys: 1, rate: 1000, burst: 100, per: time.Second, drivers: 3}
	// Six drivers each visiting every key once in 4 s ask each key 1.5/s,
	// three times its limit. More would mostly measure how many Redis calls
	// a loaded 2-core box can make: at low rates a slice is one token, and
	// an admit costs about three calls (grant, settle, dry probes). The
	// burst of 3 lets tokens wait between visits; with a burst of 1 the
	// bucket sits full between visits this sparse (any limiter loses ~20%
	// of it then; measured 60–75%).
	// A burst large enough for roomy slices: each engine's first refills
	// may hold a sixth of it for a long slice lifetime, and near the limit
	// slices must shrink back so the engines still share it fully.
	hotKeyLargeBurst = accuracyCase{name: "hot key, large burst", keys: 1, rate: 1000, burst: 2000, per: time.Second, drivers: 3}
	// Fifty callers on a key-less rule: one hot bucket, like hotKey, whose
	// demand comes from requests that all differ.
	keylessShared = accuracyCase{name: "key-less rule, 50 callers", keys: 50, rate: 1000, burst: 100, per: time.Second, drivers: 3, keyless: true}
	manyKeys      = accuracyCase{name: "1000 keys", keys: 1000, rate: 1, burst: 3, per: 2 * time.Second, drivers: 2, pace: 4 * time.Second}
)

const (
	accuracyEngines = 3
	// Demand runs for accuracyRun; utilisation is measured over its last
	// 5 s, once the initial burst is spent (SPEC §4: Δ ≥ 5 s).
	accuracyRun    = 7 * time.Second
	accuracyWarmUp = 2 * time.Second
	// envelopeEps is the slack of the safety check: the harness clock
	// (monotonic) and Redis TIME (wall clock) may tick at slightly different
	// rates, and a token of slack covers that for runs of seconds. Nothing
	// else: while Redis is healthy the promise is exact (SPEC §8).
	envelopeEps    = 1.0
	minUtilisation = 0.95
)

// accuracyOpts are patient timings (production: 250 ms slices, 50 ms
// timeout): a 2-core box shared with other test runs (load average 13 seen
// while writing this) stalled cluster calls past 200 ms, and a timeout
// switches to fallback mode, where ε is not 0 and the promise under test
// does not hold.
var accuracyOpts = globalOpts{nodes: accuracyEngines, sliceTTL: 400 * time.Millisecond, redisTimeout: 350 * time.Millisecond}

// TestGlobalAccuracy runs the standalone and cluster cases one after the
// other: in parallel, the 1000-key cases' Redis calls overload a 2-core box.
func TestGlobalAccuracy(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := redistest.StartServer(t)
		for _, c := range []accuracyCase{hotKey, hotKeyLargeBurst, keylessShared, manyKeys} {
			t.Run(c.name, func(t *testing.T) { testAccuracy(t, c, srv.Addr()) })
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cluster := redistest.StartCluster(t)
		for _, c := range []accuracyCase{hotKey, hotKeyLargeBurst, keylessShared, manyKeys} {
			t.Run(c.name, func(t *testing.T) { testAccuracy(t, c, cluster.Addrs()...) })
		}
	})
}

// testAccuracy drives three engines, each with its own Redis client, on the
// case's keys for accuracyRun and checks every key's admits against
// burst + rate·Δ and the utilisation against minUtilisation.
func testAccuracy(t *testing.T, c accuracyCase, addrs ...string) {
	rule, key, buckets := fmt.Sprintf("acc%d", c.keys), `["k"]`, c.keys
	if c.keyless {
		rule, key, buckets = "acc-shared", `[]`, 1
	}
	doc := fmt.Sprintf(`{"rules": [{"name": %q, "key": %s, "limit": {"rate": %d, "per": %q, "burst": %d}}]}`, rule, key, c.rate, c.per, c.burst)
	perSec := float64(c.rate) / c.per.Seconds()
	engines := make([]*globalEngine, accuracyEngines)
	for i := range engines {
		engines[i] = newGlobalEngine(t, dialRedis(t, accuracyOpts.redisTimeout, addrs...), accuracyOpts, doc)
	}
	keys := make([]string, c.keys)
	reqs := make([]check.Request, c.keys)
	bucketOf := make([]string, c.keys) // the bucket each key's admits count against
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%04d", i)
		reqs[i] = check.Request{Attributes: attrs("k", keys[i]), Cost: 1}
		if bucketOf[i] = keys[i]; c.keyless {
			bucketOf[i] = "shared"
		}
	}

	rec := accuracy.NewRecorder()
	var decisions, notGlobal atomic.Int64
	start := rec.Now()
	end := start + accuracyRun
	var wg sync.WaitGroup
	for n, e := range engines {
		for w := range c.drivers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(n), uint64(w)))
				order := rng.Perm(c.keys)
				step := c.pace / time.Duration(c.keys)
				for rec.Now() < end {
					cycle := rec.Now()
					for i, k := range order {
						if wait := cycle + time.Duration(i)*step - rec.Now(); wait > 0 {
							time.Sleep(wait)
						}
						sent := rec.Now()
						d, err := e.Decide(context.Background(), reqs[k])
						done := rec.Now()
						if err != nil {
							t.Error(err)
							return
						}
						decisions.Add(1)
						if d.Mode != check.ModeGlobal {
							notGlobal.Add(1)
						}
						if d.Allowed {
							rec.Record(bucketOf[k], 1, sent, done)
						} else if buckets == 1 {
							// Stay hungry without spinning on the denial.
							time.Sleep(min(time.Duration(d.RetryAfterMs)*time.Millisecond, time.Millisecond))
						}
					}
				}
			})
		}
	}
	wg.Wait()

	if n := notGlobal.Load(); n > 0 {
		t.Fatalf("%d of %d decisions were not in global mode (Redis timed out?): the ε = 0 promise does not apply", n, decisions.Load())
	}
	all := rec.Admits()
	var violations int
	for k, admits := range rec.ByKey() {
		if err := accuracy.CheckEnvelope(admits, c.burst, perSec, envelopeEps); err != nil {
			if violations++; violations <= 5 {
				t.Errorf("key %s: %v", k, err)
			}
		}
	}
	if violations > 0 {
		t.Errorf("%d of %d buckets admitted more than burst + rate·Δ + %v", violations, buckets, envelopeEps)
	}
	var calls int64
	for _, e := range engines {
		calls += e.calls.count()
	}
	// Every bucket's limit applies separately, so the whole run's
	// utilisation is against the sum of their rates.
	from := start + accuracyWarmUp
	util := accuracy.Utilisation(all, perSec*float64(buckets), from, end)
	t.Logf("%d decisions, %d admitted; utilisation over [%v, %v] %.2f%%; %d Redis calls (%.3f per admit)",
		decisions.Load(), len(all), from.Round(time.Millisecond), end.Round(time.Millisecond), 100*util, calls, float64(calls)/float64(len(all)))
	if util < minUtilisation {
		t.Errorf("utilisation %.2f%%, want at least %.0f%%", 100*util, 100*minUtilisation)
	}
}
