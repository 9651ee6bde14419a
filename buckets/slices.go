package buckets

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
)

// closed is what a Slice's token count becomes when it is closed; any value
// below zero means closed, and this one survives any refund added to it.
const closed = math.MinInt64 / 2

// Slice is one grant of tokens from the global (Redis) bucket, spent locally
// without further coordination until it runs out or its deadline passes.
// The deadline is the grant's send time plus the slice TTL on the node's
// monotonic clock, never later than Redis's own expiry for the grant (SPEC §8),
// so a slice is never spent after Redis has written its tokens off.
type Slice struct {
	left            atomic.Int64 // unspent tokens; < 0 once closed
	unusedAtClose   atomic.Int64 // what Close found left, for the demand estimate
	GrantID         int64
	Granted         int64
	IssuedAt        int64 // monotonic ns at which the grant was requested
	Deadline        int64 // monotonic ns from which the slice must not be spent
	GlobalRemaining int64 // whole tokens the global bucket held right after the grant
	Reset           int64 // ns from IssuedAt until the global bucket would be full
}

// NewSlice returns an open slice holding granted tokens.
func NewSlice(grantID, granted, issuedAt, deadline, globalRemaining, reset int64) *Slice {
	s := &Slice{GrantID: grantID, Granted: granted, IssuedAt: issuedAt, Deadline: deadline,
		GlobalRemaining: globalRemaining, Reset: reset}
	s.left.Store(granted)
	return s
}

// Take spends cost tokens if the slice is open and holds enough, and only
// if clock still reads before the deadline once the tokens are taken. The
// clock is read after the take, not before: a caller stalled between reading
// the time and spending (descheduled, or its process SIGSTOPped) can then
// never spend a slice that Redis has already written off. It returns the
// tokens left either way.
func (s *Slice) Take(cost int64, clock func() int64) (left int64, ok bool) {
	for {
		v := s.left.Load()
		if v < cost {
			return max(v, 0), false
		}
		if s.left.CompareAndSwap(v, v-cost) {
			if clock() >= s.Deadline {
				s.Give(cost)
				return 0, false
			}
			return v - cost, true
		}
	}
}

// Give returns tokens taken by an earlier Take (a request another rule
// denied). Tokens given to a closed slice are dropped: they were already
// settled as spent, which errs on the safe side. The slice never holds more
// than it was granted, so a refund that lands on a newer slice than the one
// it came from cannot make a settle hand back more than the grant.
func (s *Slice) Give(cost int64) {
	for {
		v := s.left.Load()
		if v < 0 || s.left.CompareAndSwap(v, min(v+cost, s.Granted)) {
			return
		}
	}
}

// Close ends the slice and returns its unused tokens; ok is false when it
// was already closed (someone else settles it).
func (s *Slice) Close() (unused int64, ok bool) {
	v := s.left.Swap(closed)
	if v < 0 {
		return 0, false
	}
	s.unusedAtClose.Store(v)
	return v, true
}

// Left is the number of unspent tokens (0 once closed).
func (s *Slice) Left() int64 { return max(s.left.Load(), 0) }

// Spent is what has been spent of the slice while it is still in use (open
// and before its deadline, so Redis still counts its whole grant as
// outstanding); 0 otherwise, when its tokens are Redis's to count again.
func (s *Slice) Spent(now int64) int64 {
	v := s.left.Load()
	if v < 0 || now >= s.Deadline {
		return 0
	}
	return s.Granted - v
}

// SliceEntry is the global path's state for one (rule, key): the current
// slice, the local denial window after the global bucket ran dry, and the
// demand estimate that sizes the next slice. Refills of one key are
// serialised by its lock, so concurrent misses share one Redis call.
type SliceEntry struct {
	// Rule and Key name the Redis bucket; they are owned copies.
	Rule, Key string

	refill sync.Mutex
	cur    atomic.Pointer[Slice]
	gen    atomic.Uint64
	// queued is the cost of the requests waiting for the refill lock; the
	// refill in progress asks for them too, so they share one Redis call.
	queued atomic.Int64

	// deniedUntil is the monotonic ns before which the key is denied locally:
	// the global bucket had too little at the last refill.
	deniedUntil atomic.Int64
	lastUsed    atomic.Int64

	// Guarded by refill.
	demand     float64 // tokens per second this node spent recently
	lastGlobal int64   // whole tokens the global bucket held at the last refill
	lastRefill int64   // monotonic ns of the last refill

	// lastDenial is what the last empty refill reported, for the requests
	// denied locally inside the denial window.
	lastDenial atomic.Pointer[denial]
	params     atomic.Pointer[BucketParams]
	// index is the table's deadline index; nil for an entry outside a table.
	index *deadlineIndex
}

