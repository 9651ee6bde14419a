package hitters

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Windows a rule can be asked about.
const (
	Short = 10 * time.Second
	Long  = time.Minute
)

// ringSeconds holds Long's whole seconds plus the one being recorded.
const ringSeconds = int(Long/time.Second) + 1

// Sides of a decision, each summarized on its own: a key heavy in denials
// must be listed even when admitted traffic is far heavier.
const (
	sideAdmitted = iota
	sideDenied
	numSides
)

// Rule is one rule's recent heavy hitters. The zero value is ready; its
// memory (990 KB) is allocated on the first Record, so rules that never
// decide cost nothing.
type Rule struct {
	ring atomic.Pointer[ring]
	init sync.Mutex // guards allocating ring
}

// ring is a second's summaries by second modulo ringSeconds.
type ring [ringSeconds][numSides]secondSide

// secondSide is one side's summary of one second. Each has its own lock, so
// admitted and denied decisions, and different seconds, never contend.
type secondSide struct {
	mu  sync.Mutex
	sec int64 // which second (now / 1s) ss counts
	ss  spaceSaving
}

var seed = maphash.MakeSeed()

// Record counts cost for key, admitted or denied, at monotonic time now
// (nanoseconds). It does not allocate after the rule's first Record.
func (r *Rule) Record(key string, cost int64, denied bool, now int64) {
	side := sideAdmitted
	if denied {
		side = sideDenied
	}
	kept, cut := cutKey(key)
	hash := maphash.String(seed, kept)
	s := r.lockSecond(now, side)
	s.ss.add(kept, cut, hash, cost)
	s.mu.Unlock()
}

// Rec is one decision for RecordAll.
type Rec struct {
	Key    string
	Cost   int64
	Denied bool
}

// recordChunk is how many records RecordAll adds per lock: enough to make
// the lock's cost vanish per record, few enough that a Record waiting on
// the same summary waits about a microsecond.
const recordChunk = 64

// RecordAll records recs, all decided at now (a batch decided on one clock
// reading), taking each side's lock once per recordChunk records instead
// of once per record. It does not allocate after the rule's first record.
func (r *Rule) RecordAll(recs []Rec, now int64) {
	for chunk := range slices.Chunk(recs, recordChunk) {
		// Both sides, always admitted first, so two batches never wait on
		// each other's second lock.
		admitted, denied := r.lockSecond(now, sideAdmitted), r.lockSecond(now, sideDenied)
		for i := range chunk {
			s := admitted
			if chunk[i].Denied {
				s = denied
			}
			kept, cut := cutKey(chunk[i].Key)
			s.ss.add(kept, cut, maphash.String(seed, kept), chunk[i].Cost)
		}
		denied.mu.Unlock()
		admitted.mu.Unlock()
	}
}

// lockSecond locks and returns side's summary of now's second, emptied
// first if it still holds an older second. A reading older than the second
// the slot holds (a batch decided on one clock reading) counts in the
// slot's second.
func (r *Rule) lockSecond(now int64, side int) *secondSide {
	rg := r.ring.Load()
	if rg == nil {
		rg = r.allocate()
	}
	sec := now / int64(time.Second)
	s := &rg[sec%int64(ringSeconds)][side]
	s.mu.Lock()
	if sec > s.sec {
		s.ss.reset()
		s.sec = sec
	}
	return s
}

func (r *Rule) allocate() *ring {
	r.init.Lock()
	defer r.init.Unlock()
	if rg := r.ring.Load(); rg != nil {
		return rg
	}
	rg := new(ring)
	for i := range rg {
		for j := range rg[i] {
			rg[i][j].sec = -1
		}
	}
	r.ring.Store(rg)
	return rg
}

// Window merges the rule's summaries of the whole seconds in the last
// window (Short or Long, or any whole number of seconds up to Long) before
// now's second: the second being recorded is left out, so a window always
// spans exactly its length.
func (r *Rule) Window(now int64, window time.Duration) (admitted, denied Summary) {
	rg := r.ring.Load()
	n := min(int64(window/time.Second), int64(ringSeconds-1))
	cur := now / int64(time.Second)
	var m [numSides]merger
	for sec := max(cur-n, 0); sec < cur && rg != nil; sec++ {
		for side := range numSides {
			s := &rg[sec%int64(ringSeconds)][side]
			s.mu.Lock()
			if s.sec == sec {
				m[side].addSummary(&s.ss)
			}
			s.mu.Unlock()
		}
	}
	return m[sideAdmitted].result(), m[sideDenied].result()
}
