package fsm

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// LeaseFloorFraction is the part of every rule's limit reserved for floors:
// each of M members owns LeaseFloorFraction/M of it, always, lease or not,
// and no SetLeases hands it to anyone else. A quiet, just-joined or
// partitioned node can therefore always admit a little in fallback mode,
// while a node carrying all the traffic can still get 1 − LeaseFloorFraction
// plus its own floor (0.93 of the limit with 3 members). It is a constant,
// not a flag: every replica must agree on it for the sum of shares to stay
// at most 1.
const LeaseFloorFraction = 0.1

// leasePool is what SetLeases distributes as extras on top of the floors. A
// hair below 1 − LeaseFloorFraction so that float rounding can never push a
// sum of shares above 1.
const leasePool = 1 - LeaseFloorFraction - 1e-9

// FloorShare is each member's floor when the cluster has members members.
func FloorShare(members int) float64 { return LeaseFloorFraction / float64(max(members, 1)) }

// LeaseProposal is the payload of CmdSetLeases: the leader's wish for every
// node's extra share of every rule, and the clock it was made by. The FSM
// grants less than wished when a wish would take a share another node may
// still be using (see applySetLeases).
type LeaseProposal struct {
	// IssuedAt is the leader's wall clock (Unix ns) when it proposed; every
	// entry of this allocation is issued at this time.
	IssuedAt int64 `json:"issued_at"`
	// TTL is how long an entry lives: it expires at IssuedAt+TTL.
	TTL int64 `json:"ttl_ns"`
	// Skew is the clock skew the leader assumes between any node and the
	// leader: an entry may be in use until its expiry plus Skew by any
	// other node's clock.
	Skew int64 `json:"skew_ns"`
	// Extras is rule → node → wished extra share. Rules or nodes absent
	// here get no extra.
	Extras map[string]map[string]float64 `json:"extras"`
	// Withheld names the members the leader presumes may be deciding in
	// fallback mode: they said so, or it has not heard from them lately.
	// Every other node keeps their shares out of the rate it draws from
	// Redis (see State.Withheld), so their local admissions come on top of
	// a correspondingly smaller global rate rather than on top of the
	// whole of it.
	Withheld []string `json:"withheld,omitempty"`
	// Released is node → rule → a lease generation: the node reported that
	// it uses no entry of the rule from an earlier generation (it moved on
	// to a later one). Such entries are reserved no longer, so a share a
	// node gave back moves to another at once instead of when its old entry
	// expires (Lease.Release).
	Released map[string]map[string]uint64 `json:"released,omitempty"`
}

// Lease is one node's entry for one rule: its extra share on top of its
// floor, and what the FSM still reserves for it from earlier entries.
type Lease struct {
	// Extra is valid from IssuedAt until Expires (leader's wall clock, Unix
	// ns). A node uses it only until Expires − its max clock skew by its own
	// clock, and only if it applied the entry soon after IssuedAt.
	Extra    float64 `json:"extra"`
	IssuedAt int64   `json:"issued_at"`
	Expires  int64   `json:"expires"`
	// Gen is the generation of the SetLeases that issued the entry
	// (State.LeaseGen): unlike issue times, which come from the clocks of
	// successive leaders, generations only grow.
	Gen uint64 `json:"gen,omitempty"`
	// Holds are this node's earlier entries that may still be in use and
	// are not covered by this one (a larger extra, or a later expiry): no
	// other node may be granted their extra before Until (+ skew).
	Holds []Hold `json:"holds,omitempty"`
}

// Hold is an earlier entry's extra, reserved until its expiry.
type Hold struct {
	Extra float64 `json:"extra"`
	Until int64   `json:"until"`
	// Gen is the held entry's generation; 0 in holds written before it
	// was recorded, which are never released early.
	Gen uint64 `json:"gen,omitempty"`
}

// Reserved is the most this entry's node may be using at time t by a clock
// within skew of every node's: the largest extra among its current entry
// and its holds that have not expired by t − skew.
func (l Lease) Reserved(t, skew int64) float64 {
	r := 0.0
	if l.Expires+skew > t {
		r = l.Extra
	}
	for _, h := range l.Holds {
		if h.Until+skew > t {
			r = max(r, h.Extra)
		}
	}
	return r
}

// live returns the current entry and the holds still possibly in use at t.
func (l Lease) live(t, skew int64) []Hold {
	var out []Hold
	for _, h := range append([]Hold{{Extra: l.Extra, Until: l.Expires, Gen: l.Gen}}, l.Holds...) {
		if h.Extra > 0 && h.Until+skew > t {
			out = append(out, h)
		}
	}
	return out
}

