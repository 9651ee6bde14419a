package hitters

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// truth is the exact cost per key fed to one spaceSaving.
type truth struct {
	total int64
	cost  map[string]int64
}

// feed adds cost for key to s and to the truth (keys here are never cut).
func (x *truth) feed(s *spaceSaving, key string, cost int64) {
	if x.cost == nil {
		x.cost = make(map[string]int64)
	}
	x.total += cost
	x.cost[key] += cost
	s.add(key, false, hashKey(key), cost)
}

// checkFiltered asserts the invariants doc.go proves, against the truth:
// every counted key's true cost in [count-err, count] with err within the
// floor; the counts summing to at most total; the floor within
// total/Capacity; while the filter is in use, every cell within the floor
// and above the cost of every uncounted key hashed to it; every uncounted
// key within the floor, so every key above total/Capacity counted.
func checkFiltered(t *testing.T, step int, s *spaceSaving, x *truth) {
	t.Helper()
	if s.total != x.total {
		t.Fatalf("record %d: total %d, want %d", step, s.total, x.total)
	}
	floor := s.floor()
	if floor*Capacity > x.total {
		t.Fatalf("record %d: floor %d above total/Capacity = %d/%d", step, floor, x.total, Capacity)
	}
	counted := make(map[string]bool, s.used)
	sum := int64(0)
	for i := range s.used {
		c := &s.counters[i]
		key, count := string(c.key[:c.keyLen]), s.count(i)
		counted[key] = true
		sum += count
		if got := x.cost[key]; got > count || got < count-c.err {
			t.Fatalf("record %d: counted key %s has %d, outside [%d, %d]", step, key, got, count-c.err, count)
		}
		if c.err > floor {
			t.Fatalf("record %d: key %s error %d above the floor %d", step, key, c.err, floor)
		}
	}
	if sum > x.total {
		t.Fatalf("record %d: counts sum to %d, above the total %d", step, sum, x.total)
	}
	filtering := s.used == Capacity && floor <= math.MaxUint32
	for i, cell := range s.cells {
		if filtering && int64(cell) > floor || s.used < Capacity && cell != 0 {
			t.Fatalf("record %d: cell %d holds %d, above the floor %d (counters in use: %d)", step, i, cell, floor, s.used)
		}
	}
	for key, cost := range x.cost {
		if counted[key] {
			continue
		}
		if cost > floor || cost*Capacity > x.total {
			t.Fatalf("record %d: uncounted key %s has %d; floor %d, total %d", step, key, cost, floor, x.total)
		}
		if cell := s.cells[hashKey(key)>>cellShift]; filtering && cost > int64(cell) {
			t.Fatalf("record %d: uncounted key %s has %d, above its cell %d", step, key, cost, cell)
		}
	}
}

// filterAbsorbed fails unless some records went into cells instead of
// counters, so that a test exercises the filter.
func filterAbsorbed(t *testing.T, s *spaceSaving, x *truth) {
	t.Helper()
	sum := int64(0)
	for i := range s.used {
		sum += s.count(i)
	}
	if s.used < Capacity || sum == x.total {
		t.Fatalf("the counters hold all %d of the cost (%d in use): the filter took nothing", x.total, s.used)
	}
}

// feedChecked feeds s and x n records made by next, checking the
// invariants every `every` records and after the last.
func feedChecked(t *testing.T, s *spaceSaving, x *truth, n, every int, next func(i int) (string, int64)) {
	t.Helper()
	for i := range n {
		key, cost := next(i)
		x.feed(s, key, cost)
		if i%every == 0 {
			checkFiltered(t, i, s, x)
		}
	}
	checkFiltered(t, n, s, x)
}

func TestFilterFloodOfDistinctKeys(t *testing.T) {
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 40000, 500, func(i int) (string, int64) { return fmt.Sprint("flood-", i), 1 })
	filterAbsorbed(t, &s, &x)
	// The next second starts from empty cells, not the last one's.
	s.reset()
	x = truth{}
	feedChecked(t, &s, &x, 20000, 500, func(i int) (string, int64) { return fmt.Sprint("next-", i%3000), 1 })
}

// TestFilterFloodHidingHeavyKeys: three keys with 4% of the cost each
// inside a flood of distinct keys must be counted, with their bounds.
func TestFilterFloodHidingHeavyKeys(t *testing.T) {
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 50000, 500, func(i int) (string, int64) {
		if i%25 < 3 {
			return fmt.Sprint("heavy-", i%25), 1
		}
		return fmt.Sprint("flood-", i), 1
	})
	filterAbsorbed(t, &s, &x)
	for _, key := range []string{"heavy-0", "heavy-1", "heavy-2"} {
		if !s.indexes(key) {
			t.Errorf("%s (%d of %d) is not counted", key, x.cost[key], x.total)
		}
	}
}

func TestFilterZipfTraffic(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	zipf := rand.NewZipf(rng, 1.2, 1, 100_000-1)
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 60000, 1000, func(int) (string, int64) {
		return fmt.Sprint("zipf-", zipf.Uint64()), int64(1 + rng.IntN(3))
	})
	filterAbsorbed(t, &s, &x)
}

