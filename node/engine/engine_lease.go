package engine

import (
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// LeaseConfig turns on lease mode for an engine without Redis: while the
// cluster has more than one member, every node decides from local buckets
// at its leased share of each rule (rate·s, max(1, burst·s)), so that the
// cluster as a whole holds one limit (docs/DESIGN.md, Safety §7). A single
// node decides in exact local mode.
type LeaseConfig struct {
	// Share reports this node's share of a rule (Node.Share).
	Share func(rule string) float64
	// Members reports the cluster size; quota rules, which leases do not
	// cover, count at limit/Members on each node (see takeQuota).
	Members func() int
}

// WithLeases makes the engine start in lease mode and follow SetClustered.
func WithLeases(cfg LeaseConfig) Option {
	return func(e *Engine) {
		e.leases = &leaseMode{cfg: cfg}
		// A node does not know yet whether it is alone: deciding at its
		// share until it does errs on the safe side.
		e.leases.clustered.Store(true)
	}
}

// leaseMode is the engine's state for lease mode. Its buckets are the
// local ones at the node's share: a GCRA bucket keeps how full it is when
// its limit changes, so going from the whole limit to a share (a second
// member joins) leaves a spent bucket spent and adds no burst.
type leaseMode struct {
	cfg       LeaseConfig
	clustered atomic.Bool
	switching sync.Mutex
}

// mode is the mode of an engine without Redis: lease while clustered.
func (m *leaseMode) mode() check.Mode {
	if m != nil && m.clustered.Load() {
		return check.ModeLease
	}
	return check.ModeLocal
}

// SetClustered switches between local mode (false: this node is the only
// member and no other node may still use a lease) and lease mode (true).
// The node calls it when membership changes (Config.OnClustered). Going
// back to local mode empties the buckets before any decision sees the full
// limit, so what was admitted at the share is not admitted again from a
// full bucket (skipped when no key has a bucket yet: a single node starting
// up keeps today's full buckets). An engine without a LeaseConfig is
// always local.
func (e *Engine) SetClustered(clustered bool) {
	m := e.leases
	if m == nil {
		return
	}
	m.switching.Lock()
	defer m.switching.Unlock()
	if m.clustered.Load() == clustered {
		return
	}
	if !clustered && e.local.Len() > 0 {
		e.local.Empty(e.now())
	}
	m.clustered.Store(clustered)
	e.logger.Info("decision mode changed", "mode", m.mode())
}

// quotaPart is this node's part of quota q in lease mode: limit/Members,
// rounded down (at least 1). Leases are rates: a share that moves between
// nodes cannot take a calendar window's count with it, so a quota is split
// evenly and statically, and the cluster counts at most the quota per
// window while membership is stable (a join adds at most limit/Members per
// new node to the current window; docs/DESIGN.md, Safety §7). The price is
// utilisation under skew: one busy node gets limit/Members of the quota.
// A cluster-wide quota that follows demand needs Redis.
func (m *leaseMode) quotaPart(q *rules.Quota) rules.Quota {
	part := *q
	part.Limit = max(1, q.Limit/int64(max(1, m.cfg.Members())))
	return part
}
