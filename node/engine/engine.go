package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/buckets/hitters"
	"github.com/sluicehq/sluice/fsm/rules"
)

// Engine is the decision path: rules snapshot → applicable rules → bucket
// takes → all-or-nothing verdict. It never blocks on Raft: rules arrive
// through SetRules, which swaps an atomic pointer. With a GlobalConfig it
// spends slices of the Redis bucket, and falls back to local buckets at the
// node's share while Redis is unreachable; with a LeaseConfig and no Redis
// it decides at the node's share while the cluster has several members
// (lease mode, engine_lease.go).
type Engine struct {
	rules    atomic.Pointer[ruleSet]
	local    *buckets.Table // local and lease mode's buckets
	fallback *buckets.Table // fallback mode's buckets, at the node's share
	leases   *leaseMode     // nil without a LeaseConfig: always local mode
	global   *globalPath    // nil in local mode
	health   *redisHealth   // nil in local mode
	quotas   *quotaPath     // quota rules' counters (quota.go)
	epoch    time.Time
	metrics  *Metrics
	// keepHitters: rules keep heavy-hitter summaries (WithHitters).
	keepHitters bool
	logger      *slog.Logger
	ctx         context.Context
	cancel      context.CancelFunc
}

// ruleSet is one immutable rules version, precompiled for the hot path.
type ruleSet struct {
	version  uint64
	compiled *rules.Compiled
	limits   []buckets.Limit // by rule index; zero for quota rules
	counters []*ruleCounters // by rule index; nil without metrics
	hitters  []*hitters.Rule // by rule index; nil without WithHitters
	noRule   *ruleCounters   // decisions no rule applies to
	longKeys []int           // rules whose key can exceed check.MaxKeyBytes
}

// maxRulesPerRequest bounds the stack buffers of applicable rules; more
// applicable rules still work, they just allocate.
const maxRulesPerRequest = 16

// Option configures an Engine.
type Option func(*Engine)

// WithMetrics counts decisions in m.
func WithMetrics(m *Metrics) Option { return func(e *Engine) { e.metrics = m } }

// WithLogger sets the engine's logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// WithGlobal turns on global mode (slices from the Redis bucket).
func WithGlobal(cfg GlobalConfig) Option {
	return func(e *Engine) {
		e.global = newGlobalPath(cfg, e.now)
		cfg.Metrics.setTimeout(cfg.RedisTimeout)
		e.health = &redisHealth{
			probe: cfg.Limiter.Ping, interval: probeInterval, timeout: cfg.RedisTimeout,
			metrics: cfg.Metrics,
		}
	}
}

// ErrNoRules: the engine has not received its first rules version (a node
// just started and raft has not delivered them yet). Deciding without rules
// would allow everything, so the node answers 503 instead (SPEC §5 /readyz).
var ErrNoRules = fmt.Errorf("%w: rules not received yet", admin.ErrUnavailable)

// New returns an engine that refuses decisions with ErrNoRules until
// SetRules installs a version >= 1. Close releases it.
func New(opts ...Option) *Engine {
	e := &Engine{local: buckets.NewTable(), fallback: buckets.NewTable(), quotas: newQuotaPath(), epoch: time.Now(), logger: slog.Default()}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(e)
	}
	e.initQuotas()
	if e.health != nil {
		e.health.logger, e.health.ctx = e.logger, e.ctx
		// A fallback episode starts with empty buckets: the switch adds no
		// burst on top of what Redis already granted (docs/DESIGN.md, Safety).
		e.health.onDown = func() { e.fallback.Empty(e.now()) }
	}
	e.SetRules(0, &rules.Set{})
	return e
}

// SetRules installs a validated rules set. Bucket state is keyed by rule name
// and key, so buckets of rules that survive an update keep their tokens.
func (e *Engine) SetRules(version uint64, set *rules.Set) {
	c := rules.Compile(set)
	possible := e.possibleModes()
	rs := &ruleSet{
		version:  version,
		compiled: c,
		limits:   make([]buckets.Limit, c.Len()),
		counters: make([]*ruleCounters, c.Len()),
		noRule:   e.metrics.countersFor("", false, possible),
	}
	kept := make(map[string]bool, c.Len())
	for i := 0; i < c.Len(); i++ {
		r := c.Rule(i).Rule
		if r.Limit != nil {
			rs.limits[i] = buckets.NewLimit(r.Limit.Rate, time.Duration(r.Limit.Per), r.Limit.Burst)
		}
		rs.counters[i] = e.metrics.countersFor(r.Name, r.Shadow, possible)
		if len(r.Key)*check.MaxValueBytes > check.MaxKeyBytes {
			rs.longKeys = append(rs.longKeys, i)
		}
		kept[r.Name] = true
	}
	rs.hitters = e.hittersFor(rs, e.rules.Load())
	prev := e.rules.Swap(rs)
	if prev == nil {
		return
	}
	for i := 0; i < prev.compiled.Len(); i++ {
		if name := prev.compiled.Rule(i).Rule.Name; !kept[name] {
			e.metrics.forget(name)
		}
	}
}

