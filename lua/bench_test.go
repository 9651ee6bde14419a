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
// grant, grant the next) over 1000 keys, and what it costs Redis: the script's own time per
// renewal from INFO commandstats (redis-script-µs/op, which counts time the server was
// descheduled too) and the server's CPU per renewal (redis-cpu-µs/op). single: one script run per renewal
// (a request's refill); many: RenewAll of 1,024 renewals, in renew_many runs of 128 (the
// sweeper's renewals ahead).
func BenchmarkRenew(b *testing.B) {
	s := redistest.StartServer(b)
	rdb, err := lua.Dial(context.Background(), s.Addr(), "single", time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	lim, bucket := lua.NewLimiter(rdb), lua.Bucket{Rate: 1e9, Per: time.Second, Burst: 1e9}
	ctx := context.Background()
	// cost reads Redis's own account: the script's time (INFO commandstats) and the
	// server's CPU (INFO cpu, user + system), both in µs.
	cost := func() (scriptUsec, cpuUsec float64) {
		info, err := rdb.Info(ctx, "commandstats", "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(info) {
			name, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch name {
			case "cmdstat_evalsha", "cmdstat_eval":
				_, after, _ := strings.Cut(rest, "usec=")
				v, _ := strconv.ParseFloat(after[:strings.IndexByte(after, ',')], 64)
				scriptUsec += v
			case "used_cpu_user", "used_cpu_sys":
				v, _ := strconv.ParseFloat(rest, 64)
				cpuUsec += v * 1e6
			}
		}
		return scriptUsec, cpuUsec
	}
	report := func(b *testing.B, script0, cpu0 float64) {
		script1, cpu1 := cost()
		b.ReportMetric((script1-script0)/float64(b.N), "redis-script-µs/op")
		b.ReportMetric((cpu1-cpu0)/float64(b.N), "redis-cpu-µs/op")
	}
	const keys = 1000
	b.Run("single", func(b *testing.B) {
		prev := make([]lua.Settlement, keys)
		script0, cpu0 := cost()
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
		report(b, script0, cpu0)
	})
	b.Run("many", func(b *testing.B) {
		calls := make([]lua.RenewCall, keys)
		for k := range calls {
			calls[k] = lua.RenewCall{Rule: "bench-many", Key: strconv.Itoa(k), Bucket: bucket, Want: 10, Min: 1, TTL: time.Second}
		}
		script0, cpu0 := cost()
		runs := 0
		for done := 0; done < b.N; {
			batch := calls[done%keys : min(done%keys+1024, keys, done%keys+b.N-done)]
			grants, errs, scripts := lim.RenewAll(ctx, batch)
			for i, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
				batch[i].Prev = lua.Settlement{ID: grants[i].ID, Granted: grants[i].Granted, Unused: 2}
			}
			done, runs = done+len(batch), runs+scripts
		}
		report(b, script0, cpu0)
		b.ReportMetric(float64(runs)/float64(b.N), "script-runs/op")
	})
}
