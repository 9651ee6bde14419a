package hitters

import (
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

// pastSeconds is how many closed seconds a rule keeps: Long's.
const pastSeconds = int(Long / time.Second)

// Sides of a decision, each summarized on its own: a key heavy in denials
// must be listed even when admitted traffic is far heavier.
const (
	sideAdmitted = iota
	sideDenied
	numSides
)

// Rule is one rule's recent heavy hitters. The zero value is ready; its
// memory (670 KB) is allocated on the first Record, so rules that never
// decide cost nothing.
type Rule struct {
	ring atomic.Pointer[ring]
	init sync.Mutex // guards allocating ring
}

// ring is, per side, the summary of the second being recorded and the
// closed summaries of the seconds before it, by second modulo pastSeconds.
type ring struct {
	open [numSides]openSecond
	past [pastSeconds][numSides]pastSecond
}

// openSecond is the summary one side records into: a second's, until a
// record of a later second closes it into the past. Each side has its own
// lock, so admitted and denied decisions never contend.
type openSecond struct {
	mu  sync.Mutex
	sec int64 // which second (now / 1s) ss counts; -1 before any record
	ss  spaceSaving
}

// pastSecond is a closed second of one side, locked on its own so that
// reading a window never holds up recording for long.
type pastSecond struct {
	mu sync.Mutex
	closed
}

// Record counts cost for key, admitted or denied, at monotonic time now
// (nanoseconds). It does not allocate after the rule's first Record.
func (r *Rule) Record(key string, cost int64, denied bool, now int64) {
	side := sideAdmitted
	if denied {
		side = sideDenied
	}
	kept, cut := cutKey(key)
	hash := hashKey(kept)
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
			s.ss.add(kept, cut, hashKey(kept), chunk[i].Cost)
		}
		denied.mu.Unlock()
		admitted.mu.Unlock()
	}
}

// lockSecond locks and returns side's open summary, first closing the
// second it holds into the past if now is in a later one. A reading older
// than the open second (a batch decided on one clock reading) counts in
// the open second.
func (r *Rule) lockSecond(now int64, side int) *openSecond {
	rg := r.ring.Load()
	if rg == nil {
		rg = r.allocate()
	}
	s := &rg.open[side]
	s.mu.Lock()
	if sec := now / int64(time.Second); sec > s.sec {
		rg.closeSecond(s, side, sec)
	}
	return s
}

// closeSecond moves the second s (locked) holds into the past and opens s
// for second sec.
func (rg *ring) closeSecond(s *openSecond, side int, sec int64) {
	if s.sec >= 0 {
		p := &rg.past[s.sec%int64(pastSeconds)][side]
		p.mu.Lock()
		s.ss.close(s.sec, &p.closed)
		p.mu.Unlock()
	}
	s.ss.reset()
	s.sec = sec
}

func (r *Rule) allocate() *ring {
	r.init.Lock()
	defer r.init.Unlock()
	if rg := r.ring.Load(); rg != nil {
		return rg
	}
	rg := new(ring)
	for side := range numSides {
		rg.open[side].sec = -1
		for i := range rg.past {
			rg.past[i][side].sec = -1
		}
	}
	r.ring.Store(rg)
	return rg
}

// Window merges the rule's summaries of the whole seconds in the last
// window (Short or Long, or any whole number of seconds up to Long) before
// now's second: the second being recorded is left out, so a window always
// spans exactly its length. An open second that has ended (no record has
// closed it yet) is read where it is.
func (r *Rule) Window(now int64, window time.Duration) (admitted, denied Summary) {
	rg := r.ring.Load()
	n := min(int64(window/time.Second), int64(pastSeconds))
	cur := now / int64(time.Second)
	from := max(cur-n, 0)
	var m [numSides]merger
	for side := range numSides {
		if rg == nil {
			break
		}
		var ended closed // the open second, if it is in the window
		s := &rg.open[side]
		s.mu.Lock()
		if s.sec >= from && s.sec < cur {
			s.ss.close(s.sec, &ended)
		} else {
			ended.sec = -1
		}
		s.mu.Unlock()
		if ended.sec >= 0 {
			m[side].addClosed(&ended)
		}
		for sec := from; sec < cur; sec++ {
			if sec == ended.sec {
				continue // closed into the past since: counted above
			}
			p := &rg.past[sec%int64(pastSeconds)][side]
			p.mu.Lock()
			if p.sec == sec {
				m[side].addClosed(&p.closed)
			}
			p.mu.Unlock()
		}
	}
	return m[sideAdmitted].result(), m[sideDenied].result()
}