// possibleModes are the modes this engine can decide in, whatever happens
// to Redis: the series its metrics show from the start.
func (e *Engine) possibleModes() []check.Mode {
	switch {
	case e.global == nil && e.leases != nil:
		return []check.Mode{check.ModeLocal, check.ModeLease}
	case e.global == nil:
		return []check.Mode{check.ModeLocal}
	}
	return []check.Mode{check.ModeGlobal, check.ModeFallback}
}

// RulesVersion returns the version of the installed rules.
func (e *Engine) RulesVersion() uint64 { return e.rules.Load().version }

// now is the engine's monotonic clock in nanoseconds.
func (e *Engine) now() int64 { return int64(time.Since(e.epoch)) }

// Decide implements check.Decider for in-process callers (the gin middleware).
func (e *Engine) Decide(ctx context.Context, req check.Request) (check.Decision, error) {
	var d check.Decision
	err := e.DecideInto(ctx, &req, &d)
	return d, err
}

// DecideInto decides req into d, reusing d.Results' capacity; it is the
// allocation-free form the HTTP batch path uses.
func (e *Engine) DecideInto(ctx context.Context, req *check.Request, d *check.Decision) error {
	rs := e.rules.Load()
	if rs.version == 0 {
		return ErrNoRules
	}
	return e.decideAt(ctx, rs, req, d, e.now(), nil)
}

// DecideBatch decides reqs[i] into out[i] (len(out) >= len(reqs)) on one
// rules snapshot and one clock reading: a batch is decided in well under a
// millisecond, and a reading taken earlier only ever refills less. Each
// request is decided on its own, as DecideInto would (no all-or-nothing
// across requests: that is DecideAll). A request out of bounds fails the
// call before any is decided; one with a bad cost stops it there.
func (e *Engine) DecideBatch(ctx context.Context, reqs []check.Request, out []check.Decision) error {
	rs := e.rules.Load()
	if rs.version == 0 {
		return ErrNoRules
	}
	for i := range reqs {
		if err := rs.withinBounds(reqs[i].Attributes); err != nil {
			return check.InBatch(err, i)
		}
	}
	now := e.now()
	bm := batchMetrics{m: e.metrics, hits: rs.newHitBatch()}
	defer bm.done(e.now, now)
	defer rs.flushHits(bm.hits, now)
	for i := range reqs {
		if err := e.decideAt(ctx, rs, &reqs[i], &out[i], now, &bm); err != nil {
			return check.InBatch(err, i)
		}
	}
	return nil
}

// decideAt decides req at monotonic time now on rules snapshot rs, counting
// it in batch when it is part of one (else on its own).
func (e *Engine) decideAt(ctx context.Context, rs *ruleSet, req *check.Request, d *check.Decision, now int64, batch *batchMetrics) error {
	cost := req.EffectiveCost()
	if cost < 1 {
		return &check.FieldError{Field: "cost", Msg: "must be an integer >= 1"}
	}
	if batch == nil { // a batch checked every request before deciding any
		if err := rs.withinBounds(req.Attributes); err != nil {
			return err
		}
	}
	var idxBuf [maxRulesPerRequest]int
	applicable := rs.compiled.Applicable(req.Attributes, idxBuf[:0])
	var modeBuf [maxRulesPerRequest]check.Mode
	modes := e.takeEach(ctx, rs, applicable, req.Attributes, cost, now, d, modeBuf[:0])
	if !d.Allowed {
		e.refund(rs, applicable, modes, req.Attributes, d.Results, cost, now)
	}
	summarize(d)
	if batch != nil {
		batch.observe(rs, applicable, d)
		batch.hits.add(applicable, d, cost)
	} else {
		rs.recordHitters(applicable, d, cost, now)
		e.metrics.observe(rs, applicable, d, e.now, now)
	}
	return nil
}

