package node

import "github.com/prometheus/client_golang/prometheus"

// RegisterRaftMetrics exposes the node's raft role and cluster size (SPEC §9),
// whether it knows a leader, which voters the leader cannot reach and the
// rules version it decides on, as gauges read at scrape time, so raft's own
// goroutines never update them.
func RegisterRaftMetrics(reg prometheus.Registerer, n *Node) {
	reg.MustRegister(
		gauge("raft_has_leader", "1 while this node knows a raft leader; 0 while it decides on its last rules without one.",
			func() float64 { return oneIf(n.Stats().HasLeader) }),
		gauge("rules_version", "Version of the rules this node decides on (0: none yet, checks answer 503).",
			func() float64 { return float64(n.RulesVersion()) }),
		gauge("raft_is_leader", "1 while this node is the raft leader.",
			func() float64 { return oneIf(n.Stats().IsLeader) }),
		gauge("raft_peers", "Servers in the raft configuration, this node included.",
			func() float64 { return float64(n.Stats().Peers) }),
		gauge("raft_unhealthy_voters", "On the leader, voters other than itself that fail to answer heartbeats; 0 on other nodes.",
			func() float64 { return float64(n.unhealthyVoters()) }),
		gauge("raft_is_voter", "1 while this node is a voter (part of the voting core); 0 for a non-voter.",
			func() float64 { return oneIf(n.Stats().Voter) }),
		gauge("raft_voters", "Voters in the raft configuration (the voting core).",
			func() float64 { return float64(n.Stats().Voters) }),
	)
}

// gauge is a sluice_<name> gauge read from value at scrape time.
func gauge(name, help string, value func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "sluice", Name: name, Help: help}, value)
}

// oneIf is 1 for true and 0 for false, a boolean gauge's value.
func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
