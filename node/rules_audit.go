package node

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

// Results of PUT /v1/rules, the values of sluice_rules_applied_total's
// result label: applied (counted by the leader), refused as invalid, or
// valid but not committed by raft (counted by the node that tried).
const (
	applyOK       = "ok"
	applyRejected = "rejected"
	applyFailed   = "failed"
)

func newRulesApplies() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Name: "rules_applied_total",
		Help: "PUT /v1/rules calls by result: ok (applied; counted on the leader), rejected (invalid rules), failed (not committed).",
	}, []string{"result"})
	for _, r := range []string{applyOK, applyRejected, applyFailed} {
		c.WithLabelValues(r)
	}
	return c
}

// RegisterRulesMetrics exposes sluice_rules_applied_total.
func RegisterRulesMetrics(reg prometheus.Registerer, n *Node) { reg.MustRegister(n.rulesApplies) }

// auditRules records an applied rules change on the leader: who asked (as
// the admin guard admitted them), the version it replaced and the new one,
// and how many rules it added, removed and changed.
func (n *Node) auditRules(ctx context.Context, prev *knownRules, next *rules.Set, version uint64) {
	n.rulesApplies.WithLabelValues(applyOK).Inc()
	old, oldVersion := &rules.Set{}, uint64(0)
	if prev != nil {
		oldVersion = prev.Version
		if set, err := rules.Parse(prev.Doc); err == nil {
			old = set
		}
	}
	change := rules.Diff(old, next)
	caller, _ := admin.CallerOf(ctx)
	n.logger.Info("rules applied", "audit", true, "caller_addr", caller.Addr, "caller_auth", caller.Auth,
		"caller_via", caller.Via,
		"from_version", oldVersion, "to_version", version, "rules", len(next.Rules),
		"added", len(change.Added), "removed", len(change.Removed), "changed", len(change.Changed))
}
