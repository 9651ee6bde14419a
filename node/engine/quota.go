package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
)

// quotaPath is the engine's state for quota rules (SPEC §3): counters over
// calendar windows in UTC rather than token buckets. In local mode each node
// counts on its own (optionally persisted); in global mode Redis counts for
// the cluster and nodes spend slices of it; in fallback mode a node spends
// its share of what Redis last said was left.
//
// A quota rule answers like a limit rule, with Limit = the quota, Used set,
// ResetMs = the time until the window ends and, on denial, RetryAfterMs the
// same. The decision's X-RateLimit-* headers speak for the rule with the
// fewest remaining (summarize): that is how many more requests a client can
// make before some rule denies it, whatever the rules' sizes.
type quotaPath struct {
	wall   func() time.Time
	store  *QuotaStore
	local  *localQuotas
	global *globalQuotas // nil in local mode
}

// quotaFlushInterval is how often local mode writes changed quota counters
// to the store: the most use a crash (kill -9) can make a node forget.
const quotaFlushInterval = time.Second

func newQuotaPath() *quotaPath { return &quotaPath{wall: time.Now} }

// WithWallClock sets the clock quota windows are read from; time.Now by
// default. Tests use it to stand at a window's edge. In global mode Redis
// TIME decides which window a request counts in; this clock only guesses.
func WithWallClock(now func() time.Time) Option {
	return func(e *Engine) { e.quotas.wall = now }
}

// WithQuotaStore keeps local mode's quota counters in s, which the engine
// then owns: it restores the counters of windows not yet over, writes
// changes behind every quotaFlushInterval (from Run) and on Close, and
// closes s. A graceful restart loses nothing; a crash loses at most the use
// counted since the last write, about one second's worth. Global mode keeps
// quotas in Redis and does not need s.
func WithQuotaStore(s *QuotaStore) Option {
	return func(e *Engine) { e.quotas.store = s }
}

// initQuotas builds the quota state once the options are applied.
func (e *Engine) initQuotas() {
	q := e.quotas
	q.local = newLocalQuotas(q.store)
	if q.store != nil {
		q.local.restore(q.store.loaded, q.wall())
		q.store.loaded = nil
	}
	if e.global != nil {
		q.global = newGlobalQuotas(e.global.cfg, e.now, q.wall)
	}
}

// takeQuota decides quota rule r for key in the engine's current mode. A
// Redis failure opens the breaker and the request is decided in fallback
// mode, as for rate limits.
func (e *Engine) takeQuota(ctx context.Context, r *rules.CompiledRule, key []byte, display string, cost int64) (check.Result, check.Mode) {
	var out quotaOutcome
	mode := e.mode()
	switch mode {
	case check.ModeLocal:
		out = e.quotas.local.take(key, r.Rule.Quota, cost, e.quotas.wall())
	case check.ModeLease:
		q := e.leases.quotaPart(r.Rule.Quota)
		out = e.quotas.local.take(key, &q, cost, e.quotas.wall())
		return quotaResult(r, q.Limit, display, cost, out), mode
	case check.ModeGlobal:
		var err error
		if out, err = e.quotas.global.take(ctx, r, key, display, cost); err != nil {
			e.health.failed(err)
			mode = check.ModeFallback
			out = e.quotas.global.takeFallback(key, r, display, cost, e.global.share(r.Rule.Name))
		}
	case check.ModeFallback:
		out = e.quotas.global.takeFallback(key, r, display, cost, e.global.share(r.Rule.Name))
	}
	return quotaResult(r, r.Rule.Quota.Limit, display, cost, out), mode
}

// quotaResult answers for quota rule r, of which this node decides limit.
func quotaResult(r *rules.CompiledRule, limit int64, display string, cost int64, out quotaOutcome) check.Result {
	used := max(0, limit-out.Remaining)
	res := check.Result{
		Rule:      r.Rule.Name,
		Key:       display,
		Allowed:   out.Allowed,
		Shadow:    r.Rule.Shadow,
		Limit:     limit,
		Used:      &used,
		Remaining: out.Remaining,
		ResetMs:   check.CeilMs(out.Reset),
		Reason:    out.Reason,
	}
	if !out.Allowed {
		res.RetryAfterMs = check.CeilMs(out.RetryAfter)
	}
	if out.TooCostly {
		res.Reason = fmt.Sprintf("cost %d exceeds quota %d", cost, limit)
		res.RetryAfterMs = 0
	}
	return res
}

// refundQuota gives back what takeQuota took for a request another rule
// denied, and corrects the rule's result to match.
func (e *Engine) refundQuota(r *rules.CompiledRule, key []byte, mode check.Mode, res *check.Result, cost int64) {
	switch mode {
	case check.ModeLocal:
		e.quotas.local.refund(key, r.Rule.Quota, cost, e.quotas.wall())
	case check.ModeLease:
		q := e.leases.quotaPart(r.Rule.Quota)
		e.quotas.local.refund(key, &q, cost, e.quotas.wall())
	case check.ModeGlobal:
		e.quotas.global.give(key, cost)
	case check.ModeFallback:
		e.quotas.global.refundFallback(key, cost)
	}
	res.Remaining += cost
	if res.Used != nil {
		*res.Used = max(0, *res.Used-cost)
	}
}

// flushQuotas writes changed local quota counters to the store (write-behind).
func (e *Engine) flushQuotas() {
	if err := e.quotas.local.flush(); err != nil {
		e.logger.Warn("writing quota counters", "err", err)
	}
}

