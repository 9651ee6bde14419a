package node

import (
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets"
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
func WithLeases(cfg LeaseConfig) EngineOption {
	return func(e *Engine) {
		m := &leaseMode{cfg: cfg, buckets: buckets.NewTable()}
		// A node does not know yet whether it is alone: deciding at its
		// share until it does errs on the safe side. Its share's buckets
		// start empty, so that a node restarted (or joining) under load
		// adds no burst to what the others admit.
		m.clustered.Store(true)
		m.buckets.Empty(e.now())
		e.leases = m
	}
}

// leaseMode is the engine's state for lease mode.
type leaseMode struct {
	cfg       LeaseConfig
	buckets   *buckets.Table // at the node's share
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

func (m *leaseMode) sweep(now int64) {
	if m != nil {
		m.buckets.Sweep(now)
	}
}

func (m *leaseMode) len() int {
	if m == nil {
		return 0
	}
	return m.buckets.Len()
}

// SetClustered switches between local mode (false: this node is the only
// member and no other node may still use a lease) and lease mode (true).
// The node calls it when membership changes (Config.OnClustered). Each
// switch empties the buckets decisions move to, before any decision can
// use them: going to lease mode, what the node admitted at the full limit
// just before is not admitted again at its share; going back to local
// mode, what it admitted at its share is not admitted again from a full
// local bucket. An engine without a LeaseConfig is always local.
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
	now := e.now()
	switch {
	case clustered:
		m.buckets.Empty(now)
	case m.buckets.Len() > 0:
		// A node that never decided in lease mode (a single node starting
		// up) keeps today's full local buckets.
		e.local.Empty(now)
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
