package hitters

import (
	"math"
	"unicode/utf8"
)

// Capacity is the number of counters one side of one second keeps: a key
// whose cost exceeds 1/Capacity of a window's total is always listed, and
// every count is within total/Capacity of the truth.
const Capacity = 64

// KeyBytes is the longest key a counter keeps whole; 62 makes a counter
// 72 bytes (docs/PERFORMANCE.md weighs memory per rule).
const KeyBytes = 62

// indexSlots sizes the open-addressing index at four times Capacity: a
// key not counted, the common case under a flood, then usually finds a
// free slot at once instead of reading other keys' hashes (measured 2-4 ns
// cheaper per record than twice Capacity); a power of two, so a hash picks
// a slot with a mask.
const indexSlots = 4 * Capacity

// filterCells is the number of filter cells in front of the counters
// (doc.go): with Capacity counters and m cells, a flood of distinct keys
// takes over a counter on about Capacity/(Capacity+m) of its records. Only
// the second being recorded has cells (a closed second keeps its counters
// alone), so a rule can afford 4096 of them: 16 KB per side. A hash picks
// a cell by its top cellBits bits; the index uses its low bits, so the two
// are independent.
const (
	cellBits    = 12
	filterCells = 1 << cellBits
	cellShift   = 64 - cellBits
)

// cutMark ends a key cut to KeyBytes.
const cutMark = "…"

// heapArity is the heap's fan-out: four children share a cache line of
// counts, and a 64-counter heap is three levels deep instead of six, so a
// new key taking over the smallest counter sifts it down in a few steps.
const heapArity = 4

// counter is one Space-Saving counter: a key, whose count lives in the
// heap (and its hash beside it, in spaceSaving.hashes), of which up to err
// may belong to the keys it replaced.
type counter struct {
	err    int64
	keyLen uint8
	cut    bool
	key    [KeyBytes]byte
}

func (c *counter) displayKey() string {
	if c.cut {
		return string(c.key[:c.keyLen]) + cutMark
	}
	return string(c.key[:c.keyLen])
}

// spaceSaving is one fixed-size Filtered Space-Saving summary (doc.go).
// Counters sit in a min-heap on count, so the smallest is the one a new
// key takes over, and in a linear-probing index by key hash. The heap
// holds the counts themselves, next to each other, so sifting compares
// without chasing counters. It is not safe for concurrent use.
type spaceSaving struct {
	total    int64 // exact cost added since reset
	used     int   // counters in use
	counters [Capacity]counter
	// hashes are the counters' key hashes, apart from the counters so that
	// a probe that meets another key's counter reads 8 bytes, not its key.
	hashes [Capacity]uint64
	counts [Capacity]int64   // counts in heap order, smallest first
	heap   [Capacity]uint8   // heap position → counter index
	at     [Capacity]uint8   // counter index → its position in heap
	index  [indexSlots]uint8 // counter index + 1 by hash; 0 is free
	// cells bound the cost of the keys not counted, by hash: each is at
	// least the cost of every uncounted key hashed to it, and at most the
	// smallest count.
	cells [filterCells]uint32
}

// closed is one side's summary of a second that has ended: what a
// window merges, without the index and cells that only recording needs.
type closed struct {
	sec          int64 // which second; -1 while empty
	total, floor int64
	n            int // counters in use
	counters     [Capacity]counter
	counts       [Capacity]int64 // counters[i]'s count
}

// close copies s, the summary of second sec, into c.
func (s *spaceSaving) close(sec int64, c *closed) {
	c.sec, c.total, c.floor, c.n = sec, s.total, s.floor(), s.used
	copy(c.counters[:s.used], s.counters[:s.used])
	for i := range s.used {
		c.counts[i] = s.count(i)
	}
}

// reset empties s; counters are overwritten as keys arrive.
func (s *spaceSaving) reset() {
	s.total, s.used = 0, 0
	s.index = [indexSlots]uint8{}
	s.cells = [filterCells]uint32{}
}

// floor is the most cost a key s does not count can have had.
func (s *spaceSaving) floor() int64 {
	if s.used < Capacity {
		return 0 // nothing was ever replaced: every key is counted exactly
	}
	return s.counts[0]
}

// count is counter i's count.
func (s *spaceSaving) count(i int) int64 { return s.counts[s.at[i]] }

