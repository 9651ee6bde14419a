package lua_test

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// testTimeout is the Dial timeout in tests: generous, as -race on two shared cores is slow.
const testTimeout = 2 * time.Second

// The same script tests run against a standalone server and a Redis Cluster, each reached
// through a client from Dial in auto mode.

func TestStandalone(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	rdb := dial(t, s.Addr())
	if _, ok := rdb.(*redis.Client); !ok {
		t.Fatalf("Dial auto on a standalone server made a %T, want *redis.Client", rdb)
	}
	runScriptTests(t, rdb)
	t.Run("Bookkeeping", func(t *testing.T) { testBookkeeping(t, newEnv(t, rdb)) })
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	rdb := dial(t, c.Addrs()[0])
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("Dial auto on a cluster node made a %T, want *redis.ClusterClient", rdb)
	}
	runScriptTests(t, rdb)
	t.Run("Failover", func(t *testing.T) { testFailover(t, rdb, c) })
}

// runScriptTests runs the semantic tests in parallel, each on its own rule, then the ones
// that disturb the whole server.
func runScriptTests(t *testing.T, rdb redis.UniversalClient) {
	t.Run("group", func(t *testing.T) {
		for name, test := range map[string]func(*testing.T, *env){
			"Refill":              testRefill,
			"PartialGrants":       testPartialGrants,
			"RetryWaitsForGrants": testRetryWaitsForGrants,
			"RetryAfterAGrant":    testRetryAfterAGrant,
			"Settle":              testSettle,
			"Renew":               testRenew,
			"SettleCap":           testSettleCap,
			"ExpiredGrantIsSpent": testExpiredGrantIsSpent,
			"KeysExpire":          testKeysExpire,
			"Never":               testNever,
			"BadArguments":        testBadArguments,
			"Invariant":           testInvariant,
			"LongKey":             testLongKey,
			"Accuracy":            testAccuracy,
			"AdoptsLegacyGrants":  testAdoptsLegacyGrants,
			"Roomy":               testRoomy,
			"SettleAll":           testSettleAll,
			"RenewAll":            testRenewAll,
			"SlotGroups":          testSlotGroups,
			"ManyInvariant":       testManyInvariant,
			"ManyBadArguments":    testManyBadArguments,
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				test(t, newEnv(t, rdb))
			})
		}
	})
	t.Run("NoscriptReload", func(t *testing.T) { testNoscriptReload(t, newEnv(t, rdb)) })
}

func dial(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	rdb, err := lua.Dial(t.Context(), addr, "auto", testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// env is one test's view of a backend, with a rule name no other test uses.
type env struct {
	t    *testing.T
	rdb  redis.UniversalClient
	lim  *lua.Limiter
	rule string
}

func newEnv(t *testing.T, rdb redis.UniversalClient) *env {
	return &env{t: t, rdb: rdb, lim: lua.NewLimiter(rdb), rule: strings.ReplaceAll(t.Name(), "/", ".")}
}

func (e *env) acquire(key string, b lua.Bucket, want, min int64, ttl time.Duration) lua.Grant {
	e.t.Helper()
	g, err := e.lim.Acquire(e.t.Context(), e.rule, key, b, want, min, ttl)
	if err != nil {
		e.t.Fatalf("Acquire(want %d, min %d): %v", want, min, err)
	}
	return g
}

func (e *env) settle(key string, b lua.Bucket, g lua.Grant, unused int64) bool {
	e.t.Helper()
	found, err := e.lim.Settle(e.t.Context(), e.rule, key, b, g.ID, g.Granted, unused)
	if err != nil {
		e.t.Fatalf("Settle(%d, %d, %d): %v", g.ID, g.Granted, unused, err)
	}
	return found
}

func (e *env) peek(key string, b lua.Bucket) (int64, time.Duration) {
	e.t.Helper()
	u, err := e.lim.Peek(e.t.Context(), e.rule, key, b)
	if err != nil {
		e.t.Fatalf("Peek: %v", err)
	}
	return u.Remaining, u.Reset
}

// redisNow reads Redis TIME; every test node runs on this machine's clock.
func (e *env) redisNow() time.Time {
	e.t.Helper()
	now, err := e.rdb.Time(e.t.Context()).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return now
}

// state is what the script stores for a bucket.
type state struct {
	tk       float64
	o        int64
	grantSum int64   // sum of the amounts of the grant fields
	expiries []int64 // grant expiries, µs of Redis time
}

func (e *env) state(key string) state {
	e.t.Helper()
	h, err := e.rdb.HGetAll(e.t.Context(), lua.RedisKey(e.rule, key)).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var s state
	if h["tk"] != "" {
		if s.tk, err = strconv.ParseFloat(h["tk"], 64); err != nil {
			e.t.Fatal(err)
		}
		if s.o, err = strconv.ParseInt(h["o"], 10, 64); err != nil {
			e.t.Fatal(err)
		}
	}
	for field, v := range h {
		if !strings.HasPrefix(field, "g") {
			continue
		}
		amount, expiry, _ := strings.Cut(v, ":")
		n, err1 := strconv.ParseInt(amount, 10, 64)
		x, err2 := strconv.ParseInt(expiry, 10, 64)
		if err1 != nil || err2 != nil {
			e.t.Fatalf("grant %s = %q, want <amount>:<expiry>", field, v)
		}
		s.grantSum += n
		s.expiries = append(s.expiries, x)
	}
	slices.Sort(s.expiries)
	return s
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tokensIn is how many whole tokens b refills in d.
func tokensIn(b lua.Bucket, d time.Duration) int64 {
	return int64(math.Floor(float64(d) * float64(b.Rate) / float64(b.Per)))
}

func testFailover(t *testing.T, rdb redis.UniversalClient, c *redistest.Cluster) {
	e := newEnv(t, rdb)
	b := lua.Bucket{Rate: 1000, Per: time.Second, Burst: 100}
	if g := e.acquire("k", b, 1, 1, time.Second); g.Granted != 1 {
		t.Fatalf("before failover granted %d, want 1", g.Granted)
	}
	master := c.MasterFor(lua.RedisKey(e.rule, "k"))
	c.KillNode(master)
	c.WaitFailover(master)
	promoted := e.redisNow()
	waitUntil(t, 5*time.Second, "Acquire to work after the failover", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		g, err := e.lim.Acquire(ctx, e.rule, "k", b, 1, 1, time.Second)
		return err == nil && g.Granted == 1
	})
	t.Logf("Acquire worked again %v after the cluster was healthy", e.redisNow().Sub(promoted))
}
