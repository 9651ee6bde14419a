package engine

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

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
	// RoomyTTL is how long a node may spend a roomy slice, granted while the
	// key's global bucket stays at least half full (--slice-max-ttl). At or
	// below SliceTTL, slices are never roomy.
	RoomyTTL time.Duration
	// RedisTimeout bounds every Redis call (--redis-timeout). Keep it well
	// below SliceTTL: a grant answered after its slice's deadline is not
	// spent but handed back.
	RedisTimeout time.Duration
	// Nodes reports the cluster size; slices are at most a 1/Nodes share of
	// what the global bucket holds. Nil means 1.
	Nodes func() int
	// Share reports this node's share of a rule for fallback mode (its
	// lease, SPEC §7). Nil means an equal split: 1/Nodes.
	Share func(rule string) float64
	// Withheld reports the part of rule other nodes may be admitting on
	// their own in fallback mode (Node.Withheld); refills draw only
	// rate·(1 − Withheld) from Redis meanwhile. Nil means 0.
	Withheld func(rule string) float64
	// Metrics may be nil.
	Metrics *RedisMetrics
}

// DefaultRoomyTTL is the default lifetime of roomy slices (--slice-max-ttl).
const DefaultRoomyTTL = 5 * time.Minute

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
	// spentSettles holds a token per settleSpent call in flight.
	spentSettles chan struct{}
	// lastFullSweep is when expire last visited every key (sweeper only).
	lastFullSweep int64
}

// fullSweepEvery is how often the sweeper visits every key rather than
// only the slices due: idle keys are forgotten after idleSliceEntry, so
// seconds of delay cost nothing there, and a slice drained faster than its
// looks foresaw is still caught.
const fullSweepEvery = 2 * time.Second

func newGlobalPath(cfg GlobalConfig, now func() int64) *globalPath {
	if cfg.Nodes == nil {
		cfg.Nodes = func() int { return 1 }
	}
	return &globalPath{cfg: cfg, slices: buckets.NewSliceTable(), now: now, spentSettles: make(chan struct{}, settleParallelism)}
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
	// Read before looking at the slice: a refill that lands after this
	// point, however soon, then shows as a changed generation below.
	gen := e.Generation()
	if out, ok := fromSlice(e, cost, now, g.now); ok {
		return out, nil
	}
	if out, ok := e.DeniedAt(now); ok {
		g.settleSpent(e)
		return out, nil
	}
	e.LockRefill(cost)
	defer e.UnlockRefill()
	if e.Generation() != gen {
		// Another request refilled while this one waited: share its result
		// rather than going to Redis again.
		now = g.now()
		if out, ok := fromSlice(e, cost, now, g.now); ok {
			return out, nil
		}
		if out, ok := e.DeniedAt(now); ok {
			return out, nil
		}
	}
	out, late, err := g.refill(ctx, e, lim, cost)
	if late {
		// The grant came back after its slice's deadline and cannot be
		// spent. The node was slow, not the client: ask once more (the
		// late slice is settled in the same call) rather than deny.
		out, _, err = g.refill(ctx, e, lim, cost)
	}
	return out, err
}

// settleSpent settles a slice that ran out while the key is denied locally,
// in the background, rather than at the key's next refill after the pause.
// Redis counts a grant as outstanding until it is settled or expires, and
// refills the bucket only up to burst − outstanding: spent slices left
// unsettled while every node waits would cap the bucket and lose the tokens
// the wait meant to let build up. At most settleParallelism such settles run
// at once; past that the slice is left for a later denial or the next
// refill, which errs on the safe side.
func (g *globalPath) settleSpent(e *buckets.SliceEntry) {
	s := e.Current()
	if s == nil || s.Left() > 0 {
		return
	}
	select {
	case g.spentSettles <- struct{}{}:
	default:
		return
	}
	unused, ok := s.Close()
	if !ok {
		<-g.spentSettles
		return
	}
	go func() {
		defer func() { <-g.spentSettles }()
		g.settle(context.Background(), e, s, unused)
	}()
}

