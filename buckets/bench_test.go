package buckets

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

// benchLimit refills one token per simulated nanosecond step, so most takes
// in the benchmarks are allowed and exercise the CAS write.
var benchLimit = Limit{Interval: 1, Burst: 100}

func BenchmarkTakeHit(b *testing.B) {
	tab := NewTable()
	key := []byte("per-ip:203.0.113.7")
	tab.Take(key, benchLimit, 1, 0)
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now++
		tab.Take(key, benchLimit, 1, now)
	}
}

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte("per-ip:198.51.100."), int64(i), 10)
	}
	return keys
}

// BenchmarkTakeParallel spreads takes over many keys, as a node serving many
// clients does; throughput should grow with -cpu.
func BenchmarkTakeParallel(b *testing.B) {
	tab := NewTable()
	keys := benchKeys(4096)
	for _, k := range keys {
		tab.Take(k, benchLimit, 1, 0)
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919 // different workers walk different keys
		now := int64(0)
		for pb.Next() {
			i++
			now++
			tab.Take(keys[i%len(keys)], benchLimit, 1, now)
		}
	})
}

// BenchmarkTakeParallelHotKey has every worker hit one key: the worst case,
// bounded by one cache line bouncing between cores.
func BenchmarkTakeParallelHotKey(b *testing.B) {
	tab := NewTable()
	key := []byte("tenant:acme")
	tab.Take(key, benchLimit, 1, 0)
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tab.Take(key, benchLimit, 1, clock.Add(1))
		}
	})
}

// BenchmarkTakeParallelDisjoint gives each worker its own range of keys, so
// no bucket's cache line moves between cores: it measures how the lookup
// path scales. In BenchmarkTakeParallel every key is taken by every worker in
// turn, so the buckets' lines migrate and that write bounds the scaling.
func BenchmarkTakeParallelDisjoint(b *testing.B) {
	tab := NewTable()
	keys := benchKeys(4096)
	for _, k := range keys {
		tab.Take(k, benchLimit, 1, 0)
	}
	var worker atomic.Int64
	per := len(keys) / runtime.GOMAXPROCS(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mine := keys[(int(worker.Add(1))-1)*per:][:per]
		i, now := 0, int64(0)
		for pb.Next() {
			i++
			now++
			tab.Take(mine[i%len(mine)], benchLimit, 1, now)
		}
	})
}
