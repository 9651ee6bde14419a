package fsm

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// A node that reports it moved on to a later, smaller entry releases what
// its earlier entry reserved: the share reaches another node at once
// instead of when the old entry expires.
func TestSetLeasesHandsOverAReleasedShareAtOnce(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"a": 0.6, "b": 0.3}})
	first := f.State().Leases()["r"]["a"].Gen
	second := t0 + int64(time.Second)
	propose(f, second, map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}})
	shrunk := f.State().Leases()["r"]["a"].Gen
	if shrunk <= first || f.State().LeaseGen() != shrunk {
		t.Fatalf("generations %d then %d (state %d), want growing", first, shrunk, f.State().LeaseGen())
	}
	if b := extra(t, f, "r", "b"); !near(b, 0.3) {
		t.Fatalf("b's extra while a may still use 0.6 = %v, want 0.3", b)
	}
	// a released only what came before the entry it uses: still held.
	apply(f, EncodeSetLeases(LeaseProposal{IssuedAt: second + 1, TTL: testTTL, Skew: testSkew,
		Extras: map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}}, Released: map[string]map[string]uint64{"a": {"r": first}}}))
	if b := extra(t, f, "r", "b"); !near(b, 0.3) {
		t.Fatalf("b's extra with a's first entry released as of itself = %v, want 0.3", b)
	}
	// a uses the shrunk entry: the first one is free.
	apply(f, EncodeSetLeases(LeaseProposal{IssuedAt: second + 2, TTL: testTTL, Skew: testSkew,
		Extras: map[string]map[string]float64{"r": {"a": 0.1, "b": 0.8}}, Released: map[string]map[string]uint64{"a": {"r": shrunk}}}))
	if b := extra(t, f, "r", "b"); !near(b, 0.8) {
		t.Fatalf("b's extra once a released its 0.6 = %v, want 0.8", b)
	}
	// The entry a uses is still reserved: b cannot also take a's 0.1.
	apply(f, EncodeSetLeases(LeaseProposal{IssuedAt: second + 3, TTL: testTTL, Skew: testSkew,
		Extras: map[string]map[string]float64{"r": {"a": 0, "b": 1}}, Released: map[string]map[string]uint64{"a": {"r": shrunk}}}))
	if a, b := f.State().Leases()["r"]["a"].Reserved(second+3, testSkew), extra(t, f, "r", "b"); !near(a, 0.1) || a+b > 1-LeaseFloorFraction+1e-9 {
		t.Fatalf("a reserves %v and b got %v, want a's 0.1 kept and the sum within the pool", a, b)
	}
}

func TestLeaseGenerationSurvivesSnapshots(t *testing.T) {
	f := New(nil)
	propose(f, t0, map[string]map[string]float64{"r": {"a": 0.5}})
	propose(f, t0+1, map[string]map[string]float64{"r": {"a": 0.2}})
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(persist(t, f)))); err != nil {
		t.Fatal(err)
	}
	if g.State().LeaseGen() != 2 || g.State().Leases()["r"]["a"].Holds[0].Gen != 1 {
		t.Fatalf("restored generation %d, holds %+v; want 2 and a hold of generation 1", g.State().LeaseGen(), g.State().Leases()["r"]["a"].Holds)
	}
}