// fromSlice spends from the current slice when it can cover cost.
func fromSlice(e *buckets.SliceEntry, cost, now int64, clock func() int64) (buckets.Outcome, bool) {
	s := e.Current()
	if s == nil {
		return buckets.Outcome{}, false
	}
	left, ok := s.Take(cost, clock)
	if !ok {
		return buckets.Outcome{}, false
	}
	return buckets.Outcome{Allowed: true, Remaining: left + s.GlobalRemaining, Reset: max(0, s.Reset-(now-s.IssuedAt))}, true
}

// renewal is a refill's call to Redis, prepared with the key's refill lock
// held: the current slice retired (its unused tokens settled by the call)
// and the next one sized.
type renewal struct {
	e      *buckets.SliceEntry
	lim    *rules.Limit
	sendAt int64
	call   lua.RenewCall
}

func (g *globalPath) prepare(e *buckets.SliceEntry, lim *rules.Limit, cost int64) renewal {
	sendAt := g.now()
	id, granted, unused := e.Retire(sendAt)
	e.SetParams(buckets.BucketParams{Rate: lim.Rate, Per: int64(lim.Per), Burst: lim.Burst})
	ttl := g.cfg.SliceTTL
	want := e.WantSize(buckets.SizeParams{
		Cost: cost, Burst: lim.Burst, Rate: float64(lim.Rate) / time.Duration(lim.Per).Seconds(),
		TTL: int64(ttl), Nodes: g.cfg.Nodes(), Now: sendAt,
	})
	return renewal{e: e, lim: lim, sendAt: sendAt, call: lua.RenewCall{
		Rule: e.Rule, Key: e.Key, Bucket: g.bucket(e.Rule, e.Params()),
		Prev: lua.Settlement{ID: id, Granted: granted, Unused: unused},
		Want: want, Min: cost, TTL: ttl + grantMargin(ttl), Roomy: g.roomy(e, lim, want),
	}}
}

// refill settles the current slice and asks Redis for the next one in the
// same call (refill lock held). late reports a grant that came back after
// its slice's deadline, which the request could not spend.
func (g *globalPath) refill(ctx context.Context, e *buckets.SliceEntry, lim *rules.Limit, cost int64) (out buckets.Outcome, late bool, err error) {
	r := g.prepare(e, lim, cost)
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	c := &r.call
	grant, err := g.cfg.Limiter.RenewRoomy(ctx, c.Rule, c.Key, c.Bucket, c.Prev, c.Want, c.Min, c.TTL, c.Roomy)
	g.cfg.Metrics.observe("acquire", err, time.Since(start))
	if err != nil {
		return buckets.Outcome{}, false, err
	}
	out, late = g.finish(r, grant, cost)
	return out, late, nil
}

// finish installs what Redis granted for r (refill lock held) and decides
// the request of cost tokens that asked for it (0: a renewal ahead of time,
// with no request to decide); late as for refill.
func (g *globalPath) finish(r renewal, grant lua.Grant, cost int64) (out buckets.Outcome, late bool) {
	e, lim, sendAt, ttl := r.e, r.lim, r.sendAt, g.cfg.SliceTTL
	now := g.now()
	if grant.Never {
		return buckets.Outcome{TooCostly: true, Remaining: grant.Remaining, Reset: int64(grant.Reset)}, false
	}
	if grant.Granted > 0 {
		g.cfg.Metrics.refilled()
		// A roomy grant lives RoomyTTL (plus the same margin) in Redis.
		life := grant.TTL - grantMargin(ttl)
		s := buckets.NewSlice(grant.ID, grant.Granted, sendAt, sendAt+int64(life), grant.Remaining, int64(grant.Reset))
		// The grant covers cost (min was cost), but an answer that came back
		// after the slice's deadline must not be spent: Redis may already
		// have written it off. The next refill or the sweeper hands its
		// tokens back.
		left, ok := s.Take(cost, g.now)
		e.Install(s, now)
		if !ok {
			return buckets.Outcome{Remaining: s.Left() + grant.Remaining, Reset: int64(grant.Reset), RetryAfter: lateSliceRetry}, true
		}
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
		// A grant this request spent whole (at low rates a slice is one
		// token) would otherwise stay outstanding through the pause.
		g.settleSpent(e)
	}
	if grant.Granted == 0 {
		out = buckets.Outcome{Remaining: grant.Remaining, Reset: int64(grant.Reset), RetryAfter: int64(grant.RetryAfter)}
	}
	return out, false
}

