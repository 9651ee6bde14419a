package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
)

// globalQuotas is global mode's quota path. Each window's count lives in
// Redis (lua/quota.lua); a node takes a slice of what is left, spends it
// locally and settles the unused part, exactly as for rate limits, so a hot
// tenant costs one Redis call per slice rather than per request. While Redis
// is unreachable a node spends at most its share of what Redis said was left
// at its last answer for the key, and charges that spending to Redis once it
// answers again.
type globalQuotas struct {
	cfg     GlobalConfig
	entries *quotaMap[*quotaEntry]
	mono    func() int64
	wall    func() time.Time
	// offset is Redis TIME minus our wall clock as of the last answer, so
	// that the window a node names is nearly always the one Redis accepts.
	offset atomic.Int64
}

// quotaEntry is global mode's state for one (rule, key).
type quotaEntry struct {
	slices    buckets.SliceEntry
	lastUsed  atomic.Int64 // monotonic ns
	windowEnd atomic.Int64 // unix ns (Redis's clock) of the last refill's window

	// Guarded by the refill lock: what settling the current slice needs.
	window lua.Window
	limit  int64

	mu      sync.Mutex
	removed bool          // swept: lookups must start a new entry
	fb      quotaFallback // guarded by mu
}

// quotaFallback is what a node may spend of one key's quota without Redis.
type quotaFallback struct {
	syncStart     int64 // unix ns start of the window of Redis's last answer; 0: none
	syncRemaining int64 // what that answer said was left
	syncGen       uint64

	budgetStart int64 // the window budget applies to
	budgetGen   uint64
	known       bool  // a Redis answer for budgetStart's window was at hand
	budget      int64 // tokens still spendable in budgetStart's window
	unreported  int64 // spent there without Redis, not yet charged to Redis
}

// quotaIdle is how long an unused key's global quota state is kept; it holds
// what fallback mode may spend, so it outlives rate-limit slices by far.
const quotaIdle = 5 * time.Minute

// fallbackQuotaRetry is the retry-after of quota requests denied in fallback
// mode: Redis may answer again any moment, with more to spend.
const fallbackQuotaRetry = time.Second

// errQuotaWindowMoved reports two answers from Redis naming different windows.
var errQuotaWindowMoved = errors.New("quota window: Redis TIME left the window it had named")

func newGlobalQuotas(cfg GlobalConfig, mono func() int64, wall func() time.Time) *globalQuotas {
	return &globalQuotas{cfg: cfg, entries: newQuotaMap[*quotaEntry](), mono: mono, wall: wall}
}

// redisNow estimates Redis's clock.
func (g *globalQuotas) redisNow() time.Time {
	return g.wall().Add(time.Duration(g.offset.Load()))
}

func (g *globalQuotas) sawRedisTime(t time.Time) {
	g.offset.Store(int64(t.Sub(g.wall())))
}

func windowAt(p rules.Period, t time.Time) lua.Window {
	start, end := p.Window(t)
	return lua.Window{Start: start, End: end}
}

func (g *globalQuotas) entry(key []byte, rule, display string) *quotaEntry {
	return g.entries.loadOrStore(key, func() *quotaEntry {
		e := &quotaEntry{}
		e.slices.Rule, e.slices.Key = rule, display
		return e
	})
}

// inWindow runs op for the window of p holding Redis's time: first the one
// our estimate of Redis's clock names and, should Redis disagree (a call at
// a window's edge), the one holding the time Redis answered with.
func (g *globalQuotas) inWindow(ctx context.Context, p rules.Period, name string,
	op func(ctx context.Context, w lua.Window) (inWindow bool, redisNow time.Time, err error)) error {
	w := windowAt(p, g.redisNow())
	for attempt := 0; attempt < 2; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
		start := time.Now()
		in, now, err := op(callCtx, w)
		cancel()
		g.cfg.Metrics.observe(name, err, time.Since(start))
		if err != nil {
			return err
		}
		g.sawRedisTime(now)
		if in {
			return nil
		}
		w = windowAt(p, now)
	}
	return errQuotaWindowMoved
}