// withinBounds refuses a request out of check's bounds — too many
// attributes, a value too long, or a bucket key longer than
// check.MaxKeyBytes for a rule that applies — so that callers can check a
// whole group before any token moves. Values are within MaxValueBytes by
// then, so only rules keyed on three or more attributes need the sum.
func (rs *ruleSet) withinBounds(attrs check.Attrs) error {
	if err := attrs.Validate(); err != nil {
		return err
	}
	for _, i := range rs.longKeys {
		r := rs.compiled.Rule(i)
		if n := r.KeyValueBytes(attrs); n > check.MaxKeyBytes && r.Applies(attrs) {
			return &check.FieldError{Field: "attributes", Msg: fmt.Sprintf("rule %s's key (%s) would be %d bytes, longer than %d",
				r.Rule.Name, strings.Join(r.Rule.Key, ", "), n, check.MaxKeyBytes)}
		}
	}
	return nil
}

// takeEach takes cost from the bucket of every applicable rule into d's
// results (not yet summarized, nothing refunded) and appends to modes the
// mode each take ran in, which a refund needs.
func (e *Engine) takeEach(ctx context.Context, rs *ruleSet, applicable []int, attrs check.Attrs, cost, now int64, d *check.Decision, modes []check.Mode) []check.Mode {
	*d = check.Decision{Allowed: true, Mode: e.mode(), Results: d.Results[:0]}
	var keyBuf [256]byte
	for _, i := range applicable {
		r := rs.compiled.Rule(i)
		key := r.AppendKey(keyBuf[:0], attrs)
		display := r.DisplayKey(attrs)
		var res check.Result
		var mode check.Mode
		if r.Rule.Quota != nil {
			res, mode = e.takeQuota(ctx, r, key, display, cost)
		} else {
			var out buckets.Outcome
			out, mode = e.take(ctx, rs, i, key, display, cost, now)
			res = check.Result{
				Rule:         r.Rule.Name,
				Key:          display,
				Allowed:      out.Allowed,
				Shadow:       r.Rule.Shadow,
				Limit:        r.Rule.Limit.Rate,
				Remaining:    out.Remaining,
				ResetMs:      check.CeilMs(out.Reset),
				RetryAfterMs: check.CeilMs(out.RetryAfter),
			}
			if out.TooCostly {
				res.Reason = fmt.Sprintf("cost %d exceeds burst %d", cost, r.Rule.Limit.Burst)
			}
		}
		if mode == check.ModeFallback {
			d.Mode = mode
		}
		modes = append(modes, mode)
		d.Results = append(d.Results, res)
		if !res.Allowed && !r.Rule.Shadow {
			d.Allowed = false
		}
	}
	return modes
}

// InFallback reports whether decisions are made in fallback mode now:
// Redis is unreachable and the breaker is open (node.Config.Fallback).
func (e *Engine) InFallback() bool { return e.health != nil && e.health.isDown() }

// Mode is the mode decisions start in now (GET /v1/node).
func (e *Engine) Mode() check.Mode { return e.mode() }

// mode is the mode decisions start in.
func (e *Engine) mode() check.Mode {
	switch {
	case e.global == nil:
		return e.leases.mode()
	case e.health.isDown():
		return check.ModeFallback
	default:
		return check.ModeGlobal
	}
}

// take takes cost tokens for rule i and key in the engine's current mode. A
// Redis failure opens the breaker and the same request is decided in
// fallback mode: no request fails because Redis is down.
func (e *Engine) take(ctx context.Context, rs *ruleSet, i int, key []byte, display string, cost, now int64) (buckets.Outcome, check.Mode) {
	switch mode := e.mode(); mode {
	case check.ModeLocal:
		return e.local.Take(key, rs.limits[i], cost, now), mode
	case check.ModeLease:
		return e.local.Take(key, e.shareLimit(rs, i), cost, now), mode
	case check.ModeGlobal:
		out, err := e.global.take(ctx, rs.compiled.Rule(i), key, display, cost, now)
		if err == nil {
			return out, mode
		}
		e.health.failed(err)
	}
	return e.fallback.Take(key, e.shareLimit(rs, i), cost, now), check.ModeFallback
}

// shareLimit is rule i's bucket scaled to this node's share, for fallback
// and lease mode (SPEC §7): rate·s and max(1, burst·s).
func (e *Engine) shareLimit(rs *ruleSet, i int) buckets.Limit {
	return e.shareOf(rs.compiled.Rule(i).Rule.Name, rs.limits[i])
}

// shareOf is lim, rule name's bucket, scaled to this node's share.
func (e *Engine) shareOf(name string, lim buckets.Limit) buckets.Limit {
	var share float64
	if e.global != nil {
		share = e.global.share(name)
	} else {
		share = e.leases.cfg.Share(name)
	}
	return buckets.Limit{
		Interval: int64(float64(lim.Interval) / share),
		Burst:    max(1, int64(float64(lim.Burst)*share)),
	}
}

