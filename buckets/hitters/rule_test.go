package hitters

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

const second = int64(time.Second)

// exact counts cost per key and side, the truth a summary is checked against.
type exact struct {
	total [numSides]int64
	cost  [numSides]map[string]int64
}

func newExact() *exact {
	return &exact{cost: [numSides]map[string]int64{{}, {}}}
}

func (x *exact) add(key string, cost int64, side int) {
	x.total[side] += cost
	x.cost[side][key] += cost
}

// skewedTraffic records n decisions spread over seconds [from, to) into r
// and into the exact counts of those seconds: Zipf-distributed keys (a few
// very heavy, a long tail of one-offs), costs 1-3, and heavier keys denied
// more often, as when a few clients hit their limits.
func skewedTraffic(r *Rule, x *exact, rng *rand.Rand, n int, from, to int64) {
	zipf := rand.NewZipf(rng, 1.1, 1, 1<<20)
	for i := range n {
		rank := zipf.Uint64()
		key := fmt.Sprintf("203.0.%d.%d", rank/256, rank%256)
		cost := int64(1 + rng.IntN(3))
		deny := rank < 8 && rng.IntN(4) > 0 || rng.IntN(50) == 0
		now := from*second + int64(i)*(to-from)*second/int64(n)
		side := sideAdmitted
		if deny {
			side = sideDenied
		}
		r.Record(key, cost, deny, now)
		x.add(key, cost, side)
	}
}

// checkBounds asserts the Space-Saving guarantees of s against the truth:
// every listed key's true cost in [Count-Error, Count] with Error within
// total/Capacity, every unlisted key at most Floor, and every key heavier
// than total/Capacity listed.
func checkBounds(t *testing.T, name string, s Summary, total int64, truth map[string]int64) {
	t.Helper()
	if s.Total != total {
		t.Fatalf("%s: total %d, want exactly %d", name, s.Total, total)
	}
	bound := total / Capacity
	if s.Floor > bound {
		t.Errorf("%s: floor %d above total/Capacity = %d", name, s.Floor, bound)
	}
	listed := make(map[string]bool, len(s.Entries))
	for _, e := range s.Entries {
		listed[e.Key] = true
		got := truth[e.Key]
		if got < e.Count-e.Error || got > e.Count {
			t.Errorf("%s: key %s true cost %d outside [%d, %d]", name, e.Key, got, e.Count-e.Error, e.Count)
		}
		if e.Error > bound {
			t.Errorf("%s: key %s error %d above total/Capacity = %d", name, e.Key, e.Error, bound)
		}
	}
	heavy := 0
	for key, cost := range truth {
		switch {
		case listed[key]:
		case cost > s.Floor:
			t.Errorf("%s: unlisted key %s has %d, above the floor %d", name, key, cost, s.Floor)
		}
		if cost > bound {
			heavy++
			if !listed[key] {
				t.Errorf("%s: heavy hitter %s (%d > %d) not listed", name, key, cost, bound)
			}
		}
	}
	if heavy == 0 {
		t.Fatalf("%s: the traffic has no key above total/Capacity = %d; the test checks nothing", name, bound)
	}
}

func TestSkewedTrafficWithinBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Rule
	// Seconds 100..159 are the last minute at 160; 150..159 the last 10 s.
	// Traffic before 100 must not count.
	skewedTraffic(&r, newExact(), rng, 20000, 90, 100)
	long, short := newExact(), newExact()
	skewedTraffic(&r, long, rng, 150000, 100, 150)
	lastTen := newExact()
	skewedTraffic(&r, lastTen, rng, 60000, 150, 160)
	for side := range numSides {
		for key, cost := range lastTen.cost[side] {
			long.add(key, cost, side)
			short.add(key, cost, side)
		}
	}
	now := 160*second + 1
	for _, w := range []struct {
		name   string
		window time.Duration
		truth  *exact
	}{{"1m", Long, long}, {"10s", Short, short}} {
		admitted, denied := r.Window(now, w.window)
		checkBounds(t, w.name+" admitted", admitted, w.truth.total[sideAdmitted], w.truth.cost[sideAdmitted])
		checkBounds(t, w.name+" denied", denied, w.truth.total[sideDenied], w.truth.cost[sideDenied])
	}
}

