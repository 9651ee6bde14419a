package node

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm"
)

// Lease defaults (SPEC §2: --lease-ttl, --max-clock-skew).
const (
	DefaultLeaseTTL     = 10 * time.Second
	DefaultMaxClockSkew = 500 * time.Millisecond
)

// ownLease is this node's usable extra share of one rule.
type ownLease struct {
	extra float64
	gen   uint64 // the entry's generation (fsm.Lease.Gen)
	// until is when this node stops using extra, on the monotonic clock
	// (the entry's expiry minus the max clock skew, converted when the
	// entry arrived), so that a wall-clock jump after arrival cannot
	// stretch it.
	until time.Time
}

// ownLeases is rule → usable extra; replaced whole on every lease apply.
type ownLeases map[string]ownLease

// leasesApplied runs on raft's FSM goroutine after every lease table it
// applies or restores, and decides which of this node's entries to trust:
// only those that arrive soon after they were issued. A log replayed at
// restart, or a follower catching up long after, brings entries the
// cluster may have handed on since; they are ignored. An entry not trusted
// leaves the earlier trusted one in place until its own expiry: the FSM
// keeps reserving that one until then.
func (n *Node) leasesApplied(s *fsm.State) {
	now := time.Now()
	wall := now.UnixNano()
	skew := int64(n.cfg.MaxClockSkew)
	prev := *n.own.Load()
	next := ownLeases{}
	for rule, entries := range s.Leases() {
		l, ok := entries[n.cfg.ID]
		if ok && n.trusted(rule, l, wall) {
			next[rule] = ownLease{extra: l.Extra, gen: l.Gen, until: now.Add(time.Duration(l.Expires - skew - wall))}
		} else if p, ok := prev[rule]; ok && now.Before(p.until) {
			next[rule] = p
		}
		if next[rule].extra < prev[rule].extra {
			n.shrunk.Store(true) // tell the leader it may hand the rest on
		}
	}
	n.own.Store(&next)
	// After own: released (lease_reports.go) reads seen first.
	n.leasesSeen.Store(max(n.leasesSeen.Load(), s.LeaseGen()))
}

// released is, per rule the lease table holds, the generation before which
// this node uses no entry of the rule: the one it uses, or, using none, any
// after the newest it has seen (an entry it did not trust on arrival it
// never trusts later). Demand reports carry it, and
// the FSM then stops reserving the older entries (fsm.LeaseProposal.Released),
// so a share this node gave back moves to another node at once.
func (n *Node) released() map[string]uint64 {
	seen := n.leasesSeen.Load() // before own: an apply stores own first
	own := *n.own.Load()
	out := map[string]uint64{}
	for rule := range n.fsm.State().Leases() {
		if l, ok := own[rule]; ok {
			out[rule] = l.gen
		} else if seen > 0 {
			out[rule] = seen + 1
		}
	}
	return out
}

// trusted reports whether entry l, arriving at wall, may be used: issued at
// most half its lifetime ago (one renewal period is a third of it), and not
// issued in this node's future beyond the assumed skew, which would mean
// the clocks disagree more than the safety argument allows.
func (n *Node) trusted(rule string, l fsm.Lease, wall int64) bool {
	age := wall - l.IssuedAt
	switch {
	case age > (l.Expires-l.IssuedAt)/2:
		n.logger.Debug("ignoring a lease entry that arrived late", "rule", rule, "age", time.Duration(age))
		return false
	case -age > int64(n.cfg.MaxClockSkew):
		n.logger.Warn("ignoring a lease issued in this node's future: clocks differ by more than --max-clock-skew",
			"rule", rule, "ahead_by", time.Duration(-age))
		return false
	}
	return true
}

// Share is this node's share of rule for fallback mode (SPEC §7): its floor
// plus its leased extra while the lease is valid, else the floor alone. It
// is what engine.GlobalConfig.Share should call; it never waits on raft.
func (n *Node) Share(rule string) float64 {
	share, _ := n.share(rule, time.Now())
	return share
}

// Withheld is the part of rule that other nodes may be admitting on their
// own right now, in fallback mode: the floor plus reserved extra of every
// member the leader withholds (fsm.State.WithheldShare). In global mode
// this node draws only rate·(1 − Withheld) from Redis, so that the others'
// fallback admissions and the Redis bucket together stay within the rate.
// A node whose view may be stale (viewStale) cannot know who is withheld
// now and assumes everyone else may be: it draws only its own share. It is
// what engine.GlobalConfig.Withheld should call; it never waits on raft.
func (n *Node) Withheld(rule string) float64 {
	if n.viewStale() {
		return 1 - n.Share(rule)
	}
	s := n.fsm.State()
	if len(s.Withheld()) == 0 {
		return 0
	}
	return s.WithheldShare(rule, n.cfg.ID, fsm.FloorShare(s.MemberCount()), time.Now().UnixNano(), int64(n.cfg.MaxClockSkew))
}

// viewStale reports whether this node may have missed a change of the
// withheld set: it does not lead and has not heard from a leader for as
// long as the leader takes to withhold a silent node. A node cut off from
// the raft majority but not from Redis could otherwise keep drawing the
// whole rate while another node, cut off from Redis, admits its share.
func (n *Node) viewStale() bool {
	if n.IsLeader() {
		return false
	}
	return time.Since(n.raft.LastContact()) > staleReports*n.reportEvery()
}

// share returns this node's share of rule at now and how long its extra
// has left (0 when it has none).
func (n *Node) share(rule string, now time.Time) (float64, time.Duration) {
	floor := fsm.FloorShare(n.memberCount(n.fsm.State()))
	if l, ok := (*n.own.Load())[rule]; ok && l.extra > 0 && now.Before(l.until) {
		return floor + l.extra, l.until.Sub(now)
	}
	return floor, 0
}

// memberCount counts the members of s, this node included even before its
// own membership has reached it, so that its floor is never larger than
// the one the others compute for it.
func (n *Node) memberCount(s *fsm.State) int {
	count := s.MemberCount()
	if _, ok := s.Member(n.cfg.ID); !ok {
		count++
	}
	return count
}

// Leases reports every member's share of every limit rule (GET /v1/leases)
// from this node's copy of the lease table, judged by this node's clock:
// an entry counts until its expiry minus the max clock skew. This node's
// own line is the share it would use right now.
func (n *Node) Leases(context.Context) (admin.Leases, error) {
	now := time.Now()
	wall := now.UnixNano()
	s := n.fsm.State()
	floor := fsm.FloorShare(n.memberCount(s))
	out := admin.Leases{}
	for _, rule := range n.limitRules() {
		byNode := map[string]admin.Lease{}
		for _, m := range s.Members() {
			lease := admin.Lease{Share: floor}
			l, ok := s.Leases()[rule][m.ID]
			if left := l.Expires - int64(n.cfg.MaxClockSkew) - wall; ok && l.Extra > 0 && left > 0 {
				lease = admin.Lease{Share: floor + l.Extra, ExpiresInMs: check.CeilMs(left)}
			}
			byNode[m.ID] = lease
		}
		share, left := n.share(rule, now)
		byNode[n.cfg.ID] = admin.Lease{Share: share, ExpiresInMs: check.CeilMs(int64(left))}
		for _, id := range s.Withheld() {
			if l, ok := byNode[id]; ok {
				l.Withheld = true
				byNode[id] = l
			}
		}
		out[rule] = byNode
	}
	return out, nil
}