// closeQuotas hands unused quota slices back to Redis and writes the local
// counters a last time.
func (e *Engine) closeQuotas(ctx context.Context) {
	q := e.quotas
	if q.global != nil && !e.health.isDown() {
		if err := q.global.close(ctx); err != nil {
			e.logger.Warn("handing unused quota slices back to redis on close; they count as used", "err", err)
		}
	}
	if err := q.local.close(); err != nil {
		e.logger.Error("writing quota counters on close", "err", err)
	}
}

// len is the number of keys with quota state in memory.
func (q *quotaPath) len() int {
	n := q.local.counters.len()
	if q.global != nil {
		n += q.global.len()
	}
	return n
}

// Usage reports the state of rule's bucket or quota for key, the key as
// decisions show it (values joined by "|"). A quota reports what its window
// has admitted as used. In global mode tokens out in nodes' slices and not
// yet spent are reserved, apart from both used and remaining.
func (e *Engine) Usage(ctx context.Context, rule, key string) (admin.Usage, error) {
	rs, i, bucketKey, err := e.usageTarget(rule, key)
	if err != nil {
		return admin.Usage{}, err
	}
	return e.usage(ctx, &rs.compiled.Rule(i).Rule, rs.limits[i], bucketKey, key)
}

// usage is Usage of rule r, whose bucket limit is lim (zero for a quota),
// for bucketKey, shown as key.
func (e *Engine) usage(ctx context.Context, r *rules.Rule, lim buckets.Limit, bucketKey []byte, key string) (admin.Usage, error) {
	rule := r.Name
	u := admin.Usage{Rule: rule, Key: key, Mode: e.mode()}
	var err error
	if q := r.Quota; q != nil {
		u.Limit = q.Limit
		var used, reserved int64
		var reset time.Duration
		switch u.Mode {
		case check.ModeLease:
			part := e.leases.quotaPart(q)
			q, u.Limit = &part, part.Limit
			fallthrough
		case check.ModeLocal:
			used, reset = e.quotas.local.peek(bucketKey, q, e.quotas.wall())
			u.Remaining = max(0, q.Limit-used)
		case check.ModeGlobal:
			if used, reserved, u.Remaining, reset, err = e.quotas.global.peek(ctx, rule, key, bucketKey, q); err != nil {
				e.health.failed(err)
				return admin.Usage{}, fmt.Errorf("%w: quota usage lives in redis: %v", admin.ErrUnavailable, err)
			}
		default:
			return admin.Usage{}, fmt.Errorf("%w: redis is unreachable and quota usage lives there", admin.ErrUnavailable)
		}
		u.Used, u.Reserved, u.ResetMs = &used, reserved, check.CeilMs(int64(reset))
		return u, nil
	}
	u.Limit = r.Limit.Rate
	if u.Mode == check.ModeGlobal {
		rl := r.Limit
		callCtx, cancel := context.WithTimeout(ctx, e.global.cfg.RedisTimeout)
		b, err := e.global.cfg.Limiter.Peek(callCtx, rule, key, lua.Bucket{Rate: rl.Rate, Per: time.Duration(rl.Per), Burst: rl.Burst})
		cancel()
		if err == nil {
			// What this node spent of its live slice is spent, not reserved.
			mine := min(e.global.slices.Spent(bucketKey, e.global.now()), b.Reserved)
			u.Remaining, u.Reserved, u.ResetMs = b.Remaining, b.Reserved-mine, check.CeilMs(int64(b.Reset))
			return u, nil
		}
		e.health.failed(err)
		u.Mode = check.ModeFallback
	}
	table := e.local
	switch u.Mode {
	case check.ModeFallback:
		table, lim = e.fallback, e.shareOf(rule, lim)
	case check.ModeLease:
		lim = e.shareOf(rule, lim)
	}
	out := table.Peek(bucketKey, lim, e.now())
	u.Remaining, u.ResetMs = out.Remaining, check.CeilMs(out.Reset)
	return u, nil
}

// ResetUsage starts rule's current quota window over for key. In local mode
// it resets this node's counter only (each node counts its own); in global
// mode it resets Redis's count, which every node's next slice comes from.
// Tokens already out in slices stay counted until settled.
func (e *Engine) ResetUsage(ctx context.Context, rule, key string) error {
	rs, i, bucketKey, err := e.usageTarget(rule, key)
	if err != nil {
		return err
	}
	q := rs.compiled.Rule(i).Rule.Quota
	if q == nil {
		return fmt.Errorf("%w: rule %q is a rate limit; only quotas can be reset", admin.ErrInvalid, rule)
	}
	switch e.mode() {
	case check.ModeLocal, check.ModeLease:
		e.quotas.local.reset(bucketKey)
		return nil
	case check.ModeGlobal:
		if err := e.quotas.global.reset(ctx, rule, key, q); err != nil {
			e.health.failed(err)
			return fmt.Errorf("%w: resetting the quota in redis: %v", admin.ErrUnavailable, err)
		}
		return nil
	default:
		return fmt.Errorf("%w: redis is unreachable and quotas live there", admin.ErrUnavailable)
	}
}

// usageTarget finds rule and the bucket key of display key key.
func (e *Engine) usageTarget(rule, key string) (*ruleSet, int, []byte, error) {
	rs := e.rules.Load()
	i, ok := rs.compiled.Index(rule)
	if !ok {
		return nil, 0, nil, fmt.Errorf("%w: %q", admin.ErrUnknownRule, rule)
	}
	r := rs.compiled.Rule(i)
	attrs, err := r.AttrsForDisplayKey(key)
	if err != nil {
		return nil, 0, nil, &check.FieldError{Field: "key", Msg: err.Error()}
	}
	return rs, i, r.AppendKey(nil, attrs), nil
}
