package node

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
)

// GlobalConfig turns on global mode: decisions spend slices granted by the
// token bucket in Redis (SPEC §8).
type GlobalConfig struct {
	// Limiter runs the token bucket script.
	Limiter *lua.Limiter
	// SliceTTL is how long a node may spend one slice (--slice-ttl).
	SliceTTL time.Duration
	// RedisTimeout bounds every Redis call (--redis-timeout).
	RedisTimeout time.Duration
	// Nodes reports the cluster size; slices are at most a 1/Nodes share of
	// what the global bucket holds. Nil means 1.
	Nodes func() int
	// Share reports this node's share of a rule for fallback mode (its
	// lease, SPEC §7). Nil means an equal split: 1/Nodes.
	Share func(rule string) float64
	// Metrics may be nil.
	Metrics *RedisMetrics
}

// grantMargin is how much longer than the slice TTL Redis keeps a grant
// outstanding: the node stops spending at send time + TTL by its own clock,
// and the margin leaves the sweeper time to hand unused tokens back before
// Redis writes them off as spent.
func grantMargin(ttl time.Duration) time.Duration { return max(ttl, 100*time.Millisecond) }

// globalPath is the slice machinery between the engine and Redis.
type globalPath struct {
	cfg    GlobalConfig
	slices *buckets.SliceTable
	now    func() int64
}

func newGlobalPath(cfg GlobalConfig, now func() int64) *globalPath {
	if cfg.Nodes == nil {
		cfg.Nodes = func() int { return 1 }
	}
	return &globalPath{cfg: cfg, slices: buckets.NewSliceTable(), now: now}
}

// share is this node's fallback share of rule, in (0, 1].
func (g *globalPath) share(rule string) float64 {
	if g.cfg.Share != nil {
		return g.cfg.Share(rule)
	}
	return 1 / float64(max(g.cfg.Nodes(), 1))
}

// take spends cost tokens of (rule, key) from this node's slice, refilling the
// slice from Redis when it cannot cover the request. It returns an error only
// when Redis failed; the engine then decides in fallback mode.
func (g *globalPath) take(ctx context.Context, r *rules.CompiledRule, key []byte, display string, cost, now int64) (buckets.Outcome, error) {
	lim := r.Rule.Limit
	if cost > lim.Burst {
		return buckets.Outcome{TooCostly: true}, nil
	}
	e := g.slices.Entry(key, r.Rule.Name, display)
	e.Touch(now)
	if out, ok := fromSlice(e, cost, now); ok {
		return out, nil
	}
	if out, ok := e.DeniedAt(now); ok {
		return out, nil
	}
	gen := e.Generation()
	e.LockRefill()
	defer e.UnlockRefill()
	if e.Generation() != gen {
		// Another request refilled while this one waited: share its result
		// rather than going to Redis again.
		now = g.now()
		if out, ok := fromSlice(e, cost, now); ok {
			return out, nil
		}
		if out, ok := e.DeniedAt(now); ok {
			return out, nil
		}
	}
	return g.refill(ctx, e, lim, cost)
}

// fromSlice spends from the current slice when it can cover cost.
func fromSlice(e *buckets.SliceEntry, cost, now int64) (buckets.Outcome, bool) {
	s := e.Current()
	if s == nil {
		return buckets.Outcome{}, false
	}
	left, ok := s.Take(cost, now)
	if !ok {
		return buckets.Outcome{}, false
	}
	return buckets.Outcome{Allowed: true, Remaining: left + s.GlobalRemaining, Reset: max(0, s.Reset-(now-s.IssuedAt))}, true
}

