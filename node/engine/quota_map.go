package engine

import (
	"hash/maphash"
	"strings"
	"sync"
)

// quotaShards spreads quota keys over this many locks.
const quotaShards = 64

// quotaMap is a sharded map from bucket keys to quota state. Quota decisions
// lock a counter anyway, so a read-locked Go map per shard is plenty; the
// lock-free table in buckets is tuned for the token-bucket hot path.
type quotaMap[V any] struct {
	seed   maphash.Seed
	shards [quotaShards]quotaShard[V]
}

type quotaShard[V any] struct {
	mu sync.RWMutex
	m  map[string]V
}

func newQuotaMap[V any]() *quotaMap[V] {
	m := &quotaMap[V]{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]V)
	}
	return m
}

func (m *quotaMap[V]) shard(key []byte) *quotaShard[V] {
	return &m.shards[maphash.Bytes(m.seed, key)%quotaShards]
}

// loadOrStore returns key's value, storing mk() first if there is none.
func (m *quotaMap[V]) loadOrStore(key []byte, mk func() V) V {
	s := m.shard(key)
	s.mu.RLock()
	v, ok := s.m[string(key)]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[string(key)]; ok {
		return v
	}
	v = mk()
	s.m[string(key)] = v
	return v
}

// load returns key's value.
func (m *quotaMap[V]) load(key []byte) (V, bool) {
	s := m.shard(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(key)]
	return v, ok
}

// sweep deletes the entries remove approves, holding each shard's write lock
// while remove runs so that no lookup can hand the entry out meanwhile.
func (m *quotaMap[V]) sweep(remove func(key string, v V) bool) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, v := range s.m {
			if remove(k, v) {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// values returns every value, for background work that must not hold locks.
func (m *quotaMap[V]) values() []V {
	var out []V
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for _, v := range s.m {
			out = append(out, v)
		}
		s.mu.RUnlock()
	}
	return out
}

// keys returns up to limit keys that start with prefix, and whether more
// were left out.
func (m *quotaMap[V]) keys(prefix string, limit int) (keys []string, more bool) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for k := range s.m {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if len(keys) == limit {
				s.mu.RUnlock()
				return keys, true
			}
			keys = append(keys, k)
		}
		s.mu.RUnlock()
	}
	return keys, false
}

// len is the number of entries.
func (m *quotaMap[V]) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