// Release drops what the node reported it no longer uses: the entry and
// holds of generations before before.
func (l Lease) Release(before uint64) Lease {
	if before == 0 {
		return l
	}
	if l.Gen < before {
		l.Extra = 0
	}
	var kept []Hold
	for _, h := range l.Holds {
		if h.Gen == 0 || h.Gen >= before {
			kept = append(kept, h)
		}
	}
	l.Holds = kept
	return l
}

// holdsBeside returns those of live not covered by the new entry cur (an
// entry with at least its extra that lives at least as long), as the new
// entry's Holds: each node keeps a short staircase of reservations that
// step down as the older, larger entries expire.
func holdsBeside(cur Hold, live []Hold) []Hold {
	var out []Hold
	for _, h := range live {
		if h.Extra > cur.Extra || h.Until > cur.Until {
			out = append(out, h)
		}
	}
	return out
}

// EncodeSetLeases returns the log entry that applies p.
func EncodeSetLeases(p LeaseProposal) []byte {
	payload, err := json.Marshal(p)
	if err != nil { // finite floats and strings always marshal; NaN is the caller's bug
		panic(fmt.Sprintf("fsm: encode lease proposal: %v", err))
	}
	return encode(CmdSetLeases, payload)
}

// applySetLeases turns a proposal into entries, per rule, without ever
// letting Σ over nodes of (floor + extra that may be in use) exceed 1:
//
//   - Each node's reservation h is what its older entries may still grant it
//     at IssuedAt (Lease.Reserved with the proposal's skew), leaving out the
//     entries it reported it has moved on from (Released).
//   - A wish x ≤ h is granted as is: shrinking is always safe, and h stays
//     reserved until the old entry has expired.
//   - Wishes above h are the increases; they share what the pool has left
//     after every reservation, each scaled by the same factor α ≤ 1.
//
// So Σ max(extra, h) ≤ pool holds after every apply, reservations only
// shrink with time, and a share moves to another node only once the node
// that had it can no longer be using it. The computation is in the FSM, not
// in the leader, so that a new leader with another view (or another clock)
// cannot break it; rules and nodes are visited in sorted order so that every
// replica rounds identically.
func applySetLeases(cur *State, payload []byte) (*State, error) {
	var p LeaseProposal
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("decode lease proposal: %w", err)
	}
	if p.IssuedAt <= 0 || p.TTL <= 0 || p.Skew < 0 {
		return nil, fmt.Errorf("lease proposal with issued_at %d, ttl %d, skew %d", p.IssuedAt, p.TTL, p.Skew)
	}
	if slices.Contains(p.Withheld, "") {
		return nil, fmt.Errorf("lease proposal withholds an empty node id")
	}
	next := cur.clone()
	next.leaseGen++
	next.withheld = slices.Compact(slices.Sorted(slices.Values(p.Withheld)))
	next.leases = make(map[string]map[string]Lease, len(p.Extras))
	for _, rule := range sortedKeys(cur.leases, p.Extras) {
		wishes := p.Extras[rule]
		nodes := sortedKeys(cur.leases[rule], wishes)
		held := make([]float64, len(nodes))
		live := make([][]Hold, len(nodes))
		reserved, increases := 0.0, 0.0
		for i, id := range nodes {
			old := cur.leases[rule][id].Release(p.Released[id][rule])
			live[i] = old.live(p.IssuedAt, p.Skew)
			held[i] = old.Reserved(p.IssuedAt, p.Skew)
			x := wishes[id]
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return nil, fmt.Errorf("rule %q node %q: extra %v", rule, id, x)
			}
			reserved += held[i]
			increases += max(0, x-held[i])
		}
		alpha := 1.0
		if increases > 0 && reserved+increases > leasePool {
			alpha = max(0, (leasePool-reserved)/increases)
		}
		entries := make(map[string]Lease, len(nodes))
		for i, id := range nodes {
			x := wishes[id]
			if x > held[i] {
				x = held[i] + alpha*(x-held[i])
			}
			l := Lease{Extra: x, IssuedAt: p.IssuedAt, Expires: p.IssuedAt + p.TTL, Gen: next.leaseGen}
			l.Holds = holdsBeside(Hold{Extra: l.Extra, Until: l.Expires}, live[i])
			if x == 0 && len(l.Holds) == 0 {
				continue // nothing granted, nothing reserved: the floor speaks
			}
			entries[id] = l
		}
		if len(entries) > 0 {
			next.leases[rule] = entries
		}
	}
	return next, nil
}

// sortedKeys returns the union of both maps' keys, sorted.
func sortedKeys[A, B any](a map[string]A, b map[string]B) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, dup := a[k]; !dup {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