// TestChurnWithinOneSecond: half the cost from ten heavy keys, half from
// a tail of 500 keys that are replaced and come back many times within the
// second, the case where a returning key's inherited error matters.
func TestChurnWithinOneSecond(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var r Rule
	x := newExact()
	for i := range 40000 {
		key := fmt.Sprintf("heavy-%d", rng.IntN(10))
		if i%2 == 1 {
			key = fmt.Sprintf("tail-%d", rng.IntN(500))
		}
		r.Record(key, 1, true, 5*second+int64(i))
		x.add(key, 1, sideDenied)
	}
	_, d := r.Window(6*second, Short)
	checkBounds(t, "one second", d, x.total[sideDenied], x.cost[sideDenied])
}

func TestWindowLeavesOutTheCurrentSecondAndOldOnes(t *testing.T) {
	var r Rule
	r.Record("old", 5, true, 10*second)
	r.Record("in", 7, true, 70*second+5)
	r.Record("current", 9, true, 71*second)
	_, denied := r.Window(71*second+500, Long)
	want := Summary{Total: 7, Entries: []Entry{{Key: "in", Count: 7}}}
	if fmt.Sprint(denied) != fmt.Sprint(want) {
		t.Fatalf("1m at 71.5 s: %+v, want %+v", denied, want)
	}
	if admitted, _ := r.Window(71*second, Long); admitted.Total != 0 || len(admitted.Entries) != 0 {
		t.Fatalf("admitted side: %+v, want empty", admitted)
	}
	var idle Rule
	if a, d := idle.Window(time.Hour.Nanoseconds(), Short); a.Total != 0 || d.Entries == nil || len(d.Entries) != 0 {
		t.Fatalf("a rule never recorded: %+v %+v", a, d)
	}
}

// TestAnEndedSecondIsCountedOnce: a second that has ended but is still
// open (no record since) is read where it is; once a later record closes
// it, it is read from the past, with the same result and not twice.
func TestAnEndedSecondIsCountedOnce(t *testing.T) {
	var r Rule
	for i := range 5000 {
		r.Record(fmt.Sprint("k-", i%700), 1+int64(i%3), i%4 == 0, 5*second+int64(i)*1000)
	}
	a1, d1 := r.Window(6*second+1, Short)
	if a1.Total == 0 || d1.Total == 0 || len(d1.Entries) == 0 {
		t.Fatalf("the ended open second was not read: %+v %+v", a1, d1)
	}
	r.Record("later", 1, false, 7*second) // closes second 5
	r.Record("later", 1, true, 7*second)
	a2, d2 := r.Window(7*second+1, Short)
	if fmt.Sprint(a1, d1) != fmt.Sprint(a2, d2) {
		t.Fatalf("second 5 read open\n%+v %+v\nand closed\n%+v %+v", a1, d1, a2, d2)
	}
}

