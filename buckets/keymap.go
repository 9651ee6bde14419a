package buckets

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// keyShardBits picks a shard from a key hash's top bits (the slot comes from
// its low bits); 256 shards keep writer contention (inserts, sweeps, table
// rebuilds) rare and each rebuild small.
const keyShardBits = 8

// minSlots is the smallest table size; sizes are powers of two so a hash
// picks a slot with a mask.
const minSlots = 8

// keyMap is a concurrent map from byte-string keys to V whose lookups take no
// lock, write no shared memory and allocate nothing, so they scale with cores.
//
// Each shard is an open-addressing (linear probing) hash table whose slots
// are atomic pointers to immutable items. A reader loads the shard's current
// table and probes it. Writers hold the shard's mutex: an insert publishes an
// item with one atomic store into a free slot, a removal stores the map's
// tombstone in its slot, and a table that is too full or oversized is rebuilt
// and swapped in whole. A reader still probing a replaced table sees a
// consistent, if stale, snapshot; LoadOrStore settles a miss under the lock.
//
// Why this and not the alternatives (measured with this package's benchmarks
// on 2 cores): an RWMutex'd map writes the lock's reader count on every
// lookup, so two cores taking different keys got slower together than one
// alone. sync.Map (a lock-free hash-trie since Go 1.24) scales as well and is
// as fast, but it took 156 bytes a bucket in TestMemoryPerKey against 83
// here, counts keys only by walking them all, and would still need per-shard
// locks so that an insert cannot race a Sweep retiring the same key. A sync.Map-style read-only map
// plus dirty map would copy a shard's map to publish new keys and to delete
// any, where this table publishes and removes keys in place.
type keyMap[V any] struct {
	shards    [1 << keyShardBits]keyShard[V]
	seed      maphash.Seed
	tombstone *keyItem[V] // marks a removed item's slot; probes continue past it
}

type keyItem[V any] struct {
	hash uint64
	key  string
	val  V
}

// keyTable's slots hold nil (never used: ends a probe), the tombstone or an
// item. At least a quarter of them are nil so that every probe ends.
type keyTable[V any] struct {
	slots []atomic.Pointer[keyItem[V]]
	mask  uint64
}

type keyShard[V any] struct {
	table atomic.Pointer[keyTable[V]]
	mu    sync.Mutex
	live  int // items in table (guarded by mu)
	used  int // non-nil slots in table: items and tombstones (guarded by mu)
	// Pads a shard to 64 bytes so that one shard's writers do not evict
	// its neighbours' table pointers from the readers' caches.
	_ [32]byte
}

func newKeyMap[V any]() *keyMap[V] {
	m := &keyMap[V]{seed: maphash.MakeSeed(), tombstone: new(keyItem[V])}
	for i := range m.shards {
		m.shards[i].table.Store(newKeyTable[V](minSlots))
	}
	return m
}

func newKeyTable[V any](size int) *keyTable[V] {
	return &keyTable[V]{slots: make([]atomic.Pointer[keyItem[V]], size), mask: uint64(size - 1)}
}

func (m *keyMap[V]) shardFor(hash uint64) *keyShard[V] {
	return &m.shards[hash>>(64-keyShardBits)]
}

// Load returns key's value, if present.
func (m *keyMap[V]) Load(key []byte) (V, bool) {
	h := maphash.Bytes(m.seed, key)
	if it := m.shardFor(h).table.Load().find(h, key, m.tombstone); it != nil {
		return it.val, true
	}
	var zero V
	return zero, false
}

// LoadOrStore returns key's value if present (loaded true); otherwise it
// stores and returns mk(), copying key. mk runs under the shard's lock, so it
// is called at most once per insert and is ordered after any Sweep of the
// shard that removed key.
func (m *keyMap[V]) LoadOrStore(key []byte, mk func() V) (v V, loaded bool) {
	h := maphash.Bytes(m.seed, key)
	if it := m.shardFor(h).table.Load().find(h, key, m.tombstone); it != nil {
		return it.val, true
	}
	return m.loadOrStoreLocked(h, key, mk)
}

