package node

import (
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/fsm"
	"github.com/sluicehq/sluice/fsm/rules"
)

// The lease cycle, in fractions of --lease-ttl: every node reports its
// demand four times per TTL (at least every maxReportEvery), and the leader
// proposes leases three times per TTL, so a node whose renewal is lost once
// still has a valid lease.
const (
	reportsPerTTL     = 4
	allocationsPerTTL = 3
	// maxReportEvery bounds the report period with long TTLs: reports are
	// also how the leader notices a node gone silent, whose share it then
	// withholds from the others, and that should take seconds at most.
	maxReportEvery = 500 * time.Millisecond
	// staleReports: a node that has not reported for this many report
	// periods is treated as having no demand and as possibly deciding in
	// fallback (dead or partitioned): its share is withheld from the
	// others' Redis rate, and its extra goes to others once its lease has
	// expired.
	staleReports = 3
	// demandSmoothing is the weight of a new report in the leader's running
	// average: spikes shorter than a report period move shares by half.
	demandSmoothing = 0.5
	// fallbackPoll is how often a node looks whether it entered or left
	// fallback mode, to tell the leader at once rather than at its next
	// report: until the others withhold its share, its fallback admissions
	// come on top of the whole rate they draw from Redis.
	fallbackPoll = 20 * time.Millisecond
	// minUrgentWindow is the shortest demand measurement that may make a
	// node report before its period ends (reporter.urgent), and
	// minDemandMove the smallest change, in decisions over the measurement,
	// that counts: shorter or smaller ones are noise.
	minUrgentWindow = 100 * time.Millisecond
	minDemandMove   = 10.0
	// demandStep: a reported rate this many times above or below the
	// leader's running average replaces it instead of being averaged in,
	// so that shares follow a hot spot that moved within one report.
	demandStep = 4.0
	// minAllocateGap spaces the allocations reports trigger: each one is a
	// raft commit.
	minAllocateGap = 50 * time.Millisecond
	// materialShift is how far a member's wished extra must be from the one
	// in force for a report to trigger an allocation at once.
	materialShift = 0.05
)

func (n *Node) reportEvery() time.Duration { return min(n.cfg.LeaseTTL/reportsPerTTL, maxReportEvery) }

// runLeases is every node's lease loop: report demand and fallback mode to
// the leader and, while leading, propose the next leases, also as soon as
// the set of nodes to withhold changes.
func (n *Node) runLeases() {
	report := time.NewTicker(n.reportEvery())
	defer report.Stop()
	allocate := time.NewTicker(n.cfg.LeaseTTL / allocationsPerTTL)
	defer allocate.Stop()
	poll := time.NewTicker(fallbackPoll)
	defer poll.Stop()
	r := reporter{n: n}
	r.meter.read(n.cfg.Demand, time.Now())
	var lastAllocation time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-report.C:
			// On the leader this report is recorded locally, which also
			// notices nodes whose reports went stale (ReportDemand).
			r.send()
		case now := <-poll.C:
			n.updateMode()
			if r.fallbackChanged() || r.urgent(now) {
				r.send()
			}
		case <-n.reallocate:
			if wait := minAllocateGap - time.Since(lastAllocation); wait > 0 {
				time.Sleep(wait)
			}
			if n.IsLeader() {
				lastAllocation = time.Now()
				n.allocate(lastAllocation)
			}
		case <-allocate.C:
			if n.IsLeader() {
				n.allocate(time.Now())
			}
		}
	}
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
	if len(ruleNames) == 0 && len(state.Leases()) == 0 && len(state.Withheld()) == 0 {
		return // nothing to lease, nothing left to expire
	}
	members, stale := memberIDs(state), staleReports*n.reportEvery()
	p := fsm.LeaseProposal{
		IssuedAt: now.UnixNano(),
		TTL:      int64(n.cfg.LeaseTTL),
		Skew:     int64(n.cfg.MaxClockSkew),
		Extras:   steady(allocateExtras(ruleNames, members, n.demand.fresh(now, stale)), state),
		Withheld: n.demand.withheld(members, now, stale),
		Released: n.demand.released(),
	}
	if _, err := n.apply(fsm.EncodeSetLeases(p)); err != nil {
		n.logger.Warn("proposing leases failed", "err", err)
	}
}

// steady keeps every extra in force that the wish differs from by less
// than materialShift: demand measured over a report period is noisy, and
// every change costs utilisation while the node that shrinks has not yet
// released what it gave up. The FSM still scales increases into the pool.
func steady(wishes map[string]map[string]float64, s *fsm.State) map[string]map[string]float64 {
	for rule, byNode := range wishes {
		for id, wish := range byNode {
			if l, ok := s.Leases()[rule][id]; ok && max(wish-l.Extra, l.Extra-wish) < materialShift {
				byNode[id] = l.Extra
			}
		}
	}
	return wishes
}

// leasesBehind reports whether the extras the leader would wish now, from
// the demand reported, differ materially from those in force (demand
// moved), or whether a node gave back a share another wishes for. The
// leader then allocates at once instead of at its next round, so shares
// follow demand within a report and a raft commit.
func (n *Node) leasesBehind(now time.Time) bool {
	s := n.fsm.State()
	wall, skew := now.UnixNano(), int64(n.cfg.MaxClockSkew)
	released := n.demand.released()
	wishes := allocateExtras(n.limitRules(), memberIDs(s), n.demand.fresh(now, staleReports*n.reportEvery()))
	for rule, byNode := range wishes {
		free, short := 1-fsm.LeaseFloorFraction, 0.0
		for id, l := range s.Leases()[rule] {
			free -= l.Release(released[id][rule]).Reserved(wall, skew)
		}
		for id, wish := range byNode {
			l := s.Leases()[rule][id]
			if max(wish-l.Extra, l.Extra-wish) > materialShift {
				return true
			}
			short += max(0, wish-l.Extra)
		}
		if min(free, short) > materialShift/5 {
			return true
		}
	}
	return false
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