// take spends cost of (rule, key)'s quota from this node's slice, refilling
// it from Redis when it cannot cover the request. It returns an error only
// when Redis failed; the engine then decides in fallback mode.
func (g *globalQuotas) take(ctx context.Context, r *rules.CompiledRule, key []byte, display string, cost int64) (quotaOutcome, error) {
	q := r.Rule.Quota
	if cost > q.Limit {
		return quotaOutcome{TooCostly: true}, nil
	}
	e := g.entry(key, r.Rule.Name, display)
	now := g.mono()
	e.lastUsed.Store(now)
	gen := e.slices.Generation()
	if out, ok := g.fromSlice(e, cost, now); ok {
		return out, nil
	}
	if out, ok := e.slices.DeniedAt(now); ok {
		return quotaOutcome{Remaining: out.Remaining, Reset: out.Reset, RetryAfter: out.RetryAfter}, nil
	}
	e.slices.LockRefill(cost)
	defer e.slices.UnlockRefill()
	if e.slices.Generation() != gen {
		// Another request refilled while this one waited: share its result.
		now = g.mono()
		if out, ok := g.fromSlice(e, cost, now); ok {
			return out, nil
		}
		if out, ok := e.slices.DeniedAt(now); ok {
			return quotaOutcome{Remaining: out.Remaining, Reset: out.Reset, RetryAfter: out.RetryAfter}, nil
		}
	}
	out, late, err := g.refill(ctx, e, q, cost)
	if late {
		// As for rate limits (globalPath.take): the node was slow, not the
		// client, so it asks once more before it denies.
		out, _, err = g.refill(ctx, e, q, cost)
	}
	return out, err
}

// fromSlice spends from the current slice when it can cover cost.
func (g *globalQuotas) fromSlice(e *quotaEntry, cost, now int64) (quotaOutcome, bool) {
	s := e.slices.Current()
	if s == nil {
		return quotaOutcome{}, false
	}
	left, ok := s.Take(cost, g.mono)
	if !ok {
		return quotaOutcome{}, false
	}
	reset := max(0, e.windowEnd.Load()-g.redisNow().UnixNano())
	return quotaOutcome{Allowed: true, Remaining: left + s.GlobalRemaining, Reset: reset}, true
}

// refill settles the current slice and asks Redis for the next one in the
// same call (refill lock held). The slice ends with its window at the
// latest: Redis cuts the grant's TTL there. late reports a grant that came
// back after its slice's deadline, which the request could not spend.
func (g *globalQuotas) refill(ctx context.Context, e *quotaEntry, q *rules.Quota, cost int64) (quotaOutcome, bool, error) {
	sendAt := g.mono()
	id, granted, unused := e.slices.Retire(sendAt)
	ttl := g.cfg.SliceTTL
	var grant lua.QuotaGrant
	var w lua.Window
	var charge int64
	err := g.inWindow(ctx, q.Per, "quota_acquire", func(ctx context.Context, try lua.Window) (bool, time.Time, error) {
		var prev lua.Settlement
		if id != 0 && e.window.Start.Equal(try.Start) {
			// A grant of an earlier window expired with it; nothing to settle.
			prev = lua.Settlement{ID: id, Granted: granted, Unused: unused}
		}
		want := e.slices.WantSize(buckets.SizeParams{
			Cost: cost, Burst: q.Limit, TTL: int64(ttl), Nodes: g.cfg.Nodes(), Now: sendAt,
		})
		w, charge = try, e.unreported(try)
		var err error
		grant, err = g.cfg.Limiter.AcquireQuota(ctx, e.slices.Rule, e.slices.Key, try, q.Limit, charge, prev, want, cost, ttl+grantMargin(ttl))
		return grant.InWindow, grant.Now, err
	})
	if err != nil {
		return quotaOutcome{}, false, err
	}
	now := g.mono()
	e.window, e.limit = w, q.Limit
	e.windowEnd.Store(w.End.UnixNano())
	e.synced(w, grant.Remaining, charge)
	reset := max(0, int64(w.End.Sub(grant.Now)))
	if grant.Granted > 0 {
		g.cfg.Metrics.refilled()
		s := buckets.NewSlice(grant.ID, grant.Granted, sendAt, sendAt+int64(min(ttl, grant.TTL)), grant.Remaining, reset)
		left, ok := s.Take(cost, g.mono)
		e.slices.Install(s, now)
		if !ok {
			// The answer came after the slice's deadline: the next refill
			// or the sweeper hands it back.
			return quotaOutcome{Remaining: s.Left() + grant.Remaining, Reset: reset, RetryAfter: lateSliceRetry}, true, nil
		}
		return quotaOutcome{Allowed: true, Remaining: left + grant.Remaining, Reset: reset}, false, nil
	}
	// Too little left. Deny locally for a slice's lifetime (never past the
	// window's end) rather than asking Redis on every request; what other
	// nodes hand back meanwhile is found at the next refill.
	out := buckets.Outcome{Remaining: grant.Remaining, Reset: reset, RetryAfter: reset}
	e.slices.Deny(out, now+min(int64(ttl), reset), now)
	return quotaOutcome{Remaining: grant.Remaining, Reset: reset, RetryAfter: reset}, false, nil
}

