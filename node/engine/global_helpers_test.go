package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/lua"
)

// scriptCalls counts the token bucket script's calls on a real client (a
// go-redis hook, not a fake Redis), and can hold or delay them.
type scriptCalls struct {
	n        atomic.Int64
	acquires atomic.Int64
	// settles counts settle calls, settleTrips the round trips carrying them;
	// aheadAcquires counts acquires sent in pipelines (renewals ahead),
	// aheadTrips those pipelines.
	settles, settleTrips      atomic.Int64
	aheadAcquires, aheadTrips atomic.Int64
	// slow, if set, holds a lone acquire of its bucket until release closes.
	slow atomic.Pointer[slowKey]
	// before, if set, runs before an acquire goes out; after, once its
	// answer is in. Settles (e.g. the sweeper's) are counted but not held.
	before, after atomic.Pointer[func()]
}

// scriptOp is the token bucket script's op argument (EVALSHA sha numkeys
// key... op ...) and how many buckets the call serves: a renew_many or
// settle_many run counts as that many acquires or settles.
func scriptOp(cmd redis.Cmder) (op string, buckets int64) {
	args := cmd.Args()
	if len(args) < 3 {
		return "", 0
	}
	numKeys, _ := args[2].(int)
	if len(args) <= 4+numKeys {
		return "", 0
	}
	op, _ = args[3+numKeys].(string)
	switch op {
	case "renew_many", "settle_many":
		n, _ := args[4+numKeys].(int)
		return map[string]string{"renew_many": "acquire", "settle_many": "settle"}[op], int64(n)
	}
	return op, 1
}

func (c *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		c.n.Add(1)
		op, n := scriptOp(cmd)
		if op == "settle" {
			c.settles.Add(n)
			c.settleTrips.Add(1)
		}
		if op != "acquire" {
			return next(ctx, cmd)
		}
		c.acquires.Add(n)
		if f := c.before.Load(); f != nil {
			(*f)()
		}
		if k := c.slow.Load(); k != nil && cmd.Args()[3] == k.bucket {
			<-k.release
		}
		err := next(ctx, cmd)
		if f := c.after.Load(); f != nil {
			(*f)()
		}
		return err
	}
}

func (c *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var settles, acquires int64
		for _, cmd := range cmds {
			if name := cmd.Name(); name == "evalsha" || name == "eval" {
				c.n.Add(1)
				switch op, n := scriptOp(cmd); op {
				case "settle":
					settles += n
				case "acquire":
					acquires += n
				}
			}
		}
		if settles > 0 {
			c.settles.Add(settles)
			c.settleTrips.Add(1)
		}
		if acquires > 0 {
			c.aheadAcquires.Add(acquires)
			c.aheadTrips.Add(1)
		}
		return next(ctx, cmds)
	}
}

func (c *scriptCalls) count() int64 { return c.n.Load() }

// slowKey names a bucket (lua.RedisKey) whose acquires wait for release.
type slowKey struct {
	bucket  string
	release chan struct{}
}

// globalEngine is an engine in global mode with its Redis call counter and
// metrics.
type globalEngine struct {
	*Engine
	calls   *scriptCalls
	metrics *RedisMetrics
}

type globalOpts struct {
	nodes        int
	sliceTTL     time.Duration
	redisTimeout time.Duration
	// roomyTTL is GlobalConfig.RoomyTTL; zero means the production default,
	// negative turns roomy slices off.
	roomyTTL time.Duration
}

// newGlobalEngine starts an engine (with its background work) spending
// slices of the bucket in rdb; it is closed when the test ends.
func newGlobalEngine(t testing.TB, rdb redis.UniversalClient, o globalOpts, doc string) *globalEngine {
	t.Helper()
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	m := NewRedisMetrics(prometheus.NewRegistry())
	if o.roomyTTL == 0 {
		o.roomyTTL = DefaultRoomyTTL
	}
	e := New(WithGlobal(GlobalConfig{
		Limiter:      lua.NewLimiter(rdb),
		SliceTTL:     o.sliceTTL,
		RoomyTTL:     o.roomyTTL,
		RedisTimeout: o.redisTimeout,
		Nodes:        func() int { return o.nodes },
		Metrics:      m,
	}))
	e.SetRules(1, mustRules(t, doc))
	runEngine(t, e)
	return &globalEngine{Engine: e, calls: calls, metrics: m}
}

// entry returns the slice state of rule 0 for attrs.
func (g *globalEngine) entry(kv ...string) *buckets.SliceEntry {
	rs := g.rules.Load()
	r := rs.compiled.Rule(0)
	a := attrs(kv...)
	return g.global.slices.Entry(r.AppendKey(nil, a), r.Rule.Name, r.DisplayKey(a))
}

// peek reads the whole tokens in the Redis bucket of (rule, key).
func peek(t testing.TB, rdb redis.UniversalClient, rule, key string, b lua.Bucket) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := lua.NewLimiter(rdb).Peek(ctx, rule, key, b)
	if err != nil {
		t.Fatal(err)
	}
	return u.Remaining
}

// mustGlobal fails unless d was decided in global mode.
func mustGlobal(t testing.TB, d check.Decision) {
	t.Helper()
	if d.Mode != check.ModeGlobal {
		t.Fatalf("decision %+v: mode %q, want global", d, d.Mode)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var v dto.Metric
	if err := m.Write(&v); err != nil {
		t.Fatal(err)
	}
	if c := v.GetCounter(); c != nil {
		return c.GetValue()
	}
	return v.GetGauge().GetValue()
}