// LoadOrStoreLocked is LoadOrStore looking key up only under the shard's
// lock, which a Sweep holds until it has removed what it retired. A caller
// that finds its value retired by a running Sweep (e.g. CASed to a sentinel)
// calls it to wait for the key's removal, rather than spin on the stale value.
func (m *keyMap[V]) LoadOrStoreLocked(key []byte, mk func() V) (v V, loaded bool) {
	return m.loadOrStoreLocked(maphash.Bytes(m.seed, key), key, mk)
}

func (m *keyMap[V]) loadOrStoreLocked(h uint64, key []byte, mk func() V) (v V, loaded bool) {
	s := m.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	if it := t.find(h, key, m.tombstone); it != nil {
		return it.val, true
	}
	if (s.used+1)*4 > len(t.slots)*3 {
		t = s.rebuild(s.live+1, m.tombstone)
	}
	it := &keyItem[V]{hash: h, key: string(key), val: mk()}
	i := h & t.mask
	for ; ; i = (i + 1) & t.mask {
		if old := t.slots[i].Load(); old == nil || old == m.tombstone {
			if old == nil {
				s.used++
			}
			break
		}
	}
	t.slots[i].Store(it)
	s.live++
	return it.val, false
}

// Sweep calls remove for every item, one shard at a time under that shard's
// lock (so remove may retire the value, e.g. CAS it to a sentinel, knowing no
// insert of the same key can run meanwhile), removes those for which it
// returns true and returns how many it removed. A shard left mostly empty is
// shrunk, so memory follows a mass eviction down.
func (m *keyMap[V]) Sweep(remove func(key string, v V) bool) int {
	n := 0
	for i := range m.shards {
		n += m.shards[i].sweep(remove, m.tombstone)
	}
	return n
}

// Keys returns up to limit held keys that start with prefix, and whether
// more were left out. Keys inserted meanwhile may be missed.
func (m *keyMap[V]) Keys(prefix string, limit int) (keys []string, more bool) {
	for i := range m.shards {
		t := m.shards[i].table.Load()
		for j := range t.slots {
			it := t.slots[j].Load()
			if it == nil || it == m.tombstone || !strings.HasPrefix(it.key, prefix) {
				continue
			}
			if len(keys) == limit {
				return keys, true
			}
			keys = append(keys, it.key)
		}
	}
	return keys, false
}

// Len returns the number of keys held.
func (m *keyMap[V]) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += s.live
		s.mu.Unlock()
	}
	return n
}

// find returns key's item in t, or nil.
func (t *keyTable[V]) find(hash uint64, key []byte, tombstone *keyItem[V]) *keyItem[V] {
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return nil
		}
		if it.hash == hash && it != tombstone && it.key == string(key) {
			return it
		}
	}
}

func (s *keyShard[V]) sweep(remove func(key string, v V) bool, tombstone *keyItem[V]) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	n := 0
	for i := range t.slots {
		if it := t.slots[i].Load(); it != nil && it != tombstone && remove(it.key, it.val) {
			t.slots[i].Store(tombstone)
			n++
		}
	}
	s.live -= n
	if len(t.slots) > minSlots && s.live*8 <= len(t.slots) {
		s.rebuild(s.live, tombstone)
	}
	return n
}

// rebuild publishes a tombstone-free copy of the shard's table sized for n
// items (at most half full) and returns it. Called with s.mu held.
func (s *keyShard[V]) rebuild(n int, tombstone *keyItem[V]) *keyTable[V] {
	size := minSlots
	for size < 2*n {
		size *= 2
	}
	old, t := s.table.Load(), newKeyTable[V](size)
	for i := range old.slots {
		it := old.slots[i].Load()
		if it == nil || it == tombstone {
			continue
		}
		j := it.hash & t.mask
		for t.slots[j].Load() != nil {
			j = (j + 1) & t.mask
		}
		t.slots[j].Store(it)
	}
	s.used = s.live
	s.table.Store(t)
	return t
}
