package systest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
	"github.com/sluicehq/sluice/transport/faultproxy"
)

const (
	// pauseFor outlasts the slice TTL (250 ms) and its Redis margin many
	// times over, and the lease TTL plus clock skew the pause tests run with.
	pauseFor = 3 * time.Second
	// stalePauseBurst is large so that the slice a paused node holds is
	// big: spending it after the pause would show as dozens of extra admits.
	stalePauseRate  = 200
	stalePauseBurst = 200
)

// shortLeases makes leases expire well within pauseFor: 1 s TTL, trusted
// up to 200 ms of clock skew.
var shortLeases = []string{"--lease-ttl=1s", "--max-clock-skew=200ms"}

// pauseCluster starts three nodes on Redis, each through its own proxy, with
// short leases.
func pauseCluster(t *testing.T, rules string) (*systest.Cluster, []*faultproxy.Proxy) {
	t.Helper()
	redis := redistest.StartServer(t)
	var links []*faultproxy.Proxy
	var opts []systest.Options
	for range 3 {
		link := faultproxy.Start(t, redis.Addr())
		links = append(links, link)
		opts = append(opts, systest.Options{Rules: rules, Redis: link.Addr(), RedisMode: "single", Args: shortLeases})
	}
	return systest.StartCluster(t, opts...), links
}

// TestPausedNodeSpendsNoStaleSliceRedisUp: n3 takes a slice of the full
// bucket and is stopped with SIGSTOP; the others drain the bucket
// meanwhile. After SIGCONT n3's slice is long past its deadline and Redis
// has written its grant off, so n3 must get fresh tokens from Redis rather
// than spend the old ones.
func TestPausedNodeSpendsNoStaleSliceRedisUp(t *testing.T) {
	c, _ := pauseCluster(t, tenantRules(stalePauseRate, stalePauseBurst))
	paused := c.Nodes[2]
	status, d := decide(t, paused, faultBody)
	if status != 200 || d.Mode != "global" || d.Remaining < stalePauseBurst/2 {
		t.Fatalf("first check on %s: %d %+v, want allowed in global mode from a slice of a full bucket", paused.ID, status, d)
	}
	paused.Pause()
	rec := accuracy.NewRecorder()
	others := systest.StartLoad(t, systest.LoadConfig{Nodes: c.Nodes[:2], Body: faultBody, Key: faultKey, Recorder: rec})
	hold(pauseFor)
	paused.Resume()
	resumedAt := rec.Now()
	// The stale slice would report its own leftovers plus the full bucket
	// it was cut from (about a third plus two thirds of the burst); a fresh
	// grant from the bucket the others keep draining reports far less.
	waitFor(t, 5*time.Second, paused.ID+" deciding in global mode after SIGCONT", func() error {
		status, d := decide(t, paused, faultBody)
		if d.Mode != "global" {
			return fmt.Errorf("answered %d in %s mode", status, d.Mode)
		}
		if d.Remaining > stalePauseBurst/2 {
			t.Fatalf("first global answer after the pause: %+v; remaining %d looks like the stale slice", d, d.Remaining)
		}
		return nil
	})
	mine := systest.StartLoad(t, systest.LoadConfig{Nodes: []*systest.Proc{paused}, Workers: 4, Body: faultBody, Key: faultKey, Recorder: rec})
	hold(2 * time.Second)
	mine.Stop()
	others.Stop()

	requireAnswers(t, others.Outcomes(), c.Nodes[:2]...)
	requireAnswers(t, mine.Outcomes(), paused)
	admits := rec.Admits()
	got := excessOver(admits, stalePauseBurst, stalePauseRate)
	t.Logf("paused %s %v holding a slice, Redis up: %d admits by it after resume, %d in all; excess %.1f; its outcomes: %s",
		paused.ID, pauseFor, len(between(admits, resumedAt, rec.Now())), len(admits), got, counts(mine.Outcomes()))
	// A resumed process is starved of CPU for a moment; a Redis call may
	// then miss --redis-timeout and start a short fallback episode of n3
	// alone, whose end may add its fallback burst (b·s₃, s₃ about a third)
	// and r·s₃·P; the stale slice would add about a third of b on top.
	if bound := stalePauseBurst / 3.0; got > bound {
		t.Errorf("after a pause with Redis up the cluster over-admitted by %.1f, want at most %.0f", got, bound)
	}
}

// TestPausedNodeSpendsNoStaleLeaseRedisDown: under load on all three nodes,
// n3 is stopped while it holds a slice; then Redis becomes unreachable for
// every node. The others fall back to their leases, and once n3's lease has
// expired the leader may hand its share to them. After SIGCONT n3 must not
// spend its slice (Redis is gone) nor its expired lease (the others have
// it): it decides in fallback mode from its floor until it gets a new lease,
// so the cluster as a whole keeps the envelope.
func TestPausedNodeSpendsNoStaleLeaseRedisDown(t *testing.T) {
	c, links := pauseCluster(t, faultRules)
	paused := c.Nodes[2]
	load, rec := startFaultLoad(t, c.Nodes, tenantBucket)
	waitMode(t, load, rec, c.Nodes, "global", 0, 10*time.Second)
	hold(2 * time.Second)

	paused.Pause()
	cutAt := rec.Now()
	for _, l := range links {
		l.Refuse()
	}
	hold(pauseFor)
	paused.Resume()
	resumedAt := rec.Now()
	waitMode(t, load, rec, c.Nodes, "fallback", resumedAt, 10*time.Second)
	hold(3 * time.Second)
	load.Stop()

	outcomes := load.Outcomes()
	requireAnswers(t, outcomes, c.Nodes[:2]...)
	requireAnswersSince(t, outcomes, resumedAt+systest.LoadTimeout, paused)
	for _, o := range outcomes {
		if o.Status == 200 && o.Sent > cutAt && o.Mode == "global" && o.Node == paused.ID {
			t.Errorf("%s admitted in global mode after Redis went away: %+v", paused.ID, o)
		}
	}
	cut := between(rec.Admits(), cutAt, rec.Now())
	got := excess(cut)
	d := rec.Now() - cutAt
	t.Logf("paused %s %v, Redis unreachable from the pause on: cluster admitted %d in %v (rate·Δ %.0f), excess %.1f; %s",
		paused.ID, pauseFor, len(cut), d.Round(time.Millisecond), faultRate*d.Seconds(), got, counts(outcomes))
	// Every window here lies inside one fallback episode: ε ≤ M. A stale
	// lease would add its share of the rate for as long as n3 used it.
	if got > faultEpsInEpisode {
		t.Errorf("over-admitted by %.1f after the pause, want at most %d; admits per second:%s", got, faultEpsInEpisode, timeline(outcomes))
	}
	u := accuracy.Utilisation(cut, faultRate, cutAt, rec.Now())
	t.Logf("utilisation since the cut: %.2f of rate·Δ", u)
	if u < 0.5 {
		t.Errorf("utilisation in fallback %.2f of rate·Δ: the nodes hardly admitted anything", u)
	}
}