// TestRecordingWhileReading records from several goroutines across
// seconds, each on its own clock, while windows are read: every window
// reads at most what was recorded, and once recording stops, a window over
// all of it has the exact total and the bounds.
func TestRecordingWhileReading(t *testing.T) {
	const writers, perWriter = 4, 30000
	var r Rule
	var wg sync.WaitGroup
	truths := make([]*exact, writers)
	for w := range writers {
		truths[w] = newExact()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range perWriter {
				key := fmt.Sprint("tail-", rng.IntN(5000))
				if i%3 == 0 {
					key = fmt.Sprint("heavy-", i%5)
				}
				side := sideAdmitted
				if i%7 == 0 {
					side = sideDenied
				}
				r.Record(key, 1, side == sideDenied, int64(i)*10*second/perWriter)
				truths[w].add(key, 1, side)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		a, d := r.Window(time.Hour.Nanoseconds(), Long) // nothing recorded is in it: it reads nothing
		if a.Total != 0 || d.Total != 0 {
			t.Fatalf("a window an hour later read %d and %d", a.Total, d.Total)
		}
		a, d = r.Window(11*second, Long)
		if a.Total+d.Total > writers*perWriter {
			t.Fatalf("a window read %d, more than was recorded", a.Total+d.Total)
		}
	}
	whole := newExact()
	for _, x := range truths {
		for side := range numSides {
			for key, cost := range x.cost[side] {
				whole.add(key, cost, side)
			}
		}
	}
	a, d := r.Window(11*second, Long)
	checkBounds(t, "admitted", a, whole.total[sideAdmitted], whole.cost[sideAdmitted])
	checkBounds(t, "denied", d, whole.total[sideDenied], whole.cost[sideDenied])
}

// TestMergeAcrossNodes: three "nodes" see different parts of the traffic;
// merging their summaries keeps the bounds of the whole stream.
func TestMergeAcrossNodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	whole := newExact()
	var parts [numSides][]Summary
	for n := range 3 {
		var r Rule
		x := newExact()
		skewedTraffic(&r, x, rng, 40000*(n+1), 0, 60)
		for side := range numSides {
			for key, cost := range x.cost[side] {
				whole.add(key, cost, side)
			}
		}
		a, d := r.Window(60*second, Long)
		a.Truncate(200) // nodes answer with their top entries only
		d.Truncate(200)
		parts[sideAdmitted] = append(parts[sideAdmitted], a)
		parts[sideDenied] = append(parts[sideDenied], d)
	}
	checkBounds(t, "merged admitted", Merge(parts[sideAdmitted]...), whole.total[sideAdmitted], whole.cost[sideAdmitted])
	checkBounds(t, "merged denied", Merge(parts[sideDenied]...), whole.total[sideDenied], whole.cost[sideDenied])
}

func TestTruncateRaisesTheFloor(t *testing.T) {
	s := Summary{Total: 20, Floor: 1, Entries: []Entry{{"a", 9, 1}, {"b", 6, 0}, {"c", 4, 2}}}
	s.Truncate(1)
	if s.Floor != 6 || len(s.Entries) != 1 {
		t.Fatalf("truncated: %+v, want floor 6 and one entry", s)
	}
	if c, e, ok := s.Lookup("c"); ok || c != 6 || e != 6 {
		t.Fatalf("lookup of a dropped key: %d ±%d listed=%v, want 6 ±6 unlisted", c, e, ok)
	}
	if c, e, ok := s.Lookup("a"); !ok || c != 9 || e != 1 {
		t.Fatalf("lookup of a kept key: %d ±%d listed=%v", c, e, ok)
	}
}

func TestLongKeysAreCutOnACharacterBoundary(t *testing.T) {
	var r Rule
	long := strings.Repeat("é", KeyBytes) // two bytes each
	exactLen := strings.Repeat("x", KeyBytes)
	r.Record(long, 1, true, 0)
	r.Record(long+"different tail", 2, true, 1)
	r.Record(exactLen, 4, true, 2)
	r.Record(exactLen+"y", 8, true, 3)
	_, d := r.Window(second, Short)
	want := map[string]int64{
		strings.Repeat("é", KeyBytes/2) + cutMark: 3, // the two long keys share their cut prefix
		exactLen:           4,
		exactLen + cutMark: 8,
	}
	if len(d.Entries) != len(want) {
		t.Fatalf("entries %+v, want %v", d.Entries, want)
	}
	for _, e := range d.Entries {
		if want[e.Key] != e.Count {
			t.Errorf("key %q counted %d, want %d", e.Key, e.Count, want[e.Key])
		}
	}
}

// TestIndexSurvivesChurn replaces counters many times over and checks
// after each step that every counted key is found and the heap holds.
func TestIndexSurvivesChurn(t *testing.T) {
	var s spaceSaving
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 20000 {
		key := fmt.Sprint(rng.IntN(300))
		kept, cut := cutKey(key)
		s.add(kept, cut, hashKey(kept), 1)
		if i%97 != 0 {
			continue
		}
		for c := range s.used {
			if p := s.at[c]; int(s.heap[p]) != c {
				t.Fatalf("step %d: counter %d at heap position %d, which holds %d", i, c, p, s.heap[p])
			}
			if p := int(s.at[c]); p > 0 && s.counts[p] < s.counts[(p-1)/heapArity] {
				t.Fatalf("step %d: heap order broken at %d", i, p)
			}
			k := string(s.counters[c].key[:s.counters[c].keyLen])
			if !s.indexes(k) {
				t.Fatalf("step %d: counted key %q not found through the index", i, k)
			}
		}
	}
}