// refill settles the current slice and asks Redis for the next one in the
// same call (refill lock held).
func (g *globalPath) refill(ctx context.Context, e *buckets.SliceEntry, lim *rules.Limit, cost int64) (buckets.Outcome, error) {
	sendAt := g.now()
	id, granted, unused := e.Retire(sendAt)
	e.SetParams(buckets.BucketParams{Rate: lim.Rate, Per: int64(lim.Per), Burst: lim.Burst})
	ttl := g.cfg.SliceTTL
	want := e.WantSize(buckets.SizeParams{
		Cost: cost, Burst: lim.Burst, Rate: float64(lim.Rate) / time.Duration(lim.Per).Seconds(),
		TTL: int64(ttl), Nodes: g.cfg.Nodes(), Now: sendAt,
	})
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	grant, err := g.cfg.Limiter.Renew(ctx, e.Rule, e.Key, lua.Bucket{Rate: lim.Rate, Per: time.Duration(lim.Per), Burst: lim.Burst},
		lua.Settlement{ID: id, Granted: granted, Unused: unused}, want, cost, ttl+grantMargin(ttl))
	g.cfg.Metrics.observe("acquire", err, time.Since(start))
	if err != nil {
		return buckets.Outcome{}, err
	}
	now := g.now()
	if grant.Never {
		return buckets.Outcome{TooCostly: true, Remaining: grant.Remaining, Reset: int64(grant.Reset)}, nil
	}
	var out buckets.Outcome
	if grant.Granted > 0 {
		g.cfg.Metrics.refilled()
		s := buckets.NewSlice(grant.ID, grant.Granted, sendAt, sendAt+int64(ttl), grant.Remaining, int64(grant.Reset))
		left, _ := s.Take(cost, now) // granted >= cost: min was cost
		e.Install(s, now)
		out = buckets.Outcome{Allowed: true, Remaining: left + grant.Remaining, Reset: int64(grant.Reset)}
	}
	if grant.Granted == 0 || grant.Remaining == 0 {
		// Not enough left. Rather than going back to Redis for each token as
		// it trickles in, let tokens accumulate for a while: once this node's
		// slice is spent, deny locally until then. The pause is short enough
		// that the bucket cannot fill up meanwhile, so no token is lost to it.
		pause := int64(grant.RetryAfter)
		if grant.Remaining == 0 {
			pause = max(pause, refillPause(lim, g.cfg.Nodes()))
		}
		pause = min(pause, int64(ttl))
		e.Deny(buckets.Outcome{Remaining: grant.Remaining, Reset: int64(grant.Reset), RetryAfter: max(int64(grant.RetryAfter), pause)}, now+pause, now)
	}
	if grant.Granted == 0 {
		out = buckets.Outcome{Remaining: grant.Remaining, Reset: int64(grant.Reset), RetryAfter: int64(grant.RetryAfter)}
	}
	return out, nil
}

// refillPause is how long a fair share (1/nodes) of the burst takes to
// accumulate in the global bucket.
func refillPause(lim *rules.Limit, nodes int) int64 {
	perToken := int64(lim.Per) / lim.Rate
	return perToken * max(lim.Burst/int64(max(nodes, 1)), 1)
}

// give returns tokens to the slice they came from (all-or-nothing refunds).
func (g *globalPath) give(key []byte, r *rules.CompiledRule, display string, cost int64) {
	if s := g.slices.Entry(key, r.Rule.Name, display).Current(); s != nil {
		s.Give(cost)
	}
}

// expire hands the unused tokens of slices past their deadline back to Redis
// and forgets idle keys.
func (g *globalPath) expire(ctx context.Context, idleFor time.Duration) {
	now := g.now()
	g.slices.Expire(now, now-int64(idleFor), func(e *buckets.SliceEntry, s *buckets.Slice, unused int64) {
		g.settle(ctx, e, s, unused)
	})
}

// settle gives a closed slice's unused tokens back to Redis.
func (g *globalPath) settle(ctx context.Context, e *buckets.SliceEntry, s *buckets.Slice, unused int64) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	// The rule's current limit may differ from the one the grant was made
	// under; the script only uses it to refill and cap, both safe.
	p := e.Params()
	b := lua.Bucket{Rate: p.Rate, Per: time.Duration(p.Per), Burst: p.Burst}
	_, err := g.cfg.Limiter.Settle(ctx, e.Rule, e.Key, b, s.GrantID, s.Granted, unused)
	g.cfg.Metrics.observe("settle", err, time.Since(start))
}

// closeAll settles every open slice: on shutdown unused tokens go back.
func (g *globalPath) closeAll(ctx context.Context) {
	g.slices.Close(func(e *buckets.SliceEntry, s *buckets.Slice, unused int64) {
		g.settle(ctx, e, s, unused)
	})
}