// Current returns the slice in use, or nil.
func (e *SliceEntry) Current() *Slice { return e.cur.Load() }

// Touch records use at now, keeping the entry from being forgotten.
// It writes only when the last record is touchGranularity old, so a warm
// key's decisions read the shared cache line instead of writing it.
func (e *SliceEntry) Touch(now int64) {
	if now-e.lastUsed.Load() >= touchGranularity {
		e.lastUsed.Store(now)
	}
}

// touchGranularity is how stale a key's last use may be recorded; idle
// entries are forgotten only after seconds, so this changes nothing there.
const touchGranularity = int64(100e6) // 100 ms

// Generation counts refills; a waiter that sees it change while it waited for
// the refill lock knows another caller already went to Redis for it.
func (e *SliceEntry) Generation() uint64 { return e.gen.Load() }

// LockRefill takes the key's refill lock for a request of cost tokens,
// counting it as queued while it waits; UnlockRefill releases the lock.
func (e *SliceEntry) LockRefill(cost int64) {
	e.queued.Add(cost)
	e.refill.Lock()
	e.queued.Add(-cost)
}

// TryLockRefill takes the key's refill lock if it is free.
func (e *SliceEntry) TryLockRefill() bool { return e.refill.TryLock() }

// UnlockRefill releases the refill lock.
func (e *SliceEntry) UnlockRefill() { e.refill.Unlock() }

// Queued is the cost of the requests waiting for the refill lock.
func (e *SliceEntry) Queued() int64 { return e.queued.Load() }

// Retire closes the current slice (refill lock held) and reports how the old
// slice was used, feeding the demand estimate. unused is what goes back to
// Redis; id 0 means there is nothing to settle.
func (e *SliceEntry) Retire(now int64) (id, granted, unused int64) {
	s := e.cur.Load()
	if s == nil {
		return 0, 0, 0
	}
	unused, ok := s.Close()
	if !ok {
		// The sweeper closed and settled it; its use still tells the demand.
		e.observe(s.Granted-s.unusedAtClose.Load(), now-s.IssuedAt)
		return 0, 0, 0
	}
	e.observe(s.Granted-unused, now-s.IssuedAt)
	return s.GrantID, s.Granted, unused
}

// observe folds the tokens spent over elapsed ns into the demand estimate.
func (e *SliceEntry) observe(spent, elapsed int64) {
	if elapsed < minDemandWindow {
		elapsed = minDemandWindow
	}
	rate := float64(spent) * 1e9 / float64(elapsed)
	if e.demand == 0 {
		e.demand = rate
		return
	}
	e.demand = (e.demand + rate) / 2
}

// minDemandWindow keeps one slice spent in a burst from reading as an
// absurd rate.
const minDemandWindow = int64(1e6) // 1 ms

// Install makes s the current slice (refill lock held) and records what the
// global bucket reported.
func (e *SliceEntry) Install(s *Slice, now int64) {
	e.lastGlobal, e.lastRefill = s.GlobalRemaining, now
	e.deniedUntil.Store(0)
	e.cur.Store(s)
	e.gen.Add(1)
	if e.index != nil {
		e.index.add(indexed{e, s, s.lowAt(s.IssuedAt, e.demand)})
	}
}

// Deny records a refill that got nothing (refill lock held): requests are
// denied locally until `until`, with what the global bucket reported at now.
func (e *SliceEntry) Deny(out Outcome, until, now int64) {
	e.lastGlobal, e.lastRefill = out.Remaining, now
	e.lastDenial.Store(&denial{out: out, at: now})
	e.deniedUntil.Store(until)
	e.gen.Add(1)
}

// denial is an empty refill's outcome and when it happened.
type denial struct {
	out Outcome
	at  int64
}