// indexes reports whether key has a counter, by the index.
func (s *spaceSaving) indexes(key string) bool {
	h := hashKey(key)
	for slot := h & (indexSlots - 1); s.index[slot] != 0; slot = (slot + 1) & (indexSlots - 1) {
		if s.is(int(s.index[slot])-1, key, false, h) {
			return true
		}
	}
	return false
}

// TestMemoryPerRule records a million distinct keys into one rule over a
// whole ring and measures the heap the rule holds: fixed, whatever the
// number of keys.
func TestMemoryPerRule(t *testing.T) {
	const n = 1_000_000
	keys := make([]string, n) // made before measuring, kept until after
	for i := range keys {
		keys[i] = fmt.Sprintf("198.51.%d.%d/%d", i>>16, i&0xff, i)
	}
	before := memStats()
	r := new(Rule)
	for i, key := range keys {
		now := int64(i) * int64(pastSeconds+1) * second / n
		r.Record(key, 1, i%3 == 0, now)
	}
	after := memStats()
	runtime.KeepAlive(r)
	runtime.KeepAlive(keys)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("one rule after %d distinct keys holds %d bytes (%.0f KB); recording allocated %d bytes in all",
		n, held, float64(held)/1000, allocated)
	if held > 1_000_000 || allocated > 1_000_000 {
		t.Fatalf("one rule holds %d bytes (allocated %d), above the documented 1 MB", held, allocated)
	}
	least := uint64(pastSeconds*numSides)*uint64(Capacity*unsafe.Sizeof(counter{})) + numSides*uint64(unsafe.Sizeof(spaceSaving{}.cells))
	if allocated < least {
		t.Fatalf("recording allocated %d bytes, less than its counters and cells alone (%d): the measurement is wrong", allocated, least)
	}
}

func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// TestRecordAllMatchesRecord: recording a batch together (RecordAll, a
// lock per side and chunk) leaves the same summaries as recording each
// decision on its own, across chunks, sides, seconds and long keys.
func TestRecordAllMatchesRecord(t *testing.T) {
	var one, all Rule
	rng := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(rng, 1.1, 1, 1<<16)
	long := strings.Repeat("k", KeyBytes+10)
	var recs []Rec
	for sec := int64(0); sec < 3; sec++ {
		for batch := range 40 {
			now := sec*second + int64(batch)*second/40
			recs = recs[:0]
			for range rng.IntN(300) { // empty, short and many-chunk batches
				rank := zipf.Uint64()
				key := fmt.Sprintf("203.0.%d.%d", rank/256, rank%256)
				if rank%97 == 0 {
					key = long + key
				}
				recs = append(recs, Rec{Key: key, Cost: int64(1 + rng.IntN(3)), Denied: rng.IntN(5) == 0})
			}
			for _, r := range recs {
				one.Record(r.Key, r.Cost, r.Denied, now)
			}
			all.RecordAll(recs, now)
		}
	}
	for _, w := range []time.Duration{time.Second, 3 * time.Second} {
		a1, d1 := one.Window(3*second, w)
		a2, d2 := all.Window(3*second, w)
		if a1.Total == 0 || d1.Total == 0 {
			t.Fatalf("window %v: nothing recorded (%d admitted, %d denied); the test checks nothing", w, a1.Total, d1.Total)
		}
		if fmt.Sprint(a1) != fmt.Sprint(a2) || fmt.Sprint(d1) != fmt.Sprint(d2) {
			t.Fatalf("window %v: RecordAll left\n%+v\n%+v\nRecord left\n%+v\n%+v", w, a2, d2, a1, d1)
		}
	}
}
