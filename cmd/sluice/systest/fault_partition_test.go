package systest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/transport/faultproxy"
)

// partitionFor is how long each partition of TestPartitionsUnderLoad lasts.
const partitionFor = 5 * time.Second

// TestPartitionsUnderLoad cuts one node of three off from Redis only, from
// the raft majority only, then from both, under load. Each node talks to
// Redis and receives raft traffic through its own proxy.
func TestPartitionsUnderLoad(t *testing.T) {
	redis := redistest.StartServer(t)
	var redisLinks []*faultproxy.Proxy
	var opts []systest.Options
	for range 3 {
		link := faultproxy.Start(t, redis.Addr())
		redisLinks = append(redisLinks, link)
		opts = append(opts, systest.Options{Rules: faultRules, Redis: link.Addr(), RedisMode: "single", RaftProxy: true})
	}
	c := systest.StartCluster(t, opts...)
	leader := c.Leader()
	// Cut a follower: a cut leader keeps leading (its outbound raft traffic
	// goes through the followers' proxies), which is not the fault wanted.
	cutIdx := 0
	for i, p := range c.Nodes {
		if p != leader {
			cutIdx = i
		}
	}
	cut, redisLink := c.Nodes[cutIdx], redisLinks[cutIdx]
	load, rec := startSteadyLoad(t, c, tenantBucket)

	type phase struct {
		name     string
		from, to time.Duration
		share    float64 // the cut node's largest lease share around the cut
	}
	var phases []phase
	// cutShare is the cut node's lease share as the leader sees it.
	cutShare := func() float64 {
		t.Helper()
		leases, err := ruleLeases(systest.WaitLeader(t, c.Others(cut)...), "tenant")
		if err != nil {
			t.Fatal(err)
		}
		return leases[cut.ID].Share
	}
	run := func(name string, fail, restore func(), check func(from time.Duration)) {
		t.Helper()
		share := cutShare()
		from := rec.Now()
		fail()
		check(from)
		hold(partitionFor - (rec.Now() - from))
		share = max(share, cutShare())
		restore()
		to := rec.Now()
		phases = append(phases, phase{name, from, to, share})
		waitMode(t, load, rec, c.Nodes, "global", to, 10*time.Second)
		systest.WaitLeader(t, c.Nodes...)
		hold(time.Second)
	}
	// withheld waits for another node to withhold the cut node's share
	// (what it admits in fallback comes off their Redis rate) and logs
	// how long that took.
	withheld := func(name string, from time.Duration) {
		t.Helper()
		other := c.Others(cut)[0]
		waitFor(t, 10*time.Second, other.ID+" withholding "+cut.ID+"'s share", func() error {
			leases, err := ruleLeases(other, "tenant")
			if err == nil && !leases[cut.ID].Withheld {
				err = fmt.Errorf("GET /v1/leases on %s: %+v", other.ID, leases)
			}
			return err
		})
		t.Logf("cut from %s: %s withholds %s's share %v after the cut", name, other.ID, cut.ID, (rec.Now() - from).Round(time.Millisecond))
	}
	noLeader := func() {
		waitFor(t, 15*time.Second, cut.ID+" losing its leader", func() error {
			status, body, err := systest.Get(cut.URL() + "/readyz")
			if err == nil && status != http.StatusServiceUnavailable {
				return &unexpected{status, body}
			}
			return err
		})
	}
	run("redis", redisLink.Blackhole, redisLink.Restore, func(from time.Duration) {
		waitMode(t, load, rec, []*systest.Proc{cut}, "fallback", from, 5*time.Second)
		withheld("redis", from)
	})
	run("raft", cut.RaftProxy.Blackhole, cut.RaftProxy.Restore, func(from time.Duration) {
		noLeader()
		withheld("raft", from)
	})
	run("both", func() { redisLink.Blackhole(); cut.RaftProxy.Blackhole() },
		func() { redisLink.Restore(); cut.RaftProxy.Restore() },
		func(from time.Duration) {
			waitMode(t, load, rec, []*systest.Proc{cut}, "fallback", from, 5*time.Second)
			withheld("both", from)
			noLeader()
		})
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	t.Logf("outcomes: %s", counts(outcomes))
	requireAnswers(t, outcomes, c.Nodes...)
	for i, ph := range phases {
		in := between(admits, ph.from, ph.to)
		d := ph.to - ph.from
		next := rec.Now()
		if i+1 < len(phases) {
			next = phases[i+1].from
		}
		got := excess(in)
		t.Logf("%s (lease share %.3f) cut from %s for %v: admitted %d, rate·Δ %.0f, excess %.1f",
			cut.ID, ph.share, ph.name, d.Round(time.Millisecond), len(in), faultRate*d.Seconds(), got)
		if first, _, ok := modeSpan(outcomes, cut.ID, "fallback", ph.from, ph.to); ok && ph.name != "raft" {
			_, last, _ := modeSpan(outcomes, cut.ID, "fallback", ph.from, next)
			t.Logf("  %s in fallback %v after the cut; last request answered in fallback sent %v after the link returned",
				cut.ID, (first - ph.from).Round(time.Millisecond), (last - ph.to).Round(time.Millisecond))
			if back := last - ph.to; back > recoverWithin {
				t.Errorf("%s still in fallback %v after its Redis link returned, want at most %v", cut.ID, back, recoverWithin)
			}
		}
		bound := partitionExcessBound(ph.name, ph.share)
		if ph.name == "raft" && !inFallback(outcomes, c.Nodes, ph.from, ph.to) {
			// Redis stayed healthy for every node and none took a slow
			// round trip for an outage: the promise is ε = 0.
			bound = faultEpsJitter
		}
		if got > bound {
			t.Errorf("cut from %s: excess %.1f over burst + rate·Δ, want at most %.1f", ph.name, got, bound)
		}
	}
	t.Logf("whole run %v: admitted %d, burst+rate·Δ %.0f, excess %.1f",
		rec.Now().Round(time.Millisecond), len(admits), faultBurst+faultRate*rec.Now().Seconds(), excess(admits))
}

