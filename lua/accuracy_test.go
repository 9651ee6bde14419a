package lua_test

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lua"
)

// testAccuracy drives one bucket from several goroutines taking slices of 5 to 10 tokens,
// using most of each and handing the rest back, as nodes under heavy demand do. What they use must
// stay within burst + rate·Δ by Redis time (SPEC §4 safety, ε = 0) and reach 95% of it.
func testAccuracy(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1000, Per: time.Second, Burst: 100}
	const workers, run = 4, 3 * time.Second
	var used, calls atomic.Int64
	start := e.redisNow()
	stop := time.Now().Add(run)
	group, ctx := errgroup.WithContext(t.Context())
	for w := range workers {
		group.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for time.Now().Before(stop) {
				g, err := e.lim.Acquire(ctx, e.rule, "k", b, 10, 5, time.Second)
				calls.Add(1)
				if err != nil {
					return err
				}
				if g.Granted == 0 {
					time.Sleep(g.RetryAfter) // wait for refill
					continue
				}
				n := g.Granted - rng.Int64N(3)
				found, err := e.lim.Settle(ctx, e.rule, "k", b, g.ID, g.Granted, g.Granted-n)
				if err != nil {
					return err
				}
				if !found { // expired: all of it counts as used
					n = g.Granted
				}
				used.Add(n)
			}
			return nil
		})
	}
	if err := group.Wait(); err != nil {
		t.Fatal(err)
	}
	elapsed := e.redisNow().Sub(start)
	limit := b.Burst + tokensIn(b, elapsed)
	t.Logf("used %d of %d allowed in %v (%.1f%%), %d calls", used.Load(), limit, elapsed,
		100*float64(used.Load())/float64(limit), calls.Load())
	if used.Load() > limit {
		t.Errorf("used %d tokens in %v, more than burst + rate·Δ = %d", used.Load(), elapsed, limit)
	}
	if float64(used.Load()) < 0.95*float64(limit) {
		t.Errorf("used %d tokens in %v, less than 95%% of the %d allowed", used.Load(), elapsed, limit)
	}
}
