package systest_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
)

// TestKillUnderLoad kills a follower, then the leader, with kill -9 under
// load: the others keep deciding, the envelope holds, and each killed node
// restarts and rejoins. Redis is healthy, so a dead node's slices simply
// expire in Redis as spent and ε is the promised 0, measured to within
// faultEpsJitter.
func TestKillUnderLoad(t *testing.T) {
	redis := redistest.StartServer(t)
	opts := systest.Options{Rules: faultRules, Redis: redis.Addr(), RedisMode: "single", Args: healthyRedisArgs}
	c := systest.StartCluster(t, opts, opts, opts)
	load, rec := startSteadyLoad(t, c, tenantBucket)

	killAndRestart := func(role string, victim *systest.Proc) {
		survivors := c.Others(victim)
		killedAt := rec.Now()
		victim.Kill()
		leader := systest.WaitLeader(t, survivors...)
		t.Logf("kill -9 of %s %s: %s leads %v later", role, victim.ID, leader.ID, (rec.Now() - killedAt).Round(time.Millisecond))
		hold(2 * time.Second)
		requireAnswersSince(t, load.Outcomes(), killedAt, survivors...)
		victim.Restart()
		victim.WaitReady()
		restartedAt := rec.Now()
		systest.WaitLeader(t, c.Nodes...)
		waitMode(t, load, rec, []*systest.Proc{victim}, "global", restartedAt, 10*time.Second)
		t.Logf("%s ready %v after the kill, rejoined and deciding in global mode",
			victim.ID, (restartedAt - killedAt).Round(time.Millisecond))
		hold(time.Second)
	}
	leader := c.Leader()
	killAndRestart("follower", c.Others(leader)[0])
	killAndRestart("leader", c.Leader())
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	t.Logf("outcomes: %s", counts(outcomes))
	requireNoFallback(t, outcomes)
	got := excess(admits)
	t.Logf("whole run %v: admitted %d, burst+rate·Δ %.0f, excess %.1f",
		rec.Now().Round(time.Millisecond), len(admits), faultBurst+faultRate*rec.Now().Seconds(), got)
	if got > faultEpsJitter {
		t.Errorf("kill -9 with Redis healthy over-admitted by %.1f, want at most %v; admits per second:%s", got, faultEpsJitter, timeline(outcomes))
	}
}
