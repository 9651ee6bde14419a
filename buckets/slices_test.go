package buckets

import (
	"sync"
	"testing"
)

func TestSliceGiveNeverBeyondGrant(t *testing.T) {
	// A refund can land on a newer slice than the one it came from; the
	// settle of that slice must still hand back no more than it was granted.
	s := NewSlice(1, 5, 0, 100, 0, 0)
	if _, ok := s.Take(2, at(0)); !ok {
		t.Fatal("take 2 of 5 failed")
	}
	s.Give(10)
	if unused, ok := s.Close(); !ok || unused != 5 {
		t.Fatalf("Close after over-refund: unused %d (ok %v), want 5", unused, ok)
	}
	s.Give(1)
	if s.Left() != 0 {
		t.Fatalf("refund into a closed slice revived it: %d left", s.Left())
	}
}

func TestSliceTakeStopsAtDeadlineAndEmpty(t *testing.T) {
	s := NewSlice(1, 3, 0, 100, 0, 0)
	if left, ok := s.Take(3, at(99)); !ok || left != 0 {
		t.Fatalf("take all before the deadline: left %d ok %v", left, ok)
	}
	if _, ok := s.Take(1, at(99)); ok {
		t.Fatal("took from an empty slice")
	}
	s = NewSlice(1, 3, 0, 100, 0, 0)
	if _, ok := s.Take(1, at(100)); ok {
		t.Fatal("took at the deadline")
	}
}

func TestSliceConcurrentTakesNeverOverspend(t *testing.T) {
	s := NewSlice(1, 1000, 0, 1<<62, 0, 0)
	var taken sync.Map
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for {
				if _, ok := s.Take(1, at(0)); !ok {
					break
				}
				n++
			}
			taken.Store(g, n)
		})
	}
	wg.Wait()
	total := 0
	taken.Range(func(_, v any) bool { total += v.(int); return true })
	if total != 1000 {
		t.Fatalf("%d tokens taken from a slice of 1000", total)
	}
}

func TestWantSizeCoversQueuedWithinShare(t *testing.T) {
	e := &SliceEntry{}
	p := SizeParams{Cost: 1, Burst: 100, Rate: 10, TTL: 250e6, Nodes: 4, Now: 1e9}
	if got := e.WantSize(p); got != 1 {
		t.Fatalf("new key, nothing queued: want %d, want 1", got)
	}
	e.queued.Store(10)
	if got := e.WantSize(p); got != 11 {
		t.Fatalf("new key, 10 queued: want %d, want 11", got)
	}
	e.queued.Store(1000)
	if got := e.WantSize(p); got != 25 {
		t.Fatalf("1000 queued, 4 nodes, burst 100: want %d, want the 25 share", got)
	}
	p.Cost = 60
	if got := e.WantSize(p); got != 60 {
		t.Fatalf("cost above the share: want %d, want the cost", got)
	}
}

func TestRetireFeedsDemandEvenAfterSweeperClosed(t *testing.T) {
	e := &SliceEntry{}
	s := NewSlice(7, 100, 0, 250e6, 0, 0)
	e.Install(s, 0)
	s.Take(50, at(1))
	s.Close() // the sweeper got there first
	if id, _, _ := e.Retire(500e6); id != 0 {
		t.Fatalf("Retire of a slice the sweeper settled returned grant %d, want nothing to settle", id)
	}
	// 50 tokens over 0.5 s.
	if e.demand != 100 {
		t.Fatalf("demand %v tokens/s, want 100", e.demand)
	}
}

func TestExpireSettlesOnlySlicesWithTokensLeft(t *testing.T) {
	tab := NewSliceTable()
	spent := tab.Entry([]byte("spent"), "r", "spent")
	spent.Install(NewSlice(1, 2, 0, 10, 0, 0), 0)
	spent.Current().Take(2, at(1))
	left := tab.Entry([]byte("left"), "r", "left")
	left.Install(NewSlice(2, 5, 0, 10, 0, 0), 0)
	left.Current().Take(1, at(1))
	live := tab.Entry([]byte("live"), "r", "live")
	live.Install(NewSlice(3, 5, 0, 1000, 0, 0), 0)

	settled := map[string]int64{}
	tab.Expire(20, 0, nil, func(e *SliceEntry, s *Slice, unused int64) { settled[e.Key] = unused })
	if len(settled) != 1 || settled["left"] != 4 {
		t.Fatalf("settled %v, want only left with 4 unused", settled)
	}
	tab.Close(func(e *SliceEntry, s *Slice, unused int64) { settled[e.Key] = unused })
	if len(settled) != 2 || settled["live"] != 5 {
		t.Fatalf("after Close settled %v, want live's 5 too", settled)
	}
}

// at is a clock stopped at t.
func at(t int64) func() int64 { return func() int64 { return t } }