// roomy is the larger, longer-lived slice to ask for in place of want while
// the key's global bucket is far from empty: the key's demand over RoomyTTL
// (with headroom), at most a roomyShare of the burst split between the
// nodes. The script grants it only if the bucket keeps at least half its
// burst, so near the limit slices are sized by want as before.
func (g *globalPath) roomy(e *buckets.SliceEntry, lim *rules.Limit, want int64) lua.Roomy {
	life := g.cfg.RoomyTTL
	if life <= g.cfg.SliceTTL {
		return lua.Roomy{}
	}
	size := min(e.DemandOver(int64(life)), int64(float64(lim.Burst)*roomyShare)/int64(max(g.cfg.Nodes(), 1)))
	if size <= want {
		return lua.Roomy{}
	}
	return lua.Roomy{Want: size, TTL: life + grantMargin(g.cfg.SliceTTL)}
}

// roomyShare bounds what all nodes together hold in roomy slices of one key:
// at most a quarter of its burst is out for longer than a slice TTL, which is
// also the most a crashed node's unsettled roomy slices keep from the bucket
// until they expire.
const roomyShare = 0.25

// bucket is the Redis bucket of rule with limit p, its rate lowered to
// rate·(1 − w) while other nodes may be admitting a share w of the rule on
// their own (GlobalConfig.Withheld). The script refills by the rate of the
// call that refills, so while every node in global mode passes the lowered
// rate, Redis and the fallback nodes together admit at most the rule's
// rate (docs/DESIGN.md, Safety §3).
func (g *globalPath) bucket(rule string, p buckets.BucketParams) lua.Bucket {
	b := lua.Bucket{Rate: p.Rate, Per: time.Duration(p.Per), Burst: p.Burst}
	if g.cfg.Withheld == nil {
		return b
	}
	return withhold(b, g.cfg.Withheld(rule))
}

// withholdScale: the script takes whole tokens per whole microseconds, so
// a lowered rate is expressed per withholdScale periods, keeping three
// more digits of it. maxScriptInt is the script's largest integer argument.
const (
	withholdScale = 1000
	maxScriptInt  = 1 << 53
)

// withhold returns b with its rate multiplied by 1 − w, rounded down (but
// at least one token per scaled period, as the script requires).
func withhold(b lua.Bucket, w float64) lua.Bucket {
	if !(w > 0) {
		return b
	}
	perUs := max(b.Per.Microseconds(), 1)
	scale := min(int64(withholdScale), maxScriptInt/perUs, math.MaxInt64/max(int64(b.Per), 1))
	scale = max(scale, 1)
	rate := float64(b.Rate) * float64(scale) * max(0, 1-w)
	return lua.Bucket{Rate: max(1, int64(math.Min(rate, maxScriptInt))), Per: b.Per * time.Duration(scale), Burst: b.Burst}
}

// lateSliceRetry is the retry-after of a request whose grant arrived too late
// to spend twice in a row: the next request gets a fresh slice.
const lateSliceRetry = int64(time.Millisecond)

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

// expire hands the unused tokens of slices past their deadline back to Redis;
// roomy slices of keys still in use that end within two slice TTLs are
// renewed ahead, in pipelines (limit reads a rule's current limit; nil for a
// rule that is gone). It visits only the slices due (SliceTable.Due), and
// every fullSweepEvery all keys, forgetting idle ones (SliceTable.Expire). It returns the first Redis
// error: grants whose settle failed expire in Redis and count as spent,
// which is safe.
func (g *globalPath) expire(ctx context.Context, idleFor time.Duration, limit func(rule string) *rules.Limit) error {
	now := g.now()
	s := g.newSettler(ctx)
	var ahead *buckets.RenewAhead
	if g.cfg.RoomyTTL > g.cfg.SliceTTL {
		ahead = &buckets.RenewAhead{Before: now + 2*int64(g.cfg.SliceTTL), MinLife: int64(g.cfg.SliceTTL) + 1}
	}
	var renew []*buckets.SliceEntry
	if now-g.lastFullSweep >= int64(fullSweepEvery) {
		g.lastFullSweep = now
		_, renew = g.slices.Expire(now, now-int64(idleFor), ahead, s.settle)
	} else {
		renew = g.slices.Due(now, ahead, s.settle)
	}
	err := s.wait()
	if rerr := g.renewAll(ctx, renew, limit); err == nil {
		err = rerr
	}
	return err
}

