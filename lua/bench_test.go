package lua_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// benchmarkLimiter returns a Limiter on a fresh standalone server and a bucket that never runs dry.
func benchmarkLimiter(b *testing.B) (*lua.Limiter, lua.Bucket) {
	s := redistest.StartServer(b)
	rdb, err := lua.Dial(context.Background(), s.Addr(), "single", time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	return lua.NewLimiter(rdb), lua.Bucket{Rate: 1e9, Per: time.Second, Burst: 1e9}
}

// BenchmarkAcquire measures one Acquire round trip, the cost of refilling a slice.
func BenchmarkAcquire(b *testing.B) {
	lim, bucket := benchmarkLimiter(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := lim.Acquire(ctx, "bench", "k", bucket, 10, 1, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireParallel measures Acquire throughput with concurrent callers on distinct keys.
func BenchmarkAcquireParallel(b *testing.B) {
	lim, bucket := benchmarkLimiter(b)
	ctx := context.Background()
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		key := strconv.FormatInt(worker.Add(1), 10)
		for pb.Next() {
			if _, err := lim.Acquire(ctx, "bench", key, bucket, 10, 1, time.Second); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRenew measures a slice renewal as nodes make it (settle the key's previous
// grant, grant the next, one call) over 1000 keys, and what it costs Redis: the script's
// own time per call from INFO commandstats (redis-script-µs/op).
func BenchmarkRenew(b *testing.B) {
	s := redistest.StartServer(b)
	rdb, err := lua.Dial(context.Background(), s.Addr(), "single", time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	lim, bucket := lua.NewLimiter(rdb), lua.Bucket{Rate: 1e9, Per: time.Second, Burst: 1e9}
	ctx := context.Background()
	scriptUsec := func() float64 {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		var usec float64
		for line := range strings.Lines(info) {
			for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
					_, after, _ := strings.Cut(rest, "usec=")
					v, _ := strconv.ParseFloat(after[:strings.IndexByte(after, ',')], 64)
					usec += v
				}
			}
		}
		return usec
	}
	const keys = 1000
	prev := make([]lua.Settlement, keys)
	before := scriptUsec()
	i := 0
	for b.Loop() {
		k := i % keys
		g, err := lim.Renew(ctx, "bench", strconv.Itoa(k), bucket, prev[k], 10, 1, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		prev[k] = lua.Settlement{ID: g.ID, Granted: g.Granted, Unused: 2}
		i++
	}
	b.ReportMetric((scriptUsec()-before)/float64(b.N), "redis-script-µs/op")
}