// TestFilterKeysSharingCells draws 300 keys from four cells only, so that
// every cell's bound is shared by some 75 keys, some of them counted and
// replaced over and over, with heavy-tailed weighted costs.
func TestFilterKeysSharingCells(t *testing.T) {
	cells := map[uint64]bool{}
	var keys []string
	for i := 0; len(keys) < 300; i++ {
		key := fmt.Sprint("shared-", i)
		cell := hashKey(key) >> cellShift
		if len(cells) < 4 {
			cells[cell] = true
		}
		if cells[cell] {
			keys = append(keys, key)
		}
	}
	rng := rand.New(rand.NewPCG(13, 14))
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 30000, 100, func(int) (string, int64) {
		key := keys[rng.IntN(len(keys))]
		if rng.IntN(4) == 0 {
			key = keys[rng.IntN(8)] // a few heavier keys
		}
		return key, int64(1) << rng.IntN(8)
	})
	filterAbsorbed(t, &s, &x)
}

func TestFilterWeightedCosts(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 40000, 250, func(int) (string, int64) {
		cost := int64(1 + rng.IntN(3))
		if rng.IntN(50) == 0 {
			cost = int64(100 + rng.IntN(5000)) // rare expensive calls
		}
		return fmt.Sprint("w-", rng.IntN(3000)), cost
	})
	filterAbsorbed(t, &s, &x)
}

// TestFilterFallsBackWhenCellsOverflow: small costs first, so that cells
// fill, then costs near 2^31, so that the floor outgrows what a cell
// holds and the summary turns to plain Space-Saving with stale cells.
func TestFilterFallsBackWhenCellsOverflow(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	key := func() string { return fmt.Sprint("big-", rng.IntN(400)) }
	var s spaceSaving
	var x truth
	feedChecked(t, &s, &x, 5000, 20, func(int) (string, int64) { return key(), int64(1 + rng.IntN(4)) })
	filterAbsorbed(t, &s, &x)
	feedChecked(t, &s, &x, 15000, 5, func(int) (string, int64) { return key(), 1<<30 + rng.Int64N(1<<31) })
	if s.floor() <= math.MaxUint32 {
		t.Fatalf("floor %d: the test never made the cells overflow", s.floor())
	}
}

// TestFilteredMergeAcrossSeconds: a rule's windows merge filtered
// summaries of many seconds, of three nodes, under a flood of distinct
// keys with heavy keys inside; the merged bounds must hold.
func TestFilteredMergeAcrossSeconds(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	zipf := rand.NewZipf(rng, 1.2, 1, 100_000-1)
	whole := newExact()
	var parts [numSides][]Summary
	for node := range 3 {
		var r Rule
		x := newExact()
		for i := range 120000 {
			key := fmt.Sprintf("n%d-flood-%d", node, i)
			switch i % 4 {
			case 0:
				key = fmt.Sprint("zipf-", zipf.Uint64())
			case 1:
				key = fmt.Sprint("heavy-", i%7)
			}
			cost, deny := int64(1+rng.IntN(3)), rng.IntN(3) == 0
			side := sideAdmitted
			if deny {
				side = sideDenied
			}
			r.Record(key, cost, deny, int64(i)*second*60/120000)
			x.add(key, cost, side)
			whole.add(key, cost, side)
		}
		windows := [numSides]Summary{}
		windows[sideAdmitted], windows[sideDenied] = r.Window(60*second, Long)
		for side, w := range windows {
			checkBounds(t, fmt.Sprintf("node %d side %d", node, side), w, x.total[side], x.cost[side])
			w.Truncate(100) // nodes answer with their top entries only
			parts[side] = append(parts[side], w)
		}
	}
	for side := range numSides {
		checkBounds(t, fmt.Sprint("merged side ", side), Merge(parts[side]...), whole.total[side], whole.cost[side])
	}
}

// FuzzFilteredBounds reads pairs of bytes as records (key, cost; a cost
// byte from 0xF0 makes a cost of billions, to reach the fallback) and
// checks the invariants after every record.
func FuzzFilteredBounds(f *testing.F) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{64, 600, 4000} {
		seed := make([]byte, n)
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		var s spaceSaving
		var x truth
		for i := 0; i+1 < len(ops); i += 2 {
			cost := int64(1 + ops[i+1]%8)
			if ops[i+1] >= 0xF0 {
				cost = int64(ops[i+1]&0xF) << 31
			}
			x.feed(&s, fmt.Sprint("f-", ops[i]), max(cost, 1))
			checkFiltered(t, i/2, &s, &x)
		}
	})
}

// TestFilterTakeOverRate measures how often a record takes over a counter
// (about Capacity/(Capacity+filterCells) under a flood, doc.go) and fails
// if the filter stops sparing the counters.
func TestFilterTakeOverRate(t *testing.T) {
	zipf := rand.NewZipf(rand.New(rand.NewPCG(23, 24)), 1.2, 1, 100_000-1)
	for _, tc := range []struct {
		name string
		key  func(i int) string
		most float64
	}{
		{"flood of distinct keys", func(i int) string { return fmt.Sprint("flood-", i) }, 0.2},
		{"4096 keys in turn", func(i int) string { return fmt.Sprintf("198.51.%d.%d", i%4096/256, i%256) }, 0.25},
		{"Zipf s=1.2 over 100k keys", func(int) string { return fmt.Sprint("zipf-", zipf.Uint64()) }, 0.02},
	} {
		var s spaceSaving
		const n = 400_000
		takeOvers := 0
		for i := range n {
			key := tc.key(i)
			uncounted := s.used == Capacity && !s.indexes(key)
			s.add(key, false, hashKey(key), 1)
			if uncounted && s.indexes(key) {
				takeOvers++
			}
		}
		rate := float64(takeOvers) / n
		t.Logf("%s: %.1f%% of records take over a counter (%d cells)", tc.name, 100*rate, filterCells)
		if rate > tc.most {
			t.Errorf("%s: %.1f%% of records take over a counter, above %.0f%%", tc.name, 100*rate, 100*tc.most)
		}
	}
}
