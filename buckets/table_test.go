package buckets

import (
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefundNeverBeyondFull(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	key := []byte("k")
	tab.Take(key, lim, 3, 0)
	tab.Refund(key, lim, 2, 0)
	if got := tab.Peek(key, lim, 0); got.Remaining != 4 || got.Reset != 100 {
		t.Fatalf("after refund of 2: %+v, want remaining 4 reset 100", got)
	}
	tab.Refund(key, lim, 5, 0)
	if got := tab.Peek(key, lim, 0); got.Remaining != 5 || got.Reset != 0 {
		t.Fatalf("refund past full: %+v, want remaining 5 reset 0", got)
	}
	// Refunding tokens that have meanwhile refilled must not overfill either.
	tab.Take(key, lim, 5, 0)
	tab.Refund(key, lim, 5, 400)
	if got := tab.Take(key, lim, 5, 400); !got.Allowed || got.Remaining != 0 {
		t.Fatalf("take of burst after late refund: %+v", got)
	}
	if got := tab.Take(key, lim, 1, 400); got.Allowed {
		t.Fatalf("bucket overfilled by refund: %+v", got)
	}
	tab.Refund([]byte("absent"), lim, 1, 0)
	if tab.Len() != 1 {
		t.Fatalf("refund of an absent key inserted it: Len = %d", tab.Len())
	}
}

func TestTooCostlyChangesNothing(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	key := []byte("k")
	got := tab.Take(key, lim, 6, 0)
	if got.Allowed || !got.TooCostly || got.RetryAfter != 0 || got.Remaining != 5 {
		t.Fatalf("cost above burst: %+v", got)
	}
	if tab.Len() != 0 {
		t.Fatalf("too-costly take inserted a bucket: Len = %d", tab.Len())
	}
}

func TestSweepEvictsExactlyFullBuckets(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 5}
	tab := NewTable()
	tab.Take([]byte("full-at-300"), lim, 3, 0) // TAT 300
	tab.Take([]byte("full-at-500"), lim, 5, 0) // TAT 500
	if n := tab.Sweep(299); n != 0 {
		t.Fatalf("Sweep(299) evicted %d, want 0", n)
	}
	if n := tab.Sweep(300); n != 1 || tab.Len() != 1 {
		t.Fatalf("Sweep(300) evicted %d leaving %d, want 1 leaving 1", n, tab.Len())
	}
	if got := tab.Peek([]byte("full-at-300"), lim, 300); got.Remaining != 5 || got.Reset != 0 {
		t.Fatalf("evicted bucket does not read as full: %+v", got)
	}
	if got := tab.Peek([]byte("full-at-500"), lim, 300); got.Remaining != 3 || got.Reset != 200 {
		t.Fatalf("surviving bucket changed: %+v", got)
	}
}

func TestTakeHoldingEvictedEntryLooksUpAgain(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 2}
	tab := NewTable()
	key := []byte("k")
	tab.Take(key, lim, 2, 0)
	stale, _ := tab.entries.Load(key)
	if n := tab.Sweep(200); n != 1 {
		t.Fatalf("Sweep evicted %d, want 1", n)
	}
	if _, live := stale.take(lim, 1, 200, neverSwept); live {
		t.Fatal("take on an evicted entry reported it live; its take would be lost")
	}
	if got := tab.Take(key, lim, 2, 200); !got.Allowed || got.Remaining != 0 {
		t.Fatalf("take after eviction: %+v", got)
	}
	if got := tab.Take(key, lim, 1, 200); got.Allowed {
		t.Fatalf("re-inserted bucket lost the previous take: %+v", got)
	}
}

// A Take whose clock read is older than a concurrent Sweep's must treat the
// re-created bucket as full only from the Sweep's time on.
func TestTakeOlderThanSweepIsStricter(t *testing.T) {
	lim := Limit{Interval: 100, Burst: 2}
	tab := NewTable()
	key := []byte("k")
	tab.Take(key, lim, 2, 0) // TAT 200
	tab.Sweep(250)
	got := tab.Take(key, lim, 2, 230)
	if got.Allowed || got.RetryAfter != 20 {
		t.Fatalf("take at 230 after Sweep(250): %+v, want denied with RetryAfter 20", got)
	}
	if got := tab.Take(key, lim, 2, 250); !got.Allowed {
		t.Fatalf("take at the sweep's time: %+v, want allowed", got)
	}
}

