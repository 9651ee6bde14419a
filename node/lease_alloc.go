package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
	"github.com/sluicehq/sluice/fsm/rules"
)

// The lease cycle, in fractions of --lease-ttl: every node reports its
// demand four times per TTL, and the leader proposes leases three times per
// TTL, so a node whose renewal is lost once still has a valid lease.
const (
	reportsPerTTL     = 4
	allocationsPerTTL = 3
	// staleReports: a node that has not reported for this many report
	// periods is treated as having no demand (dead or partitioned), so its
	// extra goes to others once its lease has expired.
	staleReports = 3
	// demandSmoothing is the weight of a new report in the leader's running
	// average: spikes shorter than a report period move shares by half.
	demandSmoothing = 0.5
)

func (n *Node) reportEvery() time.Duration { return n.cfg.LeaseTTL / reportsPerTTL }

// runLeases is every node's lease loop: report demand to the leader and,
// while leading, propose the next leases.
func (n *Node) runLeases() {
	report := time.NewTicker(n.reportEvery())
	defer report.Stop()
	allocate := time.NewTicker(n.cfg.LeaseTTL / allocationsPerTTL)
	defer allocate.Stop()
	var meter demandMeter
	meter.read(n.cfg.Demand, time.Now())
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-report.C:
			r := admin.DemandReport{NodeID: n.cfg.ID, Rates: meter.read(n.cfg.Demand, time.Now())}
			ctx, cancel := context.WithTimeout(n.ctx, n.reportEvery())
			if err := n.ReportDemand(ctx, r); err != nil {
				n.logger.Debug("demand report not delivered", "err", err)
			}
			cancel()
		case <-allocate.C:
			if n.IsLeader() {
				n.allocate(time.Now())
			}
		}
	}
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
	rates := make(map[string]float64, len(cur))
	if secs := now.Sub(m.at).Seconds(); m.last != nil && secs > 0 {
		for rule, c := range cur {
			rates[rule] = max(0, c-m.last[rule]) / secs
		}
	}
	m.last, m.at = cur, now
	return rates
}

// ReportDemand records a node's demand report on the leader; a follower
// passes it on to the leader (admin.DemandReceiver).
func (n *Node) ReportDemand(ctx context.Context, r admin.DemandReport) error {
	return n.onLeader(
		func() error { n.demand.record(r, time.Now()); return nil },
		func(leader string) error { return n.leader.ReportDemand(ctx, leader, r) })
}

// allocate proposes the next leases from the demand reported recently. A
// leader that has led for less than one and a half report periods waits for
// reports first: proposing from no data would shrink every busy node's
// share to an equal split until the next round.
func (n *Node) allocate(now time.Time) {
	if now.Sub(time.Unix(0, n.leaderSince.Load())) < n.reportEvery()*3/2 {
		return
	}
	state, ruleNames := n.fsm.State(), n.limitRules()
	if len(ruleNames) == 0 && len(state.Leases()) == 0 {
		return // nothing to lease, nothing left to expire
	}
	var members []string
	for _, m := range state.Members() {
		members = append(members, m.ID)
	}
	p := fsm.LeaseProposal{
		IssuedAt: now.UnixNano(),
		TTL:      int64(n.cfg.LeaseTTL),
		Skew:     int64(n.cfg.MaxClockSkew),
		Extras:   allocateExtras(ruleNames, members, n.demand.fresh(now, staleReports*n.reportEvery())),
	}
	if _, err := n.apply(fsm.EncodeSetLeases(p)); err != nil {
		n.logger.Warn("proposing leases failed", "err", err)
	}
}

// allocateExtras is the leader's wish for every member's extra share of
// every rule: what the floors leave (1 − fsm.LeaseFloorFraction), split in
// proportion to the demand each member reported, or equally while nobody
// reports any. The FSM grants less where a wish would hand over a share
// still in use.
func allocateExtras(ruleNames, members []string, demand map[string]map[string]float64) map[string]map[string]float64 {
	pool := 1 - fsm.LeaseFloorFraction
	out := make(map[string]map[string]float64, len(ruleNames))
	for _, rule := range ruleNames {
		total := 0.0
		for _, m := range members {
			total += demand[m][rule]
		}
		extras := make(map[string]float64, len(members))
		for _, m := range members {
			if total > 0 {
				extras[m] = pool * demand[m][rule] / total
			} else {
				extras[m] = pool / float64(len(members))
			}
		}
		out[rule] = extras
	}
	return out
}

// demandTable is the leader's smoothed view of each node's demand.
type demandTable struct {
	mu     sync.Mutex
	byNode map[string]nodeDemand
}

type nodeDemand struct {
	rates map[string]float64
	at    time.Time
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
		if old, ok := prev.rates[rule]; ok {
			rate = demandSmoothing*rate + (1-demandSmoothing)*old
		}
		rates[rule] = rate
	}
	d.byNode[r.NodeID] = nodeDemand{rates: rates, at: now}
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

// ruleNamesCache holds the names of the limit rules of one rules version.
type ruleNamesCache struct {
	mu      sync.Mutex
	version uint64
	names   []string
}

// limitRules returns the sorted names of the installed rules that have a
// token-bucket limit: the rules leases are about.
func (n *Node) limitRules() []string {
	version, doc := n.fsm.State().Rules()
	c := &n.ruleNames
	c.mu.Lock()
	defer c.mu.Unlock()
	if version == c.version {
		return c.names
	}
	set, err := rules.Parse(doc)
	if err != nil {
		n.logger.Error("replicated rules do not parse; leases keep the previous rules", "version", version, "err", err)
		return c.names
	}
	names := []string{}
	for _, r := range set.Rules {
		if r.Limit != nil {
			names = append(names, r.Name)
		}
	}
	slices.Sort(names)
	c.version, c.names = version, names
	return names
}