// give returns tokens to the slice they came from (all-or-nothing refunds).
func (g *globalQuotas) give(key []byte, cost int64) {
	if e, ok := g.entries.load(key); ok {
		if s := e.slices.Current(); s != nil {
			s.Give(cost)
		}
	}
}

// unreported is what this node spent of window w without Redis and has not
// charged yet.
func (e *quotaEntry) unreported(w lua.Window) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fb.budgetStart != w.Start.UnixNano() {
		return 0
	}
	return e.fb.unreported
}

// synced records Redis's answer for window w, which included charge.
func (e *quotaEntry) synced(w lua.Window, remaining, charge int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := w.Start.UnixNano()
	e.fb.syncStart, e.fb.syncRemaining = start, remaining
	e.fb.syncGen++
	if e.fb.budgetStart == start {
		e.fb.unreported -= charge
	}
}

// takeFallback decides without Redis: cost comes out of this node's share
// of what Redis last said was left in the current window. A key Redis has
// not answered for in this window gets nothing: other nodes may have used
// all of it.
func (g *globalQuotas) takeFallback(key []byte, r *rules.CompiledRule, display string, cost int64, share float64) quotaOutcome {
	q := r.Rule.Quota
	w := windowAt(q.Per, g.redisNow())
	reset := max(0, int64(w.End.Sub(g.redisNow())))
	if cost > q.Limit {
		return quotaOutcome{TooCostly: true, Reset: reset}
	}
	for {
		e := g.entry(key, r.Rule.Name, display)
		e.lastUsed.Store(g.mono())
		e.mu.Lock()
		if e.removed {
			e.mu.Unlock()
			continue
		}
		out := e.fb.take(w.Start.UnixNano(), cost, share)
		e.mu.Unlock()
		out.Reset = reset
		if !out.Allowed {
			out.RetryAfter = min(reset, int64(fallbackQuotaRetry))
		}
		return out
	}
}

// take spends cost from the budget of the window starting at start, sizing
// the budget from the latest Redis answer first when it is newer (e.mu held).
func (f *quotaFallback) take(start, cost int64, share float64) quotaOutcome {
	if f.budgetStart != start || f.budgetGen != f.syncGen {
		if f.budgetStart != start {
			f.unreported = 0
		}
		f.budgetStart, f.budgetGen = start, f.syncGen
		f.known = f.syncStart == start
		f.budget = 0
		if f.known {
			f.budget = int64(share * float64(f.syncRemaining))
		}
	}
	if !f.known {
		return quotaOutcome{Reason: "quota state unknown while Redis is unreachable"}
	}
	if cost > f.budget {
		return quotaOutcome{Remaining: f.budget}
	}
	f.budget -= cost
	f.unreported += cost
	return quotaOutcome{Allowed: true, Remaining: f.budget}
}

// refundFallback gives back cost taken by takeFallback.
func (g *globalQuotas) refundFallback(key []byte, cost int64) {
	e, ok := g.entries.load(key)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fb.budget += cost
	e.fb.unreported = max(0, e.fb.unreported-cost)
}

// expire settles the slices past their deadline, charges fallback spending
// to Redis and forgets idle keys. It stops at the first Redis error: the
// grants left unsettled expire in Redis and count as spent, which is safe.
func (g *globalQuotas) expire(ctx context.Context) error {
	now := g.mono()
	for _, e := range g.entries.values() {
		if err := g.settleExpired(ctx, e, now); err != nil {
			return err
		}
		if err := g.report(ctx, e); err != nil {
			return err
		}
	}
	idleBefore := now - int64(quotaIdle)
	g.entries.sweep(func(_ string, e *quotaEntry) bool { return e.forget(idleBefore) })
	return nil
}

