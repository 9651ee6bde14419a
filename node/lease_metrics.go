package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// leaseCollector exposes sluice_lease_share{rule}: this node's share of each
// limit rule, read at scrape time (the share it would use in fallback now).
type leaseCollector struct {
	n    *Node
	desc *prometheus.Desc
}

// RegisterLeaseMetrics exposes n's lease shares (SPEC §9).
func RegisterLeaseMetrics(reg prometheus.Registerer, n *Node) {
	reg.MustRegister(&leaseCollector{n: n, desc: prometheus.NewDesc("sluice_lease_share",
		"This node's share of each rule's limit for fallback mode: its floor plus its leased extra while the lease is valid.",
		[]string{"rule"}, nil)})
}

func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, rule := range c.n.limitRules() {
		share, _ := c.n.share(rule, now)
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, share, rule)
	}
}
