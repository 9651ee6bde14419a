package engine

import (
	"errors"
	"sync"
	"time"

	"github.com/sluicehq/sluice/fsm/rules"
)

// localQuotas counts quota use on this node alone: local mode's quotas
// (each node of a cluster without Redis keeps its own). A counter covers one
// calendar window and starts over at the next; with a store, changed
// counters are written behind so a restart resumes where it stopped.
type localQuotas struct {
	counters *quotaMap[*quotaCounter]
	store    *QuotaStore // nil: memory only

	mu      sync.Mutex // guards dirty and deleted
	dirty   []*quotaCounter
	deleted []string // keys whose window ended, to remove from the store

	writeMu sync.Mutex // serialises flushes and close
	closed  bool       // guarded by writeMu
}

// quotaCounter is the use of one (rule, key) in one window.
type quotaCounter struct {
	key string

	mu         sync.Mutex
	period     rules.Period
	start, end int64 // unix ns of the window [start, end)
	used       int64
	queued     bool // waits in localQuotas.dirty for the store
	removed    bool // swept: lookups must start a new counter
}

// quotaOutcome is one quota decision (or a look at one). Durations in ns.
type quotaOutcome struct {
	Allowed    bool
	TooCostly  bool // cost above the quota limit: never allowed
	Remaining  int64
	Reset      int64  // until the window ends
	RetryAfter int64  // until a denied request may succeed
	Reason     string // why it was denied, when not for lack of quota
}

func newLocalQuotas(store *QuotaStore) *localQuotas {
	return &localQuotas{counters: newQuotaMap[*quotaCounter](), store: store}
}

// restore installs the stored counters whose window has not ended by now
// and schedules the others for removal from the store.
func (l *localQuotas) restore(records []quotaRecord, now time.Time) {
	for _, r := range records {
		if r.end <= now.UnixNano() {
			l.deleted = append(l.deleted, r.key)
			continue
		}
		c := &quotaCounter{key: r.key, period: r.period, start: r.start, end: r.end, used: r.used}
		l.counters.loadOrStore([]byte(r.key), func() *quotaCounter { return c })
	}
}

// take adds cost to key's counter if the quota allows it.
func (l *localQuotas) take(key []byte, q *rules.Quota, cost int64, now time.Time) quotaOutcome {
	for {
		c := l.counters.loadOrStore(key, func() *quotaCounter { return &quotaCounter{key: string(key)} })
		c.mu.Lock()
		if c.removed {
			c.mu.Unlock()
			continue
		}
		c.roll(q.Per, now)
		out := quotaOutcome{Reset: c.end - now.UnixNano(), TooCostly: cost > q.Limit}
		if c.used+cost <= q.Limit {
			c.used += cost
			out.Allowed = true
		}
		out.Remaining = max(0, q.Limit-c.used)
		if !out.Allowed {
			out.RetryAfter = out.Reset
		}
		queue := out.Allowed && l.markDirty(c)
		c.mu.Unlock()
		if queue {
			l.queue(c)
		}
		return out
	}
}

// refund takes back cost added by a take in the window holding now (a
// request another rule denied). A refund racing the window's end may land
// on the next window, which then counts up to cost less: one request's
// worth, once, at a boundary.
func (l *localQuotas) refund(key []byte, q *rules.Quota, cost int64, now time.Time) {
	c, ok := l.counters.load(key)
	if !ok {
		return
	}
	c.mu.Lock()
	if c.removed || !c.holds(q.Per, now) {
		c.mu.Unlock()
		return
	}
	c.used = max(0, c.used-cost)
	queue := l.markDirty(c)
	c.mu.Unlock()
	if queue {
		l.queue(c)
	}
}

// peek reports key's use in the window holding now.
func (l *localQuotas) peek(key []byte, q *rules.Quota, now time.Time) (used int64, reset time.Duration) {
	_, end := q.Per.Window(now)
	if c, ok := l.counters.load(key); ok {
		c.mu.Lock()
		if !c.removed && c.holds(q.Per, now) {
			used = c.used
		}
		c.mu.Unlock()
	}
	return used, end.Sub(now)
}

// reset starts key's current window over.
func (l *localQuotas) reset(key []byte) {
	c, ok := l.counters.load(key)
	if !ok {
		return
	}
	c.mu.Lock()
	c.used = 0
	queue := !c.removed && l.markDirty(c)
	c.mu.Unlock()
	if queue {
		l.queue(c)
	}
}

// roll moves the counter to the window of p holding now, from zero, unless
// it already counts that window (c.mu held).
func (c *quotaCounter) roll(p rules.Period, now time.Time) {
	if c.holds(p, now) {
		return
	}
	start, end := p.Window(now)
	c.period, c.start, c.end, c.used = p, start.UnixNano(), end.UnixNano(), 0
}

// holds reports whether the counter counts p's window holding now (c.mu held).
func (c *quotaCounter) holds(p rules.Period, now time.Time) bool {
	t := now.UnixNano()
	return c.period == p && t >= c.start && t < c.end
}

// markDirty flags c for the next flush and reports whether the caller must
// queue it (c.mu held).
func (l *localQuotas) markDirty(c *quotaCounter) bool {
	if l.store == nil || c.queued {
		return false
	}
	c.queued = true
	return true
}

func (l *localQuotas) queue(c *quotaCounter) {
	l.mu.Lock()
	l.dirty = append(l.dirty, c)
	l.mu.Unlock()
}

// sweep forgets the counters whose window ended before now.
func (l *localQuotas) sweep(now time.Time) {
	t := now.UnixNano()
	var gone []string
	l.counters.sweep(func(key string, c *quotaCounter) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t < c.end {
			return false
		}
		c.removed = true
		gone = append(gone, key)
		return true
	})
	if l.store != nil && len(gone) > 0 {
		l.mu.Lock()
		l.deleted = append(l.deleted, gone...)
		l.mu.Unlock()
	}
}

// flush writes the changed counters to the store.
func (l *localQuotas) flush() error {
	if l.store == nil {
		return nil
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.flushLocked()
}

// flushLocked is flush with writeMu held.
func (l *localQuotas) flushLocked() error {
	if l.closed {
		return nil // Close wrote the last state
	}
	l.mu.Lock()
	dirty, deleted := l.dirty, l.deleted
	l.dirty, l.deleted = nil, nil
	l.mu.Unlock()
	puts := make([]quotaRecord, 0, len(dirty))
	for _, c := range dirty {
		c.mu.Lock()
		c.queued = false
		if !c.removed {
			puts = append(puts, quotaRecord{key: c.key, period: c.period, start: c.start, end: c.end, used: c.used})
		}
		c.mu.Unlock()
	}
	refused, err := l.store.write(puts, deleted)
	if err != nil {
		l.requeue(dirty, deleted)
		return err
	}
	// A refused counter would be refused again; it stays in memory only.
	return errors.Join(refused...)
}

// requeue puts back what a failed flush did not write, for the next one.
func (l *localQuotas) requeue(dirty []*quotaCounter, deleted []string) {
	var again []*quotaCounter
	for _, c := range dirty {
		c.mu.Lock()
		if !c.queued && !c.removed {
			c.queued = true
			again = append(again, c)
		}
		c.mu.Unlock()
	}
	l.mu.Lock()
	l.dirty = append(l.dirty, again...)
	l.deleted = append(l.deleted, deleted...)
	l.mu.Unlock()
}

// close writes what is left and closes the store.
func (l *localQuotas) close() error {
	if l.store == nil {
		return nil
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return nil
	}
	err := l.flushLocked()
	l.closed = true
	return errors.Join(err, l.store.Close())
}
