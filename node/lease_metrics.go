package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// leaseCollector exposes sluice_lease_share{rule}, this node's share of each
// limit rule (the share it would use in fallback now), and
// sluice_lease_withheld{rule}, the part of each rule it keeps out of its
// Redis rate for nodes that may be in fallback; both read at scrape time.
type leaseCollector struct {
	n               *Node
	share, withheld *prometheus.Desc
}

// RegisterLeaseMetrics exposes n's lease shares (SPEC §9) and withheld shares.
func RegisterLeaseMetrics(reg prometheus.Registerer, n *Node) {
	reg.MustRegister(&leaseCollector{n: n,
		share: prometheus.NewDesc("sluice_lease_share",
			"This node's share of each rule's limit for fallback mode: its floor plus its leased extra while the lease is valid.",
			[]string{"rule"}, nil),
		withheld: prometheus.NewDesc("sluice_lease_withheld",
			"Part of each rule's rate this node leaves out of what it draws from Redis, because other nodes may be deciding in fallback mode.",
			[]string{"rule"}, nil),
	})
}

func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.share; ch <- c.withheld }

func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, rule := range c.n.limitRules() {
		share, _ := c.n.share(rule, now)
		ch <- prometheus.MustNewConstMetric(c.share, prometheus.GaugeValue, share, rule)
		ch <- prometheus.MustNewConstMetric(c.withheld, prometheus.GaugeValue, c.n.Withheld(rule), rule)
	}
}
