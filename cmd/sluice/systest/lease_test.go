package systest_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// Lease mode: three real processes without Redis hold one cluster-wide
// limit, each deciding at its leased share (docs/DESIGN.md, Safety §7).
// Every test checks every window of the whole run against
// burst + rate·Δ + leaseEps and the utilisation goals of the issue.
const (
	leaseRate  = 100
	leaseBurst = 10
	// leaseEps is the documented ε of lease mode for these tests: the
	// rounding of every node's burst up to a whole token (M), and one
	// burst's worth of share moving into buckets that were not empty (b).
	leaseEps = faultNodes + leaseBurst
	// leaseTTL is short so that shares follow demand in tests; the floor
	// of --max-clock-skew is then TTL/4.
	leaseTTL = time.Second
	// workerRate is what one load worker sends per second.
	workerEvery = 40 * time.Millisecond
	workerRate  = float64(time.Second / workerEvery)
)

var leaseRules = tenantRules(leaseRate, leaseBurst)

func leaseOptions() systest.Options { return leaseOptionsFor(leaseRules) }

// leaseOptionsFor are leaseOptions with another rules document.
func leaseOptionsFor(rules string) systest.Options {
	return systest.Options{Rules: rules, Args: []string{"--lease-ttl=" + leaseTTL.String(), "--max-clock-skew=200ms"}}
}

// workers lists each node of nodes per[i] times: the targets of one paced
// load worker each.
func workers(nodes []*systest.Proc, per ...int) []*systest.Proc {
	var out []*systest.Proc
	for i, p := range nodes {
		for range per[i] {
			out = append(out, p)
		}
	}
	return out
}

// startPacedLoad drives b with one paced worker per target.
func startPacedLoad(t *testing.T, rec *accuracy.Recorder, targets []*systest.Proc, b bucket) *systest.Load {
	t.Helper()
	return systest.StartLoad(t, systest.LoadConfig{Nodes: targets, Workers: len(targets), Every: workerEvery,
		Bodies: b.bodies, Key: b.key, Recorder: rec})
}

// checkLease fails the test if any window of admits exceeds the envelope by
// more than leaseEps, or if admits within [from, to] use less than goal of
// rate·Δ; it logs both figures (docs/PERFORMANCE.md quotes them).
func checkLease(t *testing.T, what string, admits []accuracy.Admit, outcomes []systest.Outcome, from, to time.Duration, goal float64) {
	t.Helper()
	got := excessOver(admits, leaseBurst, leaseRate)
	u := accuracy.Utilisation(admits, leaseRate, from, to)
	t.Logf("%s: utilisation %.3f over %v (goal %.2f); worst window exceeds burst + rate·Δ by %.1f (ε %d); outcomes %s",
		what, u, (to - from).Round(time.Millisecond), goal, got, leaseEps, counts(outcomes))
	if err := accuracy.CheckEnvelope(admits, leaseBurst, leaseRate, leaseEps); err != nil {
		t.Errorf("%s: %v; admits per second:%s", what, err, timeline(outcomes))
	}
	if u < goal {
		t.Errorf("%s: utilisation %.3f, want >= %.2f; admits per second:%s", what, u, goal, timeline(outcomes))
	}
}

// TestLeaseModeEvenLoad: every node sees 75 checks/s of a 100/s limit.
// Without leases each node would admit its whole 75/s (2.25× the limit).
func TestLeaseModeEvenLoad(t *testing.T) {
	steadyLeaseLoad(t, "even load", leaseRules, tenantBucket, []int{3, 3, 3}, 0.9)
}

// TestLeaseModeSkewedLoad: 78/11/11 of 225 checks/s; the busy node's share
// follows its demand.
func TestLeaseModeSkewedLoad(t *testing.T) {
	steadyLeaseLoad(t, "80/10/10 skew", leaseRules, tenantBucket, []int{7, 1, 1}, 0.85)
}

