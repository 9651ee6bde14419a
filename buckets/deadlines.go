package buckets

import (
	"math"
	"sync"
)

// deadlineIndex finds the slices due a look before a time without visiting
// every key: a hashed timing wheel of installed slices by the time to look
// at them (their deadline, or sooner when they may run low first), so the
// sweeper's cost follows what is due, not how many keys are warm. Slices
// are added on install (a refill, never a take) and dropped once a visit
// finds them over or replaced. A slot holds the times of one window from
// every turn of the wheel; a visit keeps those not yet due.
type deadlineIndex struct {
	slots [indexSlots]indexSlot
	// next is the first absolute slot the sweeper has not closed; only the
	// sweeper reads and writes it.
	next int64
	// late holds slices added after their slot was closed: a deadline
	// already past when installed (a late answer), or an install racing the
	// sweep. The next visit takes them all.
	lateMu sync.Mutex
	late   []indexed
}

// indexSlotShift sets a slot's window (2^27 ns, about 134 ms) and
// indexSlots the wheel's size: one turn spans about 9 minutes, longer
// than a roomy slice lives, so most slices are visited once, when due.
const (
	indexSlotShift = 27
	indexSlots     = 4096
)

type indexSlot struct {
	mu    sync.Mutex
	items []indexed
	// closed is the last absolute slot at this position whose window the
	// sweeper has passed: a slice added to it afterwards goes to late.
	closed int64
}

// indexed is one installed slice and when to look at it; it is stale once
// its entry holds another.
type indexed struct {
	e  *SliceEntry
	s  *Slice
	at int64
}

func newDeadlineIndex() *deadlineIndex {
	x := &deadlineIndex{}
	for i := range x.slots {
		x.slots[i].closed = math.MinInt64
	}
	return x
}

// add files it under it.at.
func (x *deadlineIndex) add(it indexed) {
	k := it.at >> indexSlotShift
	sl := &x.slots[k&(indexSlots-1)]
	sl.mu.Lock()
	if sl.closed < k {
		sl.items = append(sl.items, it)
		sl.mu.Unlock()
		return
	}
	sl.mu.Unlock()
	x.lateMu.Lock()
	x.late = append(x.late, it)
	x.lateMu.Unlock()
}

// due calls visit for every slice to look at before until, and files each
// again under the time visit returns (0: drop it); now (≤ until) closes
// the slots whose windows it has passed. A sweeper that has not run for a
// whole turn visits every slot once.
func (x *deadlineIndex) due(now, until int64, visit func(it indexed) (again int64)) {
	nowSlot, last := now>>indexSlotShift, (until-1)>>indexSlotShift
	first := max(x.next, last-indexSlots+1)
	var refile []indexed // filed again after the loop, not to be visited twice
	for k := first; k <= last; k++ {
		sl := &x.slots[k&(indexSlots-1)]
		sl.mu.Lock()
		items := sl.items
		sl.items = nil
		if k < nowSlot {
			sl.closed = k
		}
		sl.mu.Unlock()
		kept := items[:0]
		for _, it := range items {
			if it.at < until {
				again := visit(it)
				if again == 0 {
					continue
				}
				// Never behind the sweeper: its slot would not come round
				// again for a whole turn.
				if it.at = max(again, now); it.at>>indexSlotShift != k {
					refile = append(refile, it)
					continue
				}
			}
			kept = append(kept, it)
		}
		clear(items[len(kept):])
		if len(kept) > 0 {
			sl.mu.Lock()
			sl.items = append(sl.items, kept...)
			sl.mu.Unlock()
		}
	}
	x.next = max(x.next, nowSlot)
	for _, it := range refile {
		x.add(it)
	}
	// Late slices last: one kept goes back to a slot this call has visited.
	x.lateMu.Lock()
	late := x.late
	x.late = nil
	x.lateMu.Unlock()
	for _, it := range late {
		if it.at < until {
			if it.at = visit(it); it.at != 0 {
				it.at = max(it.at, now)
			}
		}
		if it.at != 0 {
			x.add(it)
		}
	}
}