// DeniedAt returns the outcome of a request denied locally at now: the last
// empty refill's answer, aged by the time since. ok is false outside the
// local denial window.
func (e *SliceEntry) DeniedAt(now int64) (out Outcome, ok bool) {
	if now >= e.deniedUntil.Load() {
		return Outcome{}, false
	}
	d := e.lastDenial.Load()
	if d == nil {
		return Outcome{}, false
	}
	out = d.out
	age := now - d.at
	out.RetryAfter = max(out.RetryAfter-age, 1)
	out.Reset = max(out.Reset-age, 0)
	return out, true
}

// BucketParams are the global bucket's parameters as of the last refill; a
// settle needs them because the script refills before it takes tokens back.
type BucketParams struct {
	Rate, Per, Burst int64 // Per in ns
}

// SetParams records the parameters used for this key's bucket.
func (e *SliceEntry) SetParams(p BucketParams) {
	if old := e.params.Load(); old == nil || *old != p {
		e.params.Store(&p)
	}
}

// Params returns the parameters recorded by SetParams.
func (e *SliceEntry) Params() BucketParams {
	if p := e.params.Load(); p != nil {
		return *p
	}
	return BucketParams{}
}

// SizeParams are the inputs of a slice size decision.
type SizeParams struct {
	Cost  int64   // the request that triggered the refill
	Burst int64   // the rule's burst
	Rate  float64 // the rule's refill rate, tokens per second
	TTL   int64   // slice lifetime, ns
	Nodes int     // cluster size: how many nodes share what is left
	Now   int64
}

// WantSize is how many tokens to ask the global bucket for. It covers this
// node's recent demand over one slice lifetime (with headroom) and at least
// the requests queued behind this refill, but never more than a fair share
// (1/Nodes) of what the global bucket is estimated to hold now, so scarce
// tokens are not hoarded by one node: large slices when tokens are plenty,
// down to the request's own cost near exhaustion.
func (e *SliceEntry) WantSize(p SizeParams) int64 {
	want := max(e.DemandOver(p.TTL), p.Cost+e.queued.Load())
	estimate := p.Burst
	if e.lastRefill != 0 {
		refilled := p.Rate * float64(p.Now-e.lastRefill) / 1e9
		estimate = min(p.Burst, e.lastGlobal+int64(refilled))
	}
	if share := estimate / int64(max(p.Nodes, 1)); want > share {
		want = share
	}
	return max(want, p.Cost)
}

// DemandOver is the tokens this node's recent demand spends over life ns,
// with headroom (refill lock held).
func (e *SliceEntry) DemandOver(life int64) int64 {
	return int64(math.Ceil(e.demand * float64(life) / 1e9 * sliceHeadroom))
}

// sliceHeadroom over-asks a little so a key whose demand grows does not run
// dry just before its slice would expire anyway.
const sliceHeadroom = 1.5

// SliceTable maps bucket keys to their SliceEntry.
type SliceTable struct {
	m     *keyMap[*SliceEntry]
	index *deadlineIndex
}

// NewSliceTable returns an empty table.
func NewSliceTable() *SliceTable {
	return &SliceTable{m: newKeyMap[*SliceEntry](), index: newDeadlineIndex()}
}

// Entry returns key's entry, creating it with owned copies of rule and
// display (which may alias a request buffer).
func (t *SliceTable) Entry(key []byte, rule, display string) *SliceEntry {
	if e, ok := t.m.Load(key); ok {
		return e
	}
	e, _ := t.m.LoadOrStore(key, func() *SliceEntry {
		return &SliceEntry{Rule: strings.Clone(rule), Key: strings.Clone(display), index: t.index}
	})
	return e
}

// Keys returns up to limit keys of held entries that start with prefix, and
// whether more were left out.
func (t *SliceTable) Keys(prefix string, limit int) ([]string, bool) { return t.m.Keys(prefix, limit) }

// RenewAhead picks, during Expire, the slices worth renewing before they
// end rather than letting them run out or expire: long-lived (roomy) slices
// of keys still in use that end soon or have less than a quarter left, so a
// warm key's renewal travels in the sweeper's batch instead of stalling a
// request. A key is in use when a request touched it after its slice was
// issued: however slow its pace, it is likely to come back, while a key
// that got its slice and went quiet lets it end and costs nothing more.
type RenewAhead struct {
	Before  int64 // deadline before this (and not yet passed), or...
	MinLife int64 // slice granted for at least this long
}

