package hitters

import "unicode/utf8"

// Capacity is the number of counters one side of one second keeps: a key
// whose cost exceeds 1/Capacity of a window's total is always listed, and
// every count is within total/Capacity of the truth.
const Capacity = 64

// KeyBytes is the longest key a counter keeps whole; 70 makes a counter
// 96 bytes.
const KeyBytes = 70

// indexSlots sizes the open-addressing index at twice Capacity, so that
// probes stay short; a power of two, so a hash picks a slot with a mask.
const indexSlots = 2 * Capacity

// cutMark ends a key cut to KeyBytes.
const cutMark = "…"

// counter is one Space-Saving counter: a key and its count, of which up to
// err may belong to the keys it replaced.
type counter struct {
	count, err int64
	hash       uint64
	keyLen     uint8
	cut        bool
	key        [KeyBytes]byte
}

func (c *counter) is(key string, cut bool, hash uint64) bool {
	return c.hash == hash && c.cut == cut && string(c.key[:c.keyLen]) == key
}

func (c *counter) displayKey() string {
	if c.cut {
		return string(c.key[:c.keyLen]) + cutMark
	}
	return string(c.key[:c.keyLen])
}

// spaceSaving is one fixed-size Space-Saving summary. Counters sit in a
// min-heap on count, so the smallest is the one a new key takes over, and
// in a linear-probing index by key hash. It is not safe for concurrent use.
type spaceSaving struct {
	total    int64 // exact cost added since reset
	used     int   // counters in use
	counters [Capacity]counter
	heap     [Capacity]uint8   // counter indexes, smallest count first
	at       [Capacity]uint8   // counter index → its position in heap
	index    [indexSlots]uint8 // counter index + 1 by hash; 0 is free
}

// reset empties s; counters are overwritten as keys arrive.
func (s *spaceSaving) reset() {
	s.total, s.used = 0, 0
	s.index = [indexSlots]uint8{}
}

// floor is the most cost a key s does not count can have had.
func (s *spaceSaving) floor() int64 {
	if s.used < Capacity {
		return 0 // nothing was ever replaced: every key is counted exactly
	}
	return s.counters[s.heap[0]].count
}

// add counts cost for key (already cut by cutKey) whose hash is hash.
func (s *spaceSaving) add(key string, cut bool, hash uint64, cost int64) {
	s.total += cost
	for slot := hash & (indexSlots - 1); s.index[slot] != 0; slot = (slot + 1) & (indexSlots - 1) {
		i := int(s.index[slot]) - 1
		if c := &s.counters[i]; c.is(key, cut, hash) {
			c.count += cost
			s.down(int(s.at[i]))
			return
		}
	}
	if s.used < Capacity {
		i := s.used
		s.used++
		s.counters[i].set(key, cut, hash, cost, 0)
		s.heap[i], s.at[i] = uint8(i), uint8(i)
		s.up(i)
		s.insert(hash, i)
		return
	}
	i := int(s.heap[0])
	c := &s.counters[i]
	s.remove(c.hash, i)
	c.set(key, cut, hash, c.count+cost, c.count)
	s.down(0)
	s.insert(hash, i)
}

func (c *counter) set(key string, cut bool, hash uint64, count, err int64) {
	c.count, c.err, c.hash, c.cut = count, err, hash, cut
	c.keyLen = uint8(copy(c.key[:], key))
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
		home := s.counters[s.index[next]-1].hash & (indexSlots - 1)
		// The entry at next may fill the hole unless its home lies
		// cyclically in (hole, next]: then it would become unreachable.
		if (next-home)&(indexSlots-1) >= (next-hole)&(indexSlots-1) {
			s.index[hole] = s.index[next]
			hole = next
		}
	}
	s.index[hole] = 0
}

func (s *spaceSaving) less(a, b int) bool {
	return s.counters[s.heap[a]].count < s.counters[s.heap[b]].count
}

func (s *spaceSaving) swap(a, b int) {
	s.heap[a], s.heap[b] = s.heap[b], s.heap[a]
	s.at[s.heap[a]], s.at[s.heap[b]] = uint8(a), uint8(b)
}

// up restores the heap after the counter at position p shrank or arrived.
func (s *spaceSaving) up(p int) {
	for p > 0 {
		parent := (p - 1) / 2
		if !s.less(p, parent) {
			return
		}
		s.swap(p, parent)
		p = parent
	}
}

// down restores the heap after the counter at position p grew.
func (s *spaceSaving) down(p int) {
	for {
		least := p
		if l := 2*p + 1; l < s.used && s.less(l, least) {
			least = l
		}
		if r := 2*p + 2; r < s.used && s.less(r, least) {
			least = r
		}
		if least == p {
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
