package buckets

import (
	"math"
	"sync/atomic"
)

// evicted is the TAT Sweep stores in an entry it is removing; a real TAT is
// never this small because `now` is never math.MinInt64.
const evicted = math.MinInt64

// neverSwept is the floor before any Sweep: older than any `now`, and not
// evicted, so that a new entry may start from it.
const neverSwept = evicted + 1

// entry is one bucket: its whole state is the GCRA theoretical arrival time.
type entry struct {
	tat atomic.Int64
}

// Table is a concurrent map from key to GCRA token bucket. Each call passes
// the bucket's Limit, so a rule change applies to existing buckets at once.
type Table struct {
	entries *keyMap[*entry]
	// sweptUpTo is the latest `now` given to Sweep, raised before Sweep
	// evicts anything. A bucket absent from the table is full as of
	// sweptUpTo, which may be later than a racing caller's `now`.
	sweptUpTo atomic.Int64
	// emptiedAt is the latest time given to Empty (neverSwept if none):
	// every bucket holds at most what it refilled since then.
	emptiedAt atomic.Int64
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{entries: newKeyMap[*entry]()}
	t.sweptUpTo.Store(neverSwept)
	t.emptiedAt.Store(neverSwept)
	return t
}

// Empty makes every bucket, present or not, empty as of at: from then on a
// bucket holds only what it refilled since at (or less). Fallback mode
// empties its table when it starts, so that switching into fallback adds no
// burst on top of what the global bucket already allowed.
func (t *Table) Empty(at int64) {
	for old := t.emptiedAt.Load(); old < at && !t.emptiedAt.CompareAndSwap(old, at); {
		old = t.emptiedAt.Load()
	}
}

// minTAT is the smallest TAT any bucket of lim may have: that of a bucket
// emptied at emptiedAt.
func (t *Table) minTAT(lim Limit) int64 {
	at := t.emptiedAt.Load()
	if at == neverSwept {
		return at
	}
	return at + lim.span(lim.Burst)
}

// newEntry makes the bucket of a key that is absent from the table. It runs
// under the keyMap shard lock after any Sweep that evicted the key, so it
// reads that Sweep's floor.
func (t *Table) newEntry() *entry {
	e := new(entry)
	e.tat.Store(t.sweptUpTo.Load())
	return e
}

// Take takes cost tokens (cost >= 1) from key's bucket if they are all
// available; a denied Take leaves the bucket as it was. A cost above lim.Burst is denied
// with TooCostly; a cost below 1 takes nothing and answers like Peek. Only
// the first Take of a key (or of a key evicted since) allocates.
func (t *Table) Take(key []byte, lim Limit, cost int64, now int64) Outcome {
	if cost > lim.Burst {
		out := t.Peek(key, lim, now)
		return Outcome{Remaining: out.Remaining, Reset: out.Reset, TooCostly: true}
	}
	if cost < 1 {
		return t.Peek(key, lim, now)
	}
	e, _ := t.entries.LoadOrStore(key, t.newEntry)
	floor := t.minTAT(lim)
	for {
		if out, live := e.take(lim, cost, now, floor); live {
			return out
		}
		// A Sweep evicted the entry under us: wait for it to remove the
		// entry, then start from a new one.
		e, _ = t.entries.LoadOrStoreLocked(key, t.newEntry)
	}
}

// take runs the CAS loop on a live entry, reading its TAT as at least
// floor; live is false if it was evicted.
func (e *entry) take(lim Limit, cost, now, floor int64) (out Outcome, live bool) {
	for {
		old := e.tat.Load()
		if old == evicted {
			return Outcome{}, false
		}
		out, tat := lim.take(max(old, floor), cost, now)
		if !out.Allowed || e.tat.CompareAndSwap(old, tat) {
			return out, true
		}
	}
}

// Refund gives back cost tokens taken from key's bucket by an earlier Take,
// e.g. when another rule denied the request. It never fills the bucket
// beyond full, so refunding after the tokens have refilled is harmless.
func (t *Table) Refund(key []byte, lim Limit, cost int64, now int64) {
	if cost < 1 {
		return
	}
	e, ok := t.entries.Load(key)
	if !ok {
		return // absent buckets are full
	}
	give := lim.span(cost)
	floor := t.minTAT(lim)
	for {
		old := e.tat.Load()
		if old == evicted {
			return // full
		}
		cur := max(old, floor)
		if cur <= now { // full
			return
		}
		if e.tat.CompareAndSwap(old, max(cur-give, now)) {
			return
		}
	}
}

// Peek reports key's bucket without taking from it (cost 0, Allowed true).
func (t *Table) Peek(key []byte, lim Limit, now int64) Outcome {
	window := lim.span(lim.Burst)
	floor := t.minTAT(lim)
	if e, ok := t.entries.Load(key); ok {
		if tat := e.tat.Load(); tat != evicted {
			return lim.state(max(tat, floor), now, window)
		}
	}
	// Absent or just evicted, the bucket is full as of the latest Sweep.
	return lim.state(max(t.sweptUpTo.Load(), floor), now, window)
}

// Sweep evicts every bucket that is full at now (TAT <= now) and returns how
// many it evicted. Evicting a full bucket changes no later decision, so Sweep
// may run at any time, concurrently with Take, Refund and Peek.
func (t *Table) Sweep(now int64) int {
	// Raise the floor first: whoever then finds a bucket evicted or absent
	// reads a floor of at least now.
	for floor := t.sweptUpTo.Load(); floor < now && !t.sweptUpTo.CompareAndSwap(floor, now); {
		floor = t.sweptUpTo.Load()
	}
	return t.entries.Sweep(func(_ string, e *entry) bool {
		// The CAS fails only if a concurrent Take or Refund moved the TAT;
		// that bucket then waits for a later Sweep.
		tat := e.tat.Load()
		return tat <= now && e.tat.CompareAndSwap(tat, evicted)
	})
}

// Keys returns up to limit keys of held buckets that start with prefix, and
// whether more were left out.
func (t *Table) Keys(prefix string, limit int) ([]string, bool) { return t.entries.Keys(prefix, limit) }

// Len returns the number of buckets currently held.
func (t *Table) Len() int {
	return t.entries.Len()
}
