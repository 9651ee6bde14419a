package node

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sluice_raft_unhealthy_voters is 0 while every voter answers, counts a
// stopped voter on the leader (what SluiceVoterUnhealthy alerts on), and
// stays 0 on a follower, which sees no heartbeats.
func TestUnhealthyVotersGauge(t *testing.T) {
	c := startCluster(t, 3)
	leader, follower := c.leader(), c.follower()
	gauge := func(m *member) float64 {
		reg := prometheus.NewRegistry()
		RegisterRaftMetrics(reg, m.node)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "sluice_raft_unhealthy_voters" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("%s: no sluice_raft_unhealthy_voters", m.id)
		return 0
	}
	if v := gauge(leader); v != 0 {
		t.Fatalf("healthy cluster: leader reports %v unhealthy voters", v)
	}
	var down *member
	for _, m := range c.running() {
		if m != leader && m != follower {
			down = m
		}
	}
	c.stop(down)
	c.waitFor("the leader to count "+down.id+" unhealthy", 5*time.Second, func() bool { return gauge(leader) == 1 })
	if v := gauge(follower); v != 0 {
		t.Fatalf("follower %s reports %v unhealthy voters", follower.id, v)
	}
}