// Allowances for how long the cut node admits in fallback before the others
// withhold its share (docs/DESIGN.md, Safety §3). Cut from Redis, it tells
// the leader at once: its report, a raft commit and the others' apply, tens
// of milliseconds, allowed half a second on a loaded machine running -race.
// Cut from both, its report still gets through while it knows the leader,
// and otherwise the leader withholds it once its reports are stale: three
// report periods (500 ms each with the default --lease-ttl), one more to
// notice, then the commit.
const (
	withholdAfterReport = 500 * time.Millisecond
	withholdWhenSilent  = 2500 * time.Millisecond
)

// inFallback reports whether any of nodes answered in fallback mode to a
// request sent between from and to.
func inFallback(outcomes []systest.Outcome, nodes []*systest.Proc, from, to time.Duration) bool {
	for _, p := range nodes {
		if _, _, ok := modeSpan(outcomes, p.ID, "fallback", from, to); ok {
			return true
		}
	}
	return false
}

// partitionExcessBound is the over-admission each partition may cause; no
// bound depends on how long the cut lasts. Cut from raft alone, the node
// still spends Redis slices: ε is 0 (faultEpsJitter, asserted by the
// caller) unless a loaded machine's slow round trip switched a node into
// fallback, an episode with its ε. Cut from Redis (or from both), the node decides in
// fallback from its lease share while the others keep drawing from Redis
// at rate·(1 − share) once they withhold it: its fallback bucket
// (burst·share) plus rate·share for as long as the withholding takes.
func partitionExcessBound(name string, share float64) float64 {
	switch name {
	case "raft":
		return faultEpsEpisode
	case "redis":
		return share*(faultBurst+faultRate*withholdAfterReport.Seconds()) + faultEpsEpisode
	default:
		return share*(faultBurst+faultRate*withholdWhenSilent.Seconds()) + faultEpsEpisode
	}
}
