package systest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

// ruleSync is how soon every node must serve a rules change made anywhere
// (issue 3: "read them back on every node within a second").
const ruleSync = time.Second

// TestThreeNodeCluster is issue 3's system test: three real processes joined
// with --join replicate rules written on a follower, survive kill -9 of the
// leader, and a restarted node catches up.
func TestThreeNodeCluster(t *testing.T) {
	c := systest.StartCluster(t,
		systest.Options{Rules: rulesDoc("bootstrap", 5)}, systest.Options{}, systest.Options{})
	leader := c.Leader()
	follower := c.Others(leader)[0]

	version := putRules(t, follower, rulesDoc("v2", 2), "")
	for _, p := range c.Nodes {
		took := waitFor(t, ruleSync, "rules written on a follower reach "+p.ID, hasRules(p, version, "v2"))
		t.Logf("rules v%d visible on %s after %v", version, p.ID, took)
	}
	// The new rule decides on every node. Without Redis the three nodes
	// hold one limit (lease mode): each decides at its share s < 1 of the
	// burst of 2, max(1, ⌊2·s⌋) = 1, so the cluster admits 3, not 6.
	for _, p := range c.Nodes {
		for i, want := range []int{http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests} {
			if status, d := checkUser(t, p, "alice"); status != want || d.Mode != "lease" || (status == http.StatusTooManyRequests && d.Rule != "v2") {
				t.Fatalf("check %d on %s: %d %+v, want %d under rule v2", i+1, p.ID, status, d, want)
			}
		}
	}

	killedAt := time.Now()
	leader.Kill()
	survivors := c.Others(leader)
	newLeader := systest.WaitLeader(t, survivors...)
	t.Logf("kill -9 of leader %s: %s leads after %v", leader.ID, newLeader.ID, time.Since(killedAt).Round(time.Millisecond))
	if newLeader == leader {
		t.Fatalf("killed leader %s still named leader", leader.ID)
	}
	version = putRules(t, survivors[0], rulesDoc("v3", 3), "")
	for _, p := range survivors {
		waitFor(t, ruleSync, "rules after failover reach "+p.ID, hasRules(p, version, "v3"))
	}

	leader.Restart()
	leader.WaitReady()
	took := waitFor(t, 30*time.Second, "restarted "+leader.ID+" catches up", hasRules(leader, version, "v3"))
	t.Logf("restarted %s caught up with rules v%d %v after it was ready", leader.ID, version, took)
	systest.WaitLeader(t, c.Nodes...) // the restarted node agrees with the others

	// SIGTERM: every node exits 0, the last one without a quorum too.
	for _, p := range c.Nodes {
		if code := p.Stop(); code != 0 {
			t.Fatalf("%s exited %d after SIGTERM, want 0\n%s", p.ID, code, p.LogTail(3000))
		}
	}
}

// TestReadyzFollowsLeader: /readyz is 503 while a node knows no leader or has
// no rules, and 200 once it has both.
func TestReadyzFollowsLeader(t *testing.T) {
	// A node whose --join target does not exist has neither rules nor leader.
	lonely := systest.StartNode(t, systest.Options{Join: []string{"127.0.0.1:1"}})
	waitFor(t, 10*time.Second, "healthz of a node that cannot join", func() error {
		_, _, err := systest.Get(lonely.URL() + "/healthz")
		return err
	})
	if status, body, err := systest.Get(lonely.URL() + "/readyz"); err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("readyz of a node that has not joined: %d %s %v, want 503", status, body, err)
	}

	c := systest.StartCluster(t,
		systest.Options{Rules: rulesDoc("r", 5)}, systest.Options{}, systest.Options{})
	for _, p := range c.Nodes {
		if err := p.Ready(); err != nil {
			t.Fatalf("%s after joining: %v", p.ID, err)
		}
	}
	// Without a majority the survivor loses its leader and says so.
	survivor := c.Nodes[2]
	c.Nodes[0].Kill()
	c.Nodes[1].Kill()
	waitFor(t, 30*time.Second, "readyz 503 on a node without a majority", func() error {
		status, body, err := systest.Get(survivor.URL() + "/readyz")
		if err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "leader") {
			return &unexpected{status, body}
		}
		return nil
	})
	c.Nodes[0].Restart()
	c.Nodes[1].Restart()
	for _, p := range c.Nodes {
		p.WaitReady()
	}
}

type unexpected struct {
	status int
	body   string
}

func (u *unexpected) Error() string { return http.StatusText(u.status) + ": " + u.body }