// renewAll renews entries' slices, settleBatch per pipeline. An entry whose
// refill lock is taken (a request is refilling it) or whose rule is gone is
// skipped. A renewal that fails leaves the key without a slice, as a failed
// refill does.
func (g *globalPath) renewAll(ctx context.Context, entries []*buckets.SliceEntry, limit func(rule string) *rules.Limit) error {
	var first error
	for chunk := range slices.Chunk(entries, settleBatch) {
		rs := make([]renewal, 0, len(chunk))
		calls := make([]lua.RenewCall, 0, len(chunk))
		for _, e := range chunk {
			lim := limit(e.Rule)
			if lim == nil || !e.TryLockRefill() {
				continue
			}
			r := g.prepare(e, lim, 1)
			rs, calls = append(rs, r), append(calls, r.call)
		}
		if len(calls) == 0 {
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
		start := time.Now()
		grants, errs, scripts := g.cfg.Limiter.RenewAll(callCtx, calls)
		cancel()
		var err error
		for i, r := range rs {
			if errs[i] == nil {
				g.finish(r, grants[i], 0)
			} else if err == nil {
				err = errs[i]
			}
			r.e.UnlockRefill()
		}
		g.cfg.Metrics.observeTrip("acquire", len(calls), scripts, err, time.Since(start))
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// closeAll settles every open slice: on shutdown unused tokens go back.
func (g *globalPath) closeAll(ctx context.Context) error {
	s := g.newSettler(ctx)
	g.slices.Close(s.settle)
	return s.wait()
}

// settleParallelism bounds the settles of spent slices in flight at once
// (settleSpent), and the sweeper's settle pipelines in flight at once.
const settleParallelism = 16

// settleBatch is the most settles or renewals one pipeline carries, in
// script runs of up to 128 keys each: a sweep over many keys costs a round
// trip per settleBatch keys, and ends well within the grants' margin.
const settleBatch = 1024

// settler collects closed slices' unused tokens during a sweep and hands
// them back to Redis in pipelines when the sweep is done.
type settler struct {
	g     *globalPath
	ctx   context.Context
	calls []lua.SettleCall
}

func (g *globalPath) newSettler(ctx context.Context) *settler {
	return &settler{g: g, ctx: ctx}
}

func (s *settler) settle(e *buckets.SliceEntry, sl *buckets.Slice, unused int64) {
	s.calls = append(s.calls, lua.SettleCall{Rule: e.Rule, Key: e.Key, Bucket: s.g.bucket(e.Rule, e.Params()),
		Settlement: lua.Settlement{ID: sl.GrantID, Granted: sl.Granted, Unused: unused}})
}

// wait sends the collected settles and returns the first Redis error.
func (s *settler) wait() error {
	var group errgroup.Group
	group.SetLimit(settleParallelism)
	var first atomic.Pointer[error]
	for chunk := range slices.Chunk(s.calls, settleBatch) {
		group.Go(func() error {
			ctx, cancel := context.WithTimeout(s.ctx, s.g.cfg.RedisTimeout)
			defer cancel()
			start := time.Now()
			_, scripts, err := s.g.cfg.Limiter.SettleAll(ctx, chunk)
			s.g.cfg.Metrics.observeTrip("settle", len(chunk), scripts, err, time.Since(start))
			if err != nil {
				first.CompareAndSwap(nil, &err)
			}
			return nil
		})
	}
	group.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return nil
}

// settle gives a closed slice's unused tokens back to Redis.
func (g *globalPath) settle(ctx context.Context, e *buckets.SliceEntry, s *buckets.Slice, unused int64) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	// The rule's current limit may differ from the one the grant was made
	// under; the script only uses it to refill and cap, both safe.
	_, err := g.cfg.Limiter.Settle(ctx, e.Rule, e.Key, g.bucket(e.Rule, e.Params()), s.GrantID, s.Granted, unused)
	g.cfg.Metrics.observe("settle", err, time.Since(start))
	return err
}
