package node

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/fsm"
)

// leaseFleet runs the leader's real allocation (allocateExtras) through the
// real FSM (fsm.SetLeases) for a simulated fleet, without raft or clocks.
type leaseFleet struct {
	f       *fsm.FSM
	index   uint64
	rules   []string
	members []string
	next    int // id of the next member to join
}

const (
	simTTL  = int64(10 * time.Second)
	simSkew = int64(500 * time.Millisecond)
)

func newLeaseFleet(members, rules int) *leaseFleet {
	lf := &leaseFleet{f: fsm.New(nil)}
	for i := range rules {
		lf.rules = append(lf.rules, fmt.Sprintf("r%04d", i))
	}
	for range members {
		lf.join()
	}
	return lf
}

func (lf *leaseFleet) apply(cmd []byte) {
	lf.index++
	lf.f.Apply(&raft.Log{Index: lf.index, Term: 1, Type: raft.LogCommand, Data: cmd})
}

func (lf *leaseFleet) join() {
	id := fmt.Sprintf("m%03d", lf.next)
	lf.next++
	lf.members = append(lf.members, id)
	lf.apply(fsm.EncodeUpsertMember(fsm.Member{ID: id}))
}

func (lf *leaseFleet) leave(id string) {
	lf.members = slices.DeleteFunc(lf.members, func(m string) bool { return m == id })
	lf.apply(fsm.EncodeRemoveMember(id))
}

// allocate proposes leases from demand at time at, as Node.allocate does.
func (lf *leaseFleet) allocate(at int64, demand map[string]map[string]float64) {
	lf.apply(fsm.EncodeSetLeases(fsm.LeaseProposal{
		IssuedAt: at, TTL: simTTL, Skew: simSkew,
		Extras: allocateExtras(lf.rules, lf.members, demand),
	}))
}

// committed is the most rule's shares may add up to at time t: every
// current member's floor plus the largest extra any node (a departed one
// too) may still be using by a clock within the skew.
func (lf *leaseFleet) committed(rule string, t int64) float64 {
	sum := fsm.FloorShare(len(lf.members)) * float64(len(lf.members))
	for _, l := range lf.f.State().Leases()[rule] {
		sum += l.Reserved(t, simSkew)
	}
	return sum
}

// share is what node may admit of rule at t: its floor plus its current
// extra while valid.
func (lf *leaseFleet) share(rule, node string, t int64) float64 {
	share := fsm.FloorShare(len(lf.members))
	if l, ok := lf.f.State().Leases()[rule][node]; ok && l.Expires-simSkew > t {
		share += l.Extra
	}
	return share
}

// skewedDemand gives each rule a hot set of five members carrying 80% of
// its demand and spreads the rest over ten others, so the fleet's demand
// equals the limit (1) and sits on a few nodes, as behind a sticky load
// balancer. shift moves the hot sets.
func skewedDemand(rules, members []string, shift int) map[string]map[string]float64 {
	demand := map[string]map[string]float64{}
	for k, rule := range rules {
		for j := range 15 {
			node := members[(k*7+shift*3+j)%len(members)]
			rate := 0.2 / 10
			if j < 5 {
				rate = 0.8 / 5
			}
			if demand[node] == nil {
				demand[node] = map[string]float64{}
			}
			demand[node][rule] += rate
		}
	}
	return demand
}

// TestLeasesAtFleetSize runs the real allocator for 50 members and 1,000
// rules through demand shifts and members joining and leaving: the shares
// that may be in use never add up to more than the limit, and once demand
// has held still for a lease lifetime the members admit at least 90% of
// what is asked of them (the floors of idle members are the loss).
func TestLeasesAtFleetSize(t *testing.T) {
	const members, rules, rounds = 50, 1000, 14
	period := simTTL / allocationsPerTTL
	settle := int((simTTL+simSkew)/period) + 1
	lf := newLeaseFleet(members, rules)
	rng := rand.New(rand.NewPCG(16, 50))
	now := int64(1_700_000_000) * int64(time.Second)
	shift, stillSince, checked := 0, 0, 0
	minUtil := 1.0
	for round := range rounds {
		if round > 0 && round%5 == 0 { // churn: demand moves, one member leaves, one joins
			shift++
			stillSince = round
			lf.leave(lf.members[rng.IntN(len(lf.members))])
			lf.join()
		}
		demand := skewedDemand(lf.rules, lf.members, shift)
		lf.allocate(now, demand)
		for _, at := range []int64{now, now + period/2, now + period - 1} {
			for _, rule := range lf.rules {
				if c := lf.committed(rule, at); c > 1+1e-9 {
					t.Fatalf("round %d: rule %s: shares that may be in use add up to %v > 1", round, rule, c)
				}
			}
		}
		if round-stillSince >= settle {
			checked++
			for _, rule := range lf.rules {
				admitted := 0.0
				for node, rates := range demand {
					admitted += min(rates[rule], lf.share(rule, node, now))
				}
				if admitted < 0.9 {
					t.Fatalf("round %d: rule %s: members admit %.3f of a demand equal to the limit, want >= 0.9", round, rule, admitted)
				}
				minUtil = min(minUtil, admitted)
			}
		}
		now += period
	}
	if checked == 0 {
		t.Fatal("no round had settled demand; the utilisation check never ran")
	}
	t.Logf("%d members, %d rules: Σ shares ≤ 1 in every round; lowest utilisation after settling %.3f (%d rounds checked)",
		members, rules, minUtil, checked)
}

// BenchmarkLeaseAllocation: one allocation round (the leader's wish and
// the FSM applying it) for 100 rules, by fleet size.
func BenchmarkLeaseAllocation(b *testing.B) {
	for _, members := range []int{3, 9, 50} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			lf := newLeaseFleet(members, 100)
			demand := skewedDemand(lf.rules, lf.members, 0)
			now := int64(1_700_000_000) * int64(time.Second)
			b.ReportAllocs()
			for b.Loop() {
				now += simTTL / allocationsPerTTL
				lf.allocate(now, demand)
			}
		})
	}
}
