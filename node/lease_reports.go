package node

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
)

// Demand reports: every node tells the leader its decisions per second per
// rule and whether it decides in fallback; the leader keeps a smoothed
// table of them, sizes leases from it (lease_alloc.go) and withholds the
// shares of nodes in fallback or gone silent (docs/DESIGN.md, Safety §3).

// reporter sends this node's demand reports.
type reporter struct {
	n     *Node
	meter demandMeter
	// told is the fallback mode the leader last received from this node.
	told bool
	// sent is the demand last reported.
	sent map[string]float64
}

func (r *reporter) fallback() bool { return r.n.cfg.Fallback != nil && r.n.cfg.Fallback() }

// fallbackChanged reports whether the mode differs from what the leader
// was last told (also after a report that did not get through).
func (r *reporter) fallbackChanged() bool { return r.fallback() != r.told }

// urgent reports whether to report before the next period: a lease of
// this node shrank, so the leader may hand the rest to others now; or its
// demand, measured over at least minUrgentWindow, moved from what it last
// reported by more than half, so shares should follow now (a node that
// runs dry asks for more at once, one gone idle gives back).
func (r *reporter) urgent(now time.Time) bool {
	if r.n.shrunk.Load() {
		return true
	}
	window := now.Sub(r.meter.at)
	if window < minUrgentWindow {
		return false
	}
	for rule, rate := range r.meter.peek(r.n.cfg.Demand, now) {
		last := r.sent[rule]
		diff := max(rate-last, last-rate)
		if diff > max(last, rate)/2 && diff*window.Seconds() >= minDemandMove {
			return true
		}
	}
	return false
}

func (r *reporter) send() {
	n := r.n
	fallback := r.fallback()
	n.shrunk.Store(false) // before reading the leases, so a later shrink reports again
	rep := admin.DemandReport{NodeID: n.cfg.ID, Rates: r.meter.read(n.cfg.Demand, time.Now()), Fallback: fallback,
		Released: n.released(), AppliedIndex: n.raft.AppliedIndex()}
	r.sent = rep.Rates
	ctx, cancel := context.WithTimeout(n.ctx, n.reportEvery())
	defer cancel()
	if err := n.ReportDemand(ctx, rep); err != nil {
		n.logger.Debug("demand report not delivered", "err", err)
		return
	}
	r.told = fallback
}

// demandMeter turns cumulative decision counts into rates.
type demandMeter struct {
	last map[string]float64
	at   time.Time
}

// read returns decisions per second per rule since the previous read.
func (m *demandMeter) read(counts func() map[string]float64, now time.Time) map[string]float64 {
	if counts == nil {
		return nil
	}
	cur := counts()
	rates := m.rates(cur, now)
	m.last, m.at = cur, now
	return rates
}

// peek is read without starting a new period.
func (m *demandMeter) peek(counts func() map[string]float64, now time.Time) map[string]float64 {
	if counts == nil {
		return nil
	}
	return m.rates(counts(), now)
}

func (m *demandMeter) rates(cur map[string]float64, now time.Time) map[string]float64 {
	rates := make(map[string]float64, len(cur))
	if secs := now.Sub(m.at).Seconds(); m.last != nil && secs > 0 {
		for rule, c := range cur {
			rates[rule] = max(0, c-m.last[rule]) / secs
		}
	}
	return rates
}

// ReportDemand records a node's demand report on the leader; a follower
// passes it on to the leader (admin.DemandReceiver). A report that changes
// which nodes are to be withheld makes the leader propose leases at once.
func (n *Node) ReportDemand(ctx context.Context, r admin.DemandReport) error {
	return n.onLeader(ctx,
		func() error {
			now := time.Now()
			n.demand.record(r, now)
			if n.withheldChanged(now) || n.leasesBehind(now) {
				select {
				case n.reallocate <- struct{}{}:
				default:
				}
			}
			return nil
		},
		func(ctx context.Context, leader string) error { return n.leader.ReportDemand(ctx, leader, r) })
}

// withheldChanged reports whether the members to withhold, by the reports
// at now, differ from the replicated ones.
func (n *Node) withheldChanged(now time.Time) bool {
	s := n.fsm.State()
	return !slices.Equal(n.demand.withheld(memberIDs(s), now, staleReports*n.reportEvery()), s.Withheld())
}

func memberIDs(s *fsm.State) []string {
	var ids []string
	for _, m := range s.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}

// demandTable is the leader's smoothed view of each node's demand.
type demandTable struct {
	mu     sync.Mutex
	byNode map[string]nodeDemand
}

type nodeDemand struct {
	rates    map[string]float64
	fallback bool
	applied  uint64 // the node's raft applied index
	at       time.Time
	released map[string]uint64 // newest DemandReport.Released per rule
}

// record folds one report into the node's running average.
func (d *demandTable) record(r admin.DemandReport, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byNode == nil {
		d.byNode = map[string]nodeDemand{}
	}
	prev := d.byNode[r.NodeID]
	rates := make(map[string]float64, len(r.Rates))
	for rule, rate := range r.Rates {
		if old, ok := prev.rates[rule]; ok && rate <= demandStep*old+1 && old <= demandStep*rate+1 {
			rate = demandSmoothing*rate + (1-demandSmoothing)*old
		}
		rates[rule] = rate
	}
	released := maps.Clone(prev.released)
	if released == nil {
		released = map[string]uint64{}
	}
	for rule, at := range r.Released {
		released[rule] = max(released[rule], at)
	}
	d.byNode[r.NodeID] = nodeDemand{rates: rates, fallback: r.Fallback, applied: r.AppliedIndex, at: now, released: released}
}

// released returns node → rule → the generation before which the node
// reported it uses no entry (fsm.LeaseProposal.Released). A report stays
// true however old it is: a node never goes back to an older entry.
func (d *demandTable) released() map[string]map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]map[string]uint64, len(d.byNode))
	for id, nd := range d.byNode {
		if len(nd.released) > 0 {
			out[id] = nd.released
		}
	}
	return out
}

// lastHeard returns when id last reported (the zero time if never).
func (d *demandTable) lastHeard(id string) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byNode[id].at
}

// progress returns the applied index id last reported, and when.
func (d *demandTable) progress(id string) (applied uint64, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nd := d.byNode[id]
	return nd.applied, nd.at
}

// withheld returns, sorted, the members whose shares the others must keep
// out of Redis: those that last reported fallback mode, or have not
// reported within staleAfter (they may be cut off from Redis and from the
// leader at once).
func (d *demandTable) withheld(members []string, now time.Time, staleAfter time.Duration) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range members {
		nd, ok := d.byNode[id]
		if !ok || nd.fallback || now.Sub(nd.at) > staleAfter {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// fresh returns node → rule → rate for the nodes that reported within
// staleAfter.
func (d *demandTable) fresh(now time.Time, staleAfter time.Duration) map[string]map[string]float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]map[string]float64{}
	for id, nd := range d.byNode {
		if now.Sub(nd.at) <= staleAfter {
			out[id] = nd.rates
		}
	}
	return out
}
