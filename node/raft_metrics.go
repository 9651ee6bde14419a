package node

import "github.com/prometheus/client_golang/prometheus"

// RegisterRaftMetrics exposes the node's raft role and cluster size (SPEC §9),
// whether it knows a leader, which voters the leader cannot reach and the
// rules version it decides on, as gauges
// read at scrape time, so raft's own goroutines never update them.
func RegisterRaftMetrics(reg prometheus.Registerer, n *Node) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_has_leader",
			Help: "1 while this node knows a raft leader; 0 while it decides on its last rules without one.",
		}, func() float64 {
			if n.Stats().HasLeader {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "rules_version",
			Help: "Version of the rules this node decides on (0: none yet, checks answer 503).",
		}, func() float64 { return float64(n.RulesVersion()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_is_leader",
			Help: "1 while this node is the raft leader.",
		}, func() float64 {
			if n.Stats().IsLeader {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_peers",
			Help: "Servers in the raft configuration, this node included.",
		}, func() float64 { return float64(n.Stats().Peers) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_unhealthy_voters",
			Help: "On the leader, voters other than itself that fail to answer heartbeats; 0 on other nodes.",
		}, func() float64 { return float64(n.unhealthyVoters()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_is_voter",
			Help: "1 while this node is a voter (part of the voting core); 0 for a non-voter.",
		}, func() float64 {
			if n.Stats().Voter {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sluice", Name: "raft_voters",
			Help: "Voters in the raft configuration (the voting core).",
		}, func() float64 { return float64(n.Stats().Voters) }),
	)
}
