package systest_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// redisOutage is how long Redis stays down (issue 5: "Redis stopped for 10 s").
const redisOutage = 10 * time.Second

// recoverWithin is how soon after Redis returns every node must be back in
// global mode (issue 5).
const recoverWithin = 2 * time.Second

// TestRedisStoppedUnderLoad stops the cluster's Redis for 10 s while three
// nodes take far more traffic than the limit, then starts it again (empty,
// as after a crash without persistence).
func TestRedisStoppedUnderLoad(t *testing.T) {
	redisStoppedUnderLoad(t, faultRules, tenantBucket)
}

// redisStoppedUnderLoad runs the Redis outage of TestRedisStoppedUnderLoad
// against b, a bucket of rules limited to faultRate with faultBurst, and
// checks every window against the fallback ε.
func redisStoppedUnderLoad(t *testing.T, rules string, b bucket) {
	redis := redistest.StartServer(t)
	opts := systest.Options{Rules: rules, Redis: redis.Addr(), RedisMode: "single"}
	c := systest.StartCluster(t, opts, opts, opts)
	load, rec := startSteadyLoad(t, c, b)

	stoppedAt := rec.Now()
	redis.Stop()
	hold(redisOutage)
	redis.Start()
	startedAt := rec.Now()
	waitMode(t, load, rec, c.Nodes, "global", startedAt, 10*time.Second)
	hold(3 * time.Second)
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	t.Logf("outcomes: %s", counts(outcomes))
	requireAnswers(t, outcomes, c.Nodes...)
	for _, p := range c.Nodes {
		first, _, ok := modeSpan(outcomes, p.ID, "fallback", stoppedAt, startedAt)
		if !ok {
			t.Fatalf("%s never answered in fallback mode while Redis was down", p.ID)
		}
		_, last, _ := modeSpan(outcomes, p.ID, "fallback", stoppedAt, rec.Now())
		t.Logf("%s: fallback %v after Redis stopped; last request answered in fallback sent %v after it started",
			p.ID, (first - stoppedAt).Round(time.Millisecond), (last - startedAt).Round(time.Millisecond))
		if back := last - startedAt; back > recoverWithin {
			t.Errorf("%s answered in fallback mode %v after Redis returned, want global within %v", p.ID, back, recoverWithin)
		}
	}
	outage := between(admits, stoppedAt, startedAt)
	d := startedAt - stoppedAt
	outageExcess, runExcess := excess(outage), excess(admits)
	t.Logf("outage %v: admitted %d, rate·Δ %.0f, utilisation %.3f, envelope excess %.1f; whole run %v: admitted %d, burst+rate·Δ %.0f, excess %.1f",
		d.Round(time.Millisecond), len(outage), faultRate*d.Seconds(), accuracy.Utilisation(outage, faultRate, stoppedAt, startedAt), outageExcess,
		rec.Now().Round(time.Millisecond), len(admits), faultBurst+faultRate*rec.Now().Seconds(), runExcess)
	// Windows inside the outage lie inside one fallback episode: ε ≤ M.
	// Over the run, the episode's end adds b + M + r·P, and Redis restarted
	// empty adds at most the slices outstanding when it died, ≤ b.
	if outageExcess > faultEpsInEpisode {
		t.Errorf("outage windows exceed burst + rate·Δ by %.1f, want at most %d", outageExcess, faultEpsInEpisode)
	}
	if bound := faultEpsEpisode + faultBurst; runExcess > bound {
		t.Errorf("run windows exceed burst + rate·Δ by %.1f, want at most %.0f (episode end + Redis restart)", runExcess, bound)
	}
}