// add counts cost for key (already cut by cutKey) whose hash is hash.
func (s *spaceSaving) add(key string, cut bool, hash uint64, cost int64) {
	s.total += cost
	for slot := hash & (indexSlots - 1); s.index[slot] != 0; slot = (slot + 1) & (indexSlots - 1) {
		i := int(s.index[slot]) - 1
		if s.is(i, key, cut, hash) {
			p := int(s.at[i])
			s.counts[p] += cost
			s.down(p)
			return
		}
	}
	if s.used < Capacity {
		i := s.used
		s.used++
		s.set(i, key, cut, hash, 0)
		s.counts[i], s.heap[i], s.at[i] = cost, uint8(i), uint8(i)
		s.up(i)
		s.insert(hash, i)
		return
	}
	floor := s.counts[0]
	if floor > math.MaxUint32 {
		// The cells cannot hold the floor: plain Space-Saving, whose
		// bound (every uncounted key at most the floor) holds regardless.
		s.takeOver(key, cut, hash, floor, cost)
		return
	}
	cell := &s.cells[hash>>cellShift]
	if cost <= floor-int64(*cell) {
		*cell += uint32(cost) // stays at most the floor: no counter changes
		return
	}
	// The replaced key's cost was at most the floor; its cell now says so.
	replaced := &s.cells[s.hashes[s.heap[0]]>>cellShift]
	inherited := int64(*cell) // before the raise: x and y may share a cell
	*replaced = max(*replaced, uint32(floor))
	s.takeOver(key, cut, hash, inherited, cost)
}

// takeOver gives the smallest counter to key, which may already have had
// up to err of cost before this one.
func (s *spaceSaving) takeOver(key string, cut bool, hash uint64, err, cost int64) {
	i := int(s.heap[0])
	s.remove(s.hashes[i], i)
	s.set(i, key, cut, hash, err)
	s.counts[0] = err + cost
	s.down(0)
	s.insert(hash, i)
}

// is reports whether counter i counts key (cut as cutKey says, hashed
// to hash).
func (s *spaceSaving) is(i int, key string, cut bool, hash uint64) bool {
	c := &s.counters[i]
	return s.hashes[i] == hash && c.cut == cut && string(c.key[:c.keyLen]) == key
}

// set gives counter i to key, with error err.
func (s *spaceSaving) set(i int, key string, cut bool, hash uint64, err int64) {
	c := &s.counters[i]
	c.err, c.cut = err, cut
	c.keyLen = uint8(copy(c.key[:], key))
	s.hashes[i] = hash
}

// insert indexes counter i under hash.
func (s *spaceSaving) insert(hash uint64, i int) {
	slot := hash & (indexSlots - 1)
	for s.index[slot] != 0 {
		slot = (slot + 1) & (indexSlots - 1)
	}
	s.index[slot] = uint8(i + 1)
}

// remove unindexes counter i (indexed under hash), shifting later entries
// of the probe sequence back so that no probe stops early.
func (s *spaceSaving) remove(hash uint64, i int) {
	hole := hash & (indexSlots - 1)
	for int(s.index[hole]) != i+1 {
		hole = (hole + 1) & (indexSlots - 1)
	}
	for next := (hole + 1) & (indexSlots - 1); s.index[next] != 0; next = (next + 1) & (indexSlots - 1) {
		home := s.hashes[s.index[next]-1] & (indexSlots - 1)
		// The entry at next may fill the hole unless its home lies
		// cyclically in (hole, next]: then it would become unreachable.
		if (next-home)&(indexSlots-1) >= (next-hole)&(indexSlots-1) {
			s.index[hole] = s.index[next]
			hole = next
		}
	}
	s.index[hole] = 0
}

func (s *spaceSaving) swap(a, b int) {
	s.counts[a], s.counts[b] = s.counts[b], s.counts[a]
	s.heap[a], s.heap[b] = s.heap[b], s.heap[a]
	s.at[s.heap[a]], s.at[s.heap[b]] = uint8(a), uint8(b)
}

// up restores the heap after the count at position p arrived.
func (s *spaceSaving) up(p int) {
	for p > 0 {
		parent := (p - 1) / heapArity
		if s.counts[p] >= s.counts[parent] {
			return
		}
		s.swap(p, parent)
		p = parent
	}
}

// down restores the heap after the count at position p grew. A full set
// of children is compared as a tournament of plain selects, which the
// compiler can make conditional moves: under a flood of new keys the
// comparisons are coin flips that branches would mispredict.
func (s *spaceSaving) down(p int) {
	for {
		first := heapArity*p + 1
		var least int
		switch {
		case first+heapArity <= s.used:
			a, b := first, first+2
			if s.counts[first+1] < s.counts[a] {
				a = first + 1
			}
			if s.counts[first+3] < s.counts[b] {
				b = first + 3
			}
			if s.counts[b] < s.counts[a] {
				a = b
			}
			least = a
		case first < s.used:
			least = first
			for c := first + 1; c < s.used; c++ {
				if s.counts[c] < s.counts[least] {
					least = c
				}
			}
		default:
			return
		}
		if s.counts[least] >= s.counts[p] {
			return
		}
		s.swap(p, least)
		p = least
	}
}

// cutKey cuts key to at most KeyBytes on a character boundary; cut says
// whether anything was cut off.
func cutKey(key string) (kept string, cut bool) {
	if len(key) <= KeyBytes {
		return key, false
	}
	n := KeyBytes
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n], true
}
