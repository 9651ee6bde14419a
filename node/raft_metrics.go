package node

import "github.com/prometheus/client_golang/prometheus"

// RegisterRaftMetrics exposes the node's raft role and cluster size (SPEC §9)
// as gauges read at scrape time, so raft's own goroutines never update them.
func RegisterRaftMetrics(reg prometheus.Registerer, n *Node) {
	reg.MustRegister(
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
	)
}