func (r *RenewAhead) picks(e *SliceEntry, s *Slice, now int64) bool {
	if r == nil || s == nil || now >= s.Deadline || s.Deadline-s.IssuedAt < r.MinLife || e.lastUsed.Load() <= s.IssuedAt {
		return false
	}
	left := s.Left()
	return left > 0 && (s.Deadline < r.Before || left*4 < s.Granted)
}

// Due does what Expire does to slices, at a cost that follows how many
// slices are due rather than how many keys are held: it visits only the
// slices whose deadline passed since its last call, or, with ahead, whose
// deadline falls before ahead.Before or which may be down to a quarter by
// now at their key's pace (from the deadline index, filled on install). It
// forgets no key: Expire, run less often, does that.
func (t *SliceTable) Due(now int64, ahead *RenewAhead, settle func(e *SliceEntry, s *Slice, unused int64)) (renew []*SliceEntry) {
	var pending []expired
	until := now + 1
	if ahead != nil {
		until = max(until, ahead.Before)
	}
	t.index.due(now, until, func(it indexed) int64 {
		e, s := it.e, it.s
		if e.cur.Load() != s || s.left.Load() < 0 {
			return 0 // replaced or closed: a newer slice has its own place
		}
		if now >= s.Deadline {
			if s.Left() > 0 {
				if unused, ok := s.Close(); ok {
					pending = append(pending, expired{e, s, unused})
				}
			}
			return 0
		}
		if ahead.picks(e, s, now) {
			renew = append(renew, e)
			return it.at // looked at again until the renewal replaces it
		}
		if s.Deadline < until {
			return it.at // near its end: a request may yet make it in use
		}
		return s.lowAt(now, 1e9*float64(s.Granted-s.Left())/float64(max(now-s.IssuedAt, 1)))
	})
	for _, p := range pending {
		settle(p.entry, p.slice, p.unused)
	}
	return renew
}

// lowAt is when, from now, to look at s again for a quarter left: halfway
// to when it would be at rate tokens per second, so a key that speeds up
// to twice that pace is still caught in time, and at its deadline at the
// latest. Each look halves the wait, so a slice costs a few looks.
func (s *Slice) lowAt(now int64, rate float64) int64 {
	above := s.Left() - s.Granted/4
	if above <= 0 {
		return now
	}
	if !(rate > 0) {
		return s.Deadline
	}
	if half := float64(above) * 1e9 / rate / 2; half < float64(s.Deadline-now) {
		return now + int64(half)
	}
	return s.Deadline
}

// Expire closes every slice whose deadline has passed while it still held
// tokens and hands each to settle, so unused tokens go back to Redis before
// Redis writes them off; it forgets entries unused since idleBefore whose
// slice is over. It returns how many entries it forgot. A spent slice is
// left alone: Redis counts its grant as spent when it expires, which is the
// truth, and the key's next refill settles it in its own call for free. The
// entries whose slices ahead picks (nil: none) are returned, to be renewed.
func (t *SliceTable) Expire(now, idleBefore int64, ahead *RenewAhead, settle func(e *SliceEntry, s *Slice, unused int64)) (forgotten int, renew []*SliceEntry) {
	var pending []expired
	forgotten = t.m.Sweep(func(_ string, e *SliceEntry) bool {
		s := e.cur.Load()
		if s != nil && now >= s.Deadline && s.Left() > 0 {
			if unused, ok := s.Close(); ok {
				pending = append(pending, expired{e, s, unused})
			}
		}
		if ahead.picks(e, s, now) {
			renew = append(renew, e)
		}
		return e.lastUsed.Load() < idleBefore && (s == nil || now >= s.Deadline)
	})
	for _, p := range pending {
		settle(p.entry, p.slice, p.unused)
	}
	return forgotten, renew
}

type expired struct {
	entry  *SliceEntry
	slice  *Slice
	unused int64
}

// Spent is what this node has spent of key's current slice (Slice.Spent).
func (t *SliceTable) Spent(key []byte, now int64) int64 {
	if e, ok := t.m.Load(key); ok {
		if s := e.Current(); s != nil {
			return s.Spent(now)
		}
	}
	return 0
}

// Len is the number of keys with global state on this node.
func (t *SliceTable) Len() int { return t.m.Len() }

// Close closes every open slice holding tokens and hands each to settle: on
// shutdown, unused tokens go back to Redis.
func (t *SliceTable) Close(settle func(e *SliceEntry, s *Slice, unused int64)) {
	t.Expire(math.MaxInt64, math.MinInt64, nil, settle)
}