// close settles every open slice and charges fallback spending: shutdown.
func (g *globalQuotas) close(ctx context.Context) error {
	for _, e := range g.entries.values() {
		if err := g.settleExpired(ctx, e, maxMono); err != nil {
			return err
		}
		if err := g.report(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// maxMono is a monotonic time after every slice's deadline.
const maxMono = int64(^uint64(0) >> 1)

// settleExpired hands back the unused part of e's slice if its deadline is
// before now.
func (g *globalQuotas) settleExpired(ctx context.Context, e *quotaEntry, now int64) error {
	if s := e.slices.Current(); s == nil || now < s.Deadline || s.Left() == 0 {
		return nil
	}
	e.slices.LockRefill(0)
	s := e.slices.Current()
	var unused int64
	var ok bool
	if s != nil && now >= s.Deadline {
		unused, ok = s.Close()
	}
	w, limit := e.window, e.limit
	e.slices.UnlockRefill()
	if !ok || unused == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	_, err := g.cfg.Limiter.SettleQuota(ctx, e.slices.Rule, e.slices.Key, w, limit, s.GrantID, s.Granted, unused)
	g.cfg.Metrics.observe("quota_settle", err, time.Since(start))
	return err
}

// report charges what e spent in fallback mode to Redis.
func (g *globalQuotas) report(ctx context.Context, e *quotaEntry) error {
	e.mu.Lock()
	pending := e.fb.unreported
	e.mu.Unlock()
	if pending <= 0 {
		return nil
	}
	e.slices.LockRefill(0)
	defer e.slices.UnlockRefill()
	w := e.window // the only window fallback budgets come from
	charge := e.unreported(w)
	if charge <= 0 {
		return nil
	}
	callCtx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	grant, err := g.cfg.Limiter.AcquireQuota(callCtx, e.slices.Rule, e.slices.Key, w, e.limit, charge, lua.Settlement{}, 0, 0, g.cfg.SliceTTL)
	g.cfg.Metrics.observe("quota_acquire", err, time.Since(start))
	if err != nil {
		return err
	}
	if !grant.InWindow {
		// The window is over; what was spent in it no longer matters.
		e.mu.Lock()
		e.fb.unreported = 0
		e.mu.Unlock()
		return nil
	}
	e.synced(w, grant.Remaining, charge)
	return nil
}

// forget marks e removed if it has been idle since before idleBefore and
// holds nothing Redis still needs (shard write lock held).
func (e *quotaEntry) forget(idleBefore int64) bool {
	if e.lastUsed.Load() >= idleBefore {
		return false
	}
	if s := e.slices.Current(); s != nil && s.Left() > 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fb.unreported > 0 {
		return false
	}
	e.removed = true
	return true
}

// peek reports key's current window as Redis counts it, split into used
// (admitted) and reserved (out in slices, not yet spent). Redis knows what
// was settled and what is still out in grants; this node adds what it has
// spent of its own live slice to used, so one node's figures are exact and
// other nodes' spends count as reserved until they settle (within a slice's
// life).
func (g *globalQuotas) peek(ctx context.Context, rule, key string, bucketKey []byte, q *rules.Quota) (used, reserved, remaining int64, reset time.Duration, err error) {
	var u lua.QuotaUsage
	err = g.inWindow(ctx, q.Per, "quota_peek", func(ctx context.Context, w lua.Window) (bool, time.Time, error) {
		var err error
		u, err = g.cfg.Limiter.PeekQuota(ctx, rule, key, w, q.Limit)
		reset = w.End.Sub(u.Now)
		return u.InWindow, u.Now, err
	})
	var mine int64
	if e, ok := g.entries.load(bucketKey); ok {
		if s := e.slices.Current(); s != nil {
			mine = min(s.Spent(g.mono()), u.Reserved)
		}
	}
	return u.Used - u.Reserved + mine, u.Reserved - mine, u.Remaining, reset, err
}

// reset starts key's current window over in Redis.
func (g *globalQuotas) reset(ctx context.Context, rule, key string, q *rules.Quota) error {
	return g.inWindow(ctx, q.Per, "quota_reset", func(ctx context.Context, w lua.Window) (bool, time.Time, error) {
		return g.cfg.Limiter.ResetQuota(ctx, rule, key, w)
	})
}

// len is the number of keys with global quota state.
func (g *globalQuotas) len() int { return g.entries.len() }