// steadyLeaseLoad drives b of rules on three nodes in lease mode with
// per-node worker counts for 10 s and checks the envelope and the
// utilisation goal, from 2 s after every node decides in lease mode.
func steadyLeaseLoad(t *testing.T, what, rules string, b bucket, perNode []int, goal float64) {
	o := leaseOptionsFor(rules)
	c := systest.StartCluster(t, o, o, o)
	rec := accuracy.NewRecorder()
	load := startPacedLoad(t, rec, workers(c.Nodes, perNode...), b)
	waitMode(t, load, rec, c.Nodes, "lease", 0, 10*time.Second)
	from := rec.Now() + 2*time.Second
	hold(10 * time.Second)
	to := rec.Now()
	load.Stop()
	requireAnswers(t, load.Outcomes(), c.Nodes...)
	checkLease(t, what, rec.Admits(), load.Outcomes(), from, to, goal)
}

// TestLeaseModeMovingHotSpot: every node sees 25 checks/s, and a hot spot
// of 150/s moves to the next node every 3 s.
func TestLeaseModeMovingHotSpot(t *testing.T) {
	const dwell = 3 * time.Second
	c := systest.StartCluster(t, leaseOptions(), leaseOptions(), leaseOptions())
	rec := accuracy.NewRecorder()
	base := startPacedLoad(t, rec, c.Nodes, tenantBucket)
	waitMode(t, base, rec, c.Nodes, "lease", 0, 10*time.Second)
	// Measured from the first move on: the moves are what is measured,
	// not how the cluster first settles.
	var from time.Duration
	var outcomes []systest.Outcome
	for i := range 7 {
		if i == 1 {
			from = rec.Now()
		}
		hot := startPacedLoad(t, rec, workers(c.Nodes[i%3:i%3+1], 6), tenantBucket)
		hold(dwell)
		hot.Stop()
		outcomes = append(outcomes, hot.Outcomes()...)
	}
	to := rec.Now()
	base.Stop()
	outcomes = append(outcomes, base.Outcomes()...)
	requireAnswers(t, outcomes, c.Nodes...)
	checkLease(t, "hot spot moving every 3 s", rec.Admits(), outcomes, from, to, 0.8)
}

// TestLeaseModeNodeKilled: under even load one node dies (kill -9). Its
// extra share stays reserved until its lease expires, then the survivors
// take it; only its floor is lost while it remains a member.
func TestLeaseModeNodeKilled(t *testing.T) {
	c := systest.StartCluster(t, leaseOptions(), leaseOptions(), leaseOptions())
	rec := accuracy.NewRecorder()
	load := startPacedLoad(t, rec, workers(c.Nodes, 3, 3, 3), tenantBucket)
	waitMode(t, load, rec, c.Nodes, "lease", 0, 10*time.Second)
	hold(2 * time.Second)
	victim := c.Nodes[2]
	killedAt := rec.Now()
	victim.Kill()
	systest.WaitLeader(t, c.Others(victim)...)
	hold(8 * time.Second)
	to := rec.Now()
	load.Stop()
	requireAnswersSince(t, load.Outcomes(), 0, c.Others(victim)...)
	// From 3 s after the kill: an election, the lease TTL and the skew.
	checkLease(t, "node killed", rec.Admits(), load.Outcomes(), killedAt+3*time.Second, to, 0.85)
}

// TestLeaseModeNodeJoining: two nodes share the limit under load, then a
// third joins and takes load too.
func TestLeaseModeNodeJoining(t *testing.T) {
	c := systest.StartCluster(t, leaseOptions(), leaseOptions())
	rec := accuracy.NewRecorder()
	load := startPacedLoad(t, rec, workers(c.Nodes, 3, 3), tenantBucket)
	waitMode(t, load, rec, c.Nodes, "lease", 0, 10*time.Second)
	hold(2 * time.Second)
	joinAt := rec.Now()
	o := leaseOptions()
	o.ID, o.Join = "n3", []string{c.Nodes[0].HTTPAddr}
	n3 := systest.StartNode(t, o)
	n3.WaitReady()
	more := startPacedLoad(t, rec, workers([]*systest.Proc{n3}, 3), tenantBucket)
	waitMode(t, more, rec, []*systest.Proc{n3}, "lease", joinAt, 10*time.Second)
	from := rec.Now() + 2*time.Second
	hold(8 * time.Second)
	to := rec.Now()
	more.Stop()
	load.Stop()
	outcomes := append(load.Outcomes(), more.Outcomes()...)
	requireAnswers(t, outcomes, append(c.Nodes, n3)...)
	checkLease(t, "node joining", rec.Admits(), outcomes, from, to, 0.9)
}
