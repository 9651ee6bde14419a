package lua_test

import (
	"context"
	"strconv"
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
