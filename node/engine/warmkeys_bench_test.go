package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua/redistest"
)

// warmRule is far above what the benchmark asks of any one key.
const warmRule = `{"rules": [{"name": "warm", "key": ["k"], "limit": {"rate": 100000, "per": "1s"}}]}`

// BenchmarkWarmKeys compares, in one run, a node deciding many warm keys (each far below
// its limit) without Redis (local) and with it (global mode, production slice timings),
// and measures the Redis side: script calls, round trips and Redis CPU per decision, next
// to what one INCRBY+EXPIRE per check (a counter per request, as envoy ratelimit does)
// costs the same Redis (docs/PERFORMANCE.md).
func BenchmarkWarmKeys(b *testing.B) {
	srv := redistest.StartServer(b)
	probe := dialRedis(b, 5*time.Second, srv.Addr())
	for _, keys := range []int{1000, 100000} {
		reqs := make([]check.Request, keys)
		for i := range reqs {
			reqs[i] = check.Request{Attributes: attrs("k", "key-"+strconv.Itoa(i)), Cost: 1}
		}
		local := New()
		local.SetRules(1, mustRules(b, warmRule))
		runEngine(b, local)
		global := newGlobalEngine(b, dialRedis(b, time.Second, srv.Addr()),
			globalOpts{nodes: 1, sliceTTL: 250 * time.Millisecond, redisTimeout: time.Second}, warmRule)
		warmUp(b, global, reqs)
		// Global first, straight after the warm-up. Figures include each
		// key's renewal ahead only when the run lasts a roomy lifetime
		// (DefaultRoomyTTL); a shorter run shows the decisions between
		// renewals, and docs/PERFORMANCE.md adds the renewals' cost.
		b.Run(fmt.Sprintf("keys=%d/redis", keys), func(b *testing.B) {
			before, trips := redisStats(b, probe), metricValue(b, global.metrics.trips)
			driveWarmKeys(b, global.Engine, reqs)
			after := redisStats(b, probe)
			n := float64(b.N)
			b.ReportMetric((after.scriptCalls-before.scriptCalls)/n, "script-calls/op")
			b.ReportMetric((metricValue(b, global.metrics.trips)-trips)/n, "round-trips/op")
			b.ReportMetric((after.scriptUsec-before.scriptUsec)/n, "redis-script-µs/op")
			b.ReportMetric((after.cpuUsec-before.cpuUsec)/n, "redis-cpu-µs/op")
		})
		b.Run(fmt.Sprintf("keys=%d/local", keys), func(b *testing.B) { driveWarmKeys(b, local, reqs) })
	}
	b.Run("baseline=incrby+expire", func(b *testing.B) {
		rdb := dialRedis(b, time.Second, srv.Addr())
		before := redisStats(b, probe)
		var next atomic.Int64
		b.SetParallelism(8) // callers waiting on Redis, as a per-request counter's would
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				key := "ctr:" + strconv.FormatInt(next.Add(1)%1000, 10)
				pipe := rdb.Pipeline()
				pipe.IncrBy(ctx, key, 1)
				pipe.Expire(ctx, key, time.Second)
				if _, err := pipe.Exec(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
		after := redisStats(b, probe)
		n := float64(b.N)
		b.ReportMetric((after.counterUsec-before.counterUsec)/n, "redis-cmd-µs/op")
		b.ReportMetric((after.cpuUsec-before.cpuUsec)/n, "redis-cpu-µs/op")
	})
}

// driveWarmKeys decides b.N requests spread evenly over reqs from GOMAXPROCS goroutines.
// It reports the share denied: none, unless a grant came back after its slice's deadline
// on an overloaded machine.
func driveWarmKeys(b *testing.B, e *Engine, reqs []check.Request) {
	var worker, denied atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		var d check.Decision
		for pb.Next() {
			i++
			if err := e.DecideInto(context.Background(), &reqs[i%len(reqs)], &d); err != nil {
				b.Error(err)
				return
			}
			if !d.Allowed {
				denied.Add(1)
			}
		}
	})
	b.ReportMetric(float64(denied.Load())/float64(b.N), "denied/op")
}

// warmUp drives every key the way the measurement will, round after round over all keys
// from 16 goroutines, until the keys are warm: each has had three grants (its first
// token, a roomy slice sized by the slow first rounds, and one sized by the demand of
// rounds at the measured pace) and the last round made at most one Redis call per 20
// keys. That is the state after a minute of steady traffic; at most 60 rounds.
func warmUp(b *testing.B, e *globalEngine, reqs []check.Request) {
	start := e.calls.acquires.Load()
	for range 60 {
		calls := e.calls.acquires.Load()
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				var d check.Decision
				for i := w; i < len(reqs); i += 16 {
					if err := e.DecideInto(context.Background(), &reqs[i], &d); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		now := e.calls.acquires.Load()
		if now-start >= int64(3*len(reqs)) && now-calls <= int64(len(reqs)/20) {
			return
		}
	}
}

// redisSide is what Redis reports about its own work.
type redisSide struct {
	scriptCalls, scriptUsec float64 // EVALSHA and EVAL (commands inside scripts included)
	counterUsec             float64 // INCRBY and EXPIRE
	cpuUsec                 float64 // the server process's user + system CPU
}

func redisStats(b testing.TB, rdb redis.UniversalClient) redisSide {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var s redisSide
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "used_cpu_user", "used_cpu_sys":
			v, _ := strconv.ParseFloat(rest, 64)
			s.cpuUsec += v * 1e6
		case "cmdstat_evalsha", "cmdstat_eval", "cmdstat_incrby", "cmdstat_expire":
			stat := map[string]float64{}
			for kv := range strings.SplitSeq(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				stat[k], _ = strconv.ParseFloat(v, 64)
			}
			if name == "cmdstat_incrby" || name == "cmdstat_expire" {
				s.counterUsec += stat["usec"]
			} else {
				s.scriptCalls += stat["calls"]
				s.scriptUsec += stat["usec"]
			}
		}
	}
	return s
}