// refund gives back the tokens taken by rules that allowed a request another
// rule denied: a rejected request consumes nothing (SPEC §4, all-or-nothing).
func (e *Engine) refund(rs *ruleSet, applicable []int, modes []check.Mode, attrs check.Attrs, results []check.Result, cost, now int64) {
	var keyBuf [256]byte
	for n, i := range applicable {
		if !results[n].Allowed {
			continue
		}
		r := rs.compiled.Rule(i)
		key := r.AppendKey(keyBuf[:0], attrs)
		if r.Rule.Quota != nil {
			e.refundQuota(r, key, modes[n], &results[n], cost)
			continue
		}
		switch modes[n] {
		case check.ModeLocal:
			e.local.Refund(key, rs.limits[i], cost, now)
		case check.ModeGlobal:
			e.global.give(key, r, results[n].Key, cost)
		case check.ModeLease:
			e.local.Refund(key, e.shareLimit(rs, i), cost, now)
		case check.ModeFallback:
			e.fallback.Refund(key, e.shareLimit(rs, i), cost, now)
		}
		results[n].Remaining += cost
	}
}

// summarize fills the decision's top-level fields: on denial the denying rule
// with the longest wait, otherwise the most restrictive enforced rule (fewest
// remaining). Shadow rules never speak for the decision.
func summarize(d *check.Decision) {
	best := -1
	for n := range d.Results {
		r := &d.Results[n]
		if r.Shadow {
			continue
		}
		switch {
		case best < 0:
			best = n
		case !d.Allowed:
			if !r.Allowed && (d.Results[best].Allowed || r.RetryAfterMs > d.Results[best].RetryAfterMs) {
				best = n
			}
		case r.Remaining < d.Results[best].Remaining:
			best = n
		}
	}
	if best < 0 {
		return
	}
	r := &d.Results[best]
	d.Rule, d.Limit, d.Remaining, d.ResetMs, d.Reason = r.Rule, r.Limit, r.Remaining, r.ResetMs, r.Reason
	if !d.Allowed {
		d.RetryAfterMs = r.RetryAfterMs
	}
}

// sweepInterval is how often idle local buckets are evicted.
const sweepInterval = 5 * time.Second

// Run does the engine's background work until ctx ends or the engine
// closes: evicting idle buckets and ended quota windows, writing quota
// counters behind, and handing expired slices' unused tokens (rate and
// quota) back to Redis.
func (e *Engine) Run(ctx context.Context) {
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	var flush, expire <-chan time.Time
	if e.quotas.store != nil {
		t := time.NewTicker(quotaFlushInterval)
		defer t.Stop()
		flush = t.C
	}
	if e.global != nil {
		t := time.NewTicker(e.global.cfg.SliceTTL / 2)
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.ctx.Done():
			return
		case <-sweep.C:
			now := e.now()
			e.local.Sweep(now)
			e.fallback.Sweep(now)
			e.quotas.local.sweep(e.quotas.wall())
		case <-flush:
			e.flushQuotas()
		case <-expire:
			if e.health.isDown() {
				continue
			}
			err := e.global.expire(e.ctx, idleSliceEntry, e.limitOf)
			if qerr := e.quotas.global.expire(e.ctx); err == nil {
				err = qerr
			}
			if err != nil {
				e.health.failed(err)
			}
		}
	}
}

// limitOf is the current limit of the rule named rule, nil if there is none.
func (e *Engine) limitOf(rule string) *rules.Limit {
	rs := e.rules.Load()
	if rs == nil {
		return nil
	}
	i, ok := rs.compiled.Index(rule)
	if !ok {
		return nil
	}
	return rs.compiled.Rule(i).Rule.Limit
}

// idleSliceEntry is how long a key's global state outlives its last use.
const idleSliceEntry = 30 * time.Second

// Close hands every open slice's unused tokens back to Redis (graceful
// shutdown) and stops background work.
func (e *Engine) Close(ctx context.Context) {
	if e.global != nil && !e.health.isDown() {
		if err := e.global.closeAll(ctx); err != nil {
			e.logger.Warn("handing unused slice tokens back to redis on close; they count as spent", "err", err)
		}
	}
	e.closeQuotas(ctx)
	e.cancel()
}

// ActiveKeys is the number of keys with state in memory.
func (e *Engine) ActiveKeys() int {
	n := e.local.Len() + e.fallback.Len() + e.quotas.len()
	if e.global != nil {
		n += e.global.slices.Len()
	}
	return n
}
