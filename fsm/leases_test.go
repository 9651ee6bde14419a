package fsm

import (
	"bytes"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

const (
	testTTL  = int64(3 * time.Second)
	testSkew = int64(500 * time.Millisecond)
	t0       = int64(1_700_000_000) * int64(time.Second)
)

func propose(f *FSM, at int64, extras map[string]map[string]float64) {
	apply(f, EncodeSetLeases(LeaseProposal{IssuedAt: at, TTL: testTTL, Skew: testSkew, Extras: extras}))
}

func extra(t *testing.T, f *FSM, rule, node string) float64 {
	t.Helper()
	return f.State().Leases()[rule][node].Extra
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

func TestSetLeasesGrantsWishesThatFit(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"a": 0.6, "b": 0.2, "c": 0.1}})
	for node, want := range map[string]float64{"a": 0.6, "b": 0.2, "c": 0.1} {
		if got := extra(t, f, "r", node); !near(got, want) {
			t.Fatalf("extra of %s = %v, want %v", node, got, want)
		}
	}
	l := f.State().Leases()["r"]["a"]
	if l.IssuedAt != t0 || l.Expires != t0+testTTL || len(l.Holds) != 0 {
		t.Fatalf("entry = %+v", l)
	}
}

func TestSetLeasesScalesWishesDownToThePool(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"a": 1, "b": 1}})
	a, b := extra(t, f, "r", "a"), extra(t, f, "r", "b")
	if !near(a, b) || a+b > 1-LeaseFloorFraction {
		t.Fatalf("extras = %v + %v, want equal and summing to at most %v", a, b, 1-LeaseFloorFraction)
	}
	if !near(a+b, 1-LeaseFloorFraction) {
		t.Fatalf("extras = %v + %v, want the whole pool handed out", a, b)
	}
}

// A share taken from a only reaches b once a's old entry has expired (plus
// skew), even though the leader asks for the move at once.
func TestSetLeasesDelaysHandOverUntilExpiry(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"a": 0.6, "b": 0.3}})
	second := t0 + int64(time.Second)
	propose(f, second, map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}})
	if a := extra(t, f, "r", "a"); !near(a, 0.1) {
		t.Fatalf("a's extra after shrinking = %v, want 0.1 at once", a)
	}
	if b := extra(t, f, "r", "b"); !near(b, 0.3) {
		t.Fatalf("b's extra while a may still use 0.6 = %v, want it kept at 0.3", b)
	}
	l := f.State().Leases()["r"]["a"]
	if len(l.Holds) != 1 || !near(l.Holds[0].Extra, 0.6) || l.Holds[0].Until != t0+testTTL {
		t.Fatalf("a's entry = %+v, want 0.6 held until the first expiry", l)
	}
	// Still inside the first entry's expiry + skew: no move yet.
	propose(f, t0+testTTL+testSkew-1, map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}})
	if b := extra(t, f, "r", "b"); !near(b, 0.3) {
		t.Fatalf("b's extra one ns before a's old lease is dead = %v, want 0.3", b)
	}
	propose(f, t0+testTTL+testSkew, map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}})
	if b := extra(t, f, "r", "b"); !near(b, 0.8) {
		t.Fatalf("b's extra after a's old lease expired = %v, want 0.8", b)
	}
	if l := f.State().Leases()["r"]["a"]; len(l.Holds) != 0 {
		t.Fatalf("a still holds %v after its old entry expired", l.Holds)
	}
}

func TestSetLeasesKeepsUnlistedNodesReservedUntilExpiry(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"gone": 0.8}})
	propose(f, t0+int64(time.Second), map[string]map[string]float64{"r": {"new": 0.9}})
	if e := extra(t, f, "r", "new"); e > 1-LeaseFloorFraction-0.8+1e-9 {
		t.Fatalf("new node got %v while the removed node may still use 0.8", e)
	}
	if l, ok := f.State().Leases()["r"]["gone"]; !ok || l.Extra != 0 || l.Reserved(t0+testTTL, testSkew) != 0.8 {
		t.Fatalf("removed node's entry = %+v, %v; want extra 0 holding 0.8", l, ok)
	}
	propose(f, t0+testTTL+testSkew, map[string]map[string]float64{"r": {"new": 0.9}})
	if _, ok := f.State().Leases()["r"]["gone"]; ok {
		t.Fatal("an entry with nothing granted or held was kept")
	}
	if e := extra(t, f, "r", "new"); !near(e, 0.9) {
		t.Fatalf("new node's extra after expiry = %v, want 0.9", e)
	}
	propose(f, t0+2*testTTL, map[string]map[string]float64{})
	propose(f, t0+4*testTTL, map[string]map[string]float64{})
	if len(f.State().Leases()) != 0 {
		t.Fatalf("rules no longer proposed linger: %v", f.State().Leases())
	}
}

// history is every entry ever granted per (rule, node): what a node might
// be using, whatever the FSM's own bookkeeping says.
type history map[string][]Lease

// inUse sums, over nodes, the largest extra any of their entries could still
// grant at true time t. Every clock is within testSkew of true time and a
// node stops using an entry when its clock reads Expires − testSkew, so at
// the latest at true time Expires.
func (h history) inUse(t int64) float64 {
	sum := 0.0
	for _, entries := range h {
		m := 0.0
		for _, l := range entries {
			if l.Expires > t {
				m = max(m, l.Extra)
			}
		}
		sum += m
	}
	return sum
}