// hammer runs goroutines that each take cost from keys[i%len(keys)] until
// stop() is true, and returns the clock value of every admitted take per key
// plus the largest clock value any take used.
func hammer(tab *Table, keys [][]byte, lim Limit, cost int64, goroutines int, clock func() int64, stop func() bool) (admits [][]int64, maxNow int64) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	admits = make([][]int64, len(keys))
	for g := range goroutines {
		wg.Go(func() {
			local := make([][]int64, len(keys))
			var localMax int64
			for i := g; !stop(); i++ {
				k := i % len(keys)
				now := clock()
				localMax = max(localMax, now)
				if tab.Take(keys[k], lim, cost, now).Allowed {
					local[k] = append(local[k], now)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k := range keys {
				admits[k] = append(admits[k], local[k]...)
			}
			maxNow = max(maxNow, localMax)
		})
	}
	wg.Wait()
	return admits, maxNow
}

// checkExactCount asserts that the bucket neither admitted more than burst +
// floor(elapsed/interval) tokens (safety) nor lost any (conservation: the
// tokens admitted plus those still in the bucket at maxNow make up that
// amount, within one token) while demand exceeded the rate throughout.
func checkExactCount(t *testing.T, tab *Table, key []byte, lim Limit, admitted, start, maxNow int64) {
	t.Helper()
	want := lim.Burst + (maxNow-start)/lim.Interval
	left := tab.Peek(key, lim, maxNow).Remaining
	t.Logf("admitted %d tokens, %d left; bucket allows %d over %d ns", admitted, left, want, maxNow-start)
	if admitted > want {
		t.Fatalf("admitted %d tokens, more than the %d allowed", admitted, want)
	}
	if got := admitted + left; got > want || got < want-1 {
		t.Fatalf("admitted %d + left %d = %d tokens, want %d (or one less)", admitted, left, got, want)
	}
}

func TestOneHotKeySyntheticClockIsExact(t *testing.T) {
	lim := Limit{Interval: 1000, Burst: 50}
	tab := NewTable()
	key := []byte("hot")
	const start = 1_000_000
	var clock atomic.Int64
	clock.Store(start)
	tab.Take(key, lim, 1, start) // pins the bucket's origin to start
	const attempts = 400_000     // ~1000 attempts per refilled token
	admits, maxNow := hammer(tab, [][]byte{key}, lim, 1, 8,
		func() int64 { return clock.Add(1) },
		func() bool { return clock.Load() >= start+attempts })
	checkExactCount(t, tab, key, lim, int64(len(admits[0]))+1, start, maxNow)
}

// The burst covers a whole second and the first take empties the bucket, so
// that the process being descheduled on a busy CI machine (before the
// hammering starts, too) cannot let the bucket fill up and waste refill time.
func TestOneHotKeyRealClockIsExact(t *testing.T) {
	const burst = 5_000
	lim := NewLimit(5_000, time.Second, burst)
	tab := NewTable()
	key := []byte("hot")
	base := time.Now()
	clock := func() int64 { return int64(time.Since(base)) }
	start := clock()
	if !tab.Take(key, lim, burst, start).Allowed {
		t.Fatal("a new bucket refused its whole burst")
	}
	deadline := start + int64(1200*time.Millisecond)
	admits, maxNow := hammer(tab, [][]byte{key}, lim, 1, 8, clock,
		func() bool { return clock() >= deadline })
	checkExactCount(t, tab, key, lim, int64(len(admits[0]))+burst, start, maxNow)
}

// Buckets that must be full to admit (cost = burst) are exactly the ones
// Sweep evicts, so this drives Take and Sweep into each other constantly.
// A lost take would let two admits of one key land less than a window apart.
func TestSweepRacingTakesLosesNothing(t *testing.T) {
	lim := Limit{Interval: 50, Burst: 4}
	window := lim.Interval * lim.Burst
	tab := NewTable()
	// With many keys each one waits a while before its next attempt, so
	// buckets sit full, and evictable, for a good part of every window.
	keys := make([][]byte, 64)
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte("key-"), int64(i), 10)
	}
	// Run for enough attempts and until Sweep has evicted live keys often
	// (the sweeper may get little CPU on a busy machine), or give up.
	const attempts, minEvictions = 200_000, 100
	deadline := time.Now().Add(20 * time.Second)
	var clock, evictions atomic.Int64
	done := func() bool {
		return clock.Load() >= attempts && evictions.Load() >= minEvictions || time.Now().After(deadline)
	}

	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		for !done() {
			evictions.Add(int64(tab.Sweep(clock.Load())))
		}
	}()
	admits, maxNow := hammer(tab, keys, lim, lim.Burst, 8,
		func() int64 { return clock.Add(1) }, done)
	<-sweeperDone

	if n := evictions.Load(); n < minEvictions {
		t.Fatalf("Sweep evicted only %d live keys in 20s; the race was not exercised", n)
	}
	for k, nows := range admits {
		sort.Slice(nows, func(i, j int) bool { return nows[i] < nows[j] })
		for i := 1; i < len(nows); i++ {
			if gap := nows[i] - nows[i-1]; gap < window {
				t.Fatalf("key %s admitted at %d and %d, only %d apart (window %d)", keys[k], nows[i-1], nows[i], gap, window)
			}
		}
		// Each admit waits for a full window plus the moments until some
		// goroutine tries that key again, so require at least half the ideal.
		if ideal := 1 + maxNow/window; int64(len(nows)) < ideal/2 {
			t.Fatalf("key %s admitted %d times, ideal %d: takes are being refused", keys[k], len(nows), ideal)
		}
	}
	t.Logf("evictions during the run: %d; admits per key: %d", evictions.Load(), len(admits[0]))
}

func TestMemoryPerKey(t *testing.T) {
	const keys = 200_000
	lim := Limit{Interval: 1000, Burst: 10}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	tab := NewTable()
	key := make([]byte, 0, 32)
	for i := range keys {
		key = strconv.AppendInt(append(key[:0], "per-ip:198.51."...), int64(i), 10) // ~20 bytes
		tab.Take(key, lim, 1, 0)
	}
	grown := heap() - before
	perKey := grown / keys
	t.Logf("%d keys: %d bytes of heap, %d bytes per key", tab.Len(), grown, perKey)
	if tab.Len() != keys || perKey > 256 {
		t.Fatalf("%d keys cost %d bytes each, want %d keys at <= 256", tab.Len(), perKey, keys)
	}

	if n := tab.Sweep(lim.Interval); n != keys {
		t.Fatalf("Sweep evicted %d, want %d", n, keys)
	}
	if left := int64(heap()) - int64(before); left > int64(grown/8) {
		t.Fatalf("after evicting every key %d of %d bytes are still held; maps were not shrunk", left, grown)
	}
	runtime.KeepAlive(tab)
}