// Random wishes from leaders whose clocks are each off true time by up to
// the skew never let the extras that may be in use exceed the pool, at any
// true time.
func TestSetLeasesNeverOverCommits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"a", "b", "c", "d"}
	for round := range 50 {
		f := New(nil)
		h := history{}
		now := t0
		for range 40 {
			now += rng.Int64N(testTTL / 2)
			issued := now + rng.Int64N(2*testSkew) - testSkew // this leader's clock
			wishes := map[string]float64{}
			for _, n := range nodes {
				if rng.IntN(4) > 0 {
					wishes[n] = rng.Float64()
				}
			}
			propose(f, issued, map[string]map[string]float64{"r": wishes})
			for id, l := range f.State().Leases()["r"] {
				h[id] = append(h[id], l)
			}
			for _, at := range []int64{now, now + testTTL/3, now + testTTL} {
				if used := h.inUse(at); used > 1-LeaseFloorFraction+1e-9 {
					t.Fatalf("round %d: extras in use at %d = %v > %v", round, at-t0, used, 1-LeaseFloorFraction)
				}
			}
		}
	}
}

func TestSetLeasesHookAndSnapshot(t *testing.T) {
	var seen []*State
	f := New(nil, WithLeasesHook(func(s *State) { seen = append(seen, s) }))
	propose(f, t0, map[string]map[string]float64{"r": {"a": 0.5}})
	apply(f, EncodeUpsertMember(Member{ID: "a"}))
	if len(seen) != 1 || seen[0].Leases()["r"]["a"].Extra != 0.5 {
		t.Fatalf("hook saw %d states, want 1 (only SetLeases) with a's lease", len(seen))
	}
	data := persist(t, f)
	var restored []*State
	dst := New(nil, WithLeasesHook(func(s *State) { restored = append(restored, s) }))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := dst.State().Leases()["r"]["a"]; !reflect.DeepEqual(got, f.State().Leases()["r"]["a"]) {
		t.Fatalf("restored lease = %+v, want %+v", got, f.State().Leases()["r"]["a"])
	}
	if len(restored) != 1 || restored[0] != dst.State() {
		t.Fatalf("restore told the hook %d times, want once with the restored state", len(restored))
	}
}

func TestSetLeasesRejectsCorruptProposals(t *testing.T) {
	cases := map[string]string{
		"not json":       `nope`,
		"no issue time":  `{"ttl_ns":1,"skew_ns":0,"extras":{}}`,
		"no ttl":         `{"issued_at":1,"skew_ns":0,"extras":{}}`,
		"negative skew":  `{"issued_at":1,"ttl_ns":1,"skew_ns":-1,"extras":{}}`,
		"negative extra": `{"issued_at":1,"ttl_ns":1,"skew_ns":0,"extras":{"r":{"a":-0.1}}}`,
		"empty withheld": `{"issued_at":1,"ttl_ns":1,"skew_ns":0,"extras":{},"withheld":[""]}`,
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			defer func() {
				if recover() == nil {
					t.Fatal("Apply did not panic")
				}
			}()
			apply(f, append([]byte{byte(CmdSetLeases)}, payload...))
		})
	}
}

// Withheld is replaced by every proposal, kept sorted and unique, survives
// a snapshot, and WithheldShare counts floor plus reservation of each
// withheld member but the caller, for as long as its entries may be in use.
func TestSetLeasesWithheld(t *testing.T) {
	f := New(nil)
	for _, id := range []string{"a", "b", "c"} {
		apply(f, EncodeUpsertMember(Member{ID: id}))
	}
	withhold := func(at int64, extras map[string]map[string]float64, ids ...string) {
		apply(f, EncodeSetLeases(LeaseProposal{IssuedAt: at, TTL: testTTL, Skew: testSkew, Extras: extras, Withheld: ids}))
	}
	withhold(t0, map[string]map[string]float64{"r": {"a": 0.5, "b": 0.2}}, "b", "a", "b", "gone")
	if got := f.State().Withheld(); !reflect.DeepEqual(got, []string{"a", "b", "gone"}) {
		t.Fatalf("Withheld() = %v, want [a b gone]", got)
	}
	floor := FloorShare(3)
	s := f.State()
	if got, want := s.WithheldShare("r", "c", floor, t0, testSkew), 2*floor+0.7; !near(got, want) {
		t.Fatalf("withheld from c = %v, want floors of a and b plus their extras %v", got, want)
	}
	if got, want := s.WithheldShare("r", "a", floor, t0, testSkew), floor+0.2; !near(got, want) {
		t.Fatalf("withheld from a = %v, want b's share %v (a never withholds itself)", got, want)
	}
	if got, want := s.WithheldShare("other", "c", floor, t0, testSkew), 2*floor; !near(got, want) {
		t.Fatalf("withheld of a rule without leases = %v, want the floors %v", got, want)
	}
	late := t0 + testTTL + testSkew
	if got, want := s.WithheldShare("r", "c", floor, late, testSkew), 2*floor; !near(got, want) {
		t.Fatalf("withheld once the entries expired = %v, want the floors %v", got, want)
	}

	data := persist(t, f)
	dst := New(nil)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := dst.State().Withheld(); !reflect.DeepEqual(got, f.State().Withheld()) {
		t.Fatalf("restored Withheld() = %v, want %v", got, f.State().Withheld())
	}

	withhold(t0+int64(time.Second), nil)
	if got := f.State().Withheld(); len(got) != 0 {
		t.Fatalf("Withheld() after a proposal withholding nobody = %v", got)
	}
	if got := f.State().WithheldShare("r", "c", floor, t0+int64(time.Second), testSkew); got != 0 {
		t.Fatalf("WithheldShare = %v after withholding nobody, want 0", got)
	}
}

func TestFloorShare(t *testing.T) {
	if FloorShare(0) != LeaseFloorFraction || !near(FloorShare(4)*4, LeaseFloorFraction) {
		t.Fatalf("FloorShare(0) = %v, FloorShare(4) = %v", FloorShare(0), FloorShare(4))
	}
}
