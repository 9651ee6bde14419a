package buckets

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func numberedKeys(prefix string, n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte(prefix), int64(i), 10)
	}
	return keys
}

func TestKeyMapStoresLoadsSweepsAndShrinks(t *testing.T) {
	m := newKeyMap[int]()
	keys := append(numberedKeys("k", 20_000), []byte{})
	for i, k := range keys {
		if v, loaded := m.LoadOrStore(k, func() int { return i }); loaded || v != i {
			t.Fatalf("first LoadOrStore(%q) = %d, %v; want %d, false", k, v, loaded, i)
		}
	}
	for i, k := range keys {
		if v, loaded := m.LoadOrStore(k, func() int { t.Fatalf("mk called for present key %q", k); return 0 }); !loaded || v != i {
			t.Fatalf("second LoadOrStore(%q) = %d, %v; want %d, true", k, v, loaded, i)
		}
	}
	if m.Len() != len(keys) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(keys))
	}

	removed := m.Sweep(func(key string, v int) bool {
		if key != string(keys[v]) {
			t.Fatalf("Sweep saw key %q with value %d, which belongs to %q", key, v, keys[v])
		}
		return v%2 == 1
	})
	if removed != len(keys)/2 || m.Len() != len(keys)-removed {
		t.Fatalf("odd Sweep removed %d leaving %d, want %d leaving %d", removed, m.Len(), len(keys)/2, len(keys)-len(keys)/2)
	}
	for i, k := range keys {
		if v, ok := m.Load(k); ok != (i%2 == 0) || ok && v != i {
			t.Fatalf("after odd Sweep, Load(%q) = %d, %v", k, v, ok)
		}
	}

	if n := m.Sweep(func(string, int) bool { return true }); n != len(keys)-removed || m.Len() != 0 {
		t.Fatalf("full Sweep removed %d leaving %d", n, m.Len())
	}
	for i := range m.shards {
		if size := len(m.shards[i].table.Load().slots); size != minSlots {
			t.Fatalf("shard %d kept %d slots after emptying, want %d", i, size, minSlots)
		}
	}
	if _, loaded := m.LoadOrStore(keys[1], func() int { return 1 }); loaded {
		t.Fatal("a swept key was still present")
	}
	if v, ok := m.Load(keys[1]); !ok || v != 1 {
		t.Fatalf("re-inserted key: Load = %d, %v", v, ok)
	}
}

// counter is a value that, like a bucket, is updated in place with CAS and
// retired by Sweep with a CAS to a sentinel.
type counter struct {
	key string
	n   atomic.Int64
}

const retiredCount = -1

// incr adds one to key's counter, looking it up again if Sweep retired it.
func incr(m *keyMap[*counter], key []byte, created *atomic.Int64) {
	mk := func() *counter {
		created.Add(1)
		return &counter{key: string(key)}
	}
	c, _ := m.LoadOrStore(key, mk)
	for {
		n := c.n.Load()
		if n == retiredCount {
			c, _ = m.LoadOrStoreLocked(key, mk)
			continue
		}
		if c.n.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// Writers increment counters while Sweep retires and removes them and
// readers look them up: every increment must end up either in a retired
// counter or in the one left in the map (none lost to a counter orphaned by
// a lost insert or removal), and every counter created must have been
// removed or still be in the map (none duplicated by racing inserts).
func TestKeyMapConcurrentLosesAndDuplicatesNothing(t *testing.T) {
	m := newKeyMap[*counter]()
	keys := numberedKeys("key-", 20_000) // ~80 a shard, so tables grow and shrink
	created := make([]atomic.Int64, len(keys))
	var increments atomic.Int64
	retired := make(map[string]int64) // sum of retired counters, per key
	removed := make(map[string]int64) // counters removed, per key

	const minOps, minSweeps = 200_000, 20
	deadline := time.Now().Add(20 * time.Second)
	var ops, sweeps atomic.Int64
	done := func() bool {
		return ops.Load() >= minOps && sweeps.Load() >= minSweeps || time.Now().After(deadline)
	}

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			n := int64(0)
			for i := g; !done(); i++ { // workers close together race to insert the same keys
				k := i % len(keys)
				incr(m, keys[k], &created[k])
				n++
				ops.Add(1)
				other := keys[(k+1)%len(keys)]
				if c, ok := m.Load(other); ok && c.key != string(other) {
					t.Errorf("Load(%q) returned the counter of %q", other, c.key)
				}
			}
			increments.Add(n)
		})
	}
	wg.Go(func() {
		for pass := 0; !done(); pass++ {
			n := m.Sweep(func(key string, c *counter) bool {
				if key != c.key {
					t.Errorf("Sweep saw key %q holding the counter of %q", key, c.key)
				}
				// Retire about half the counters a pass, so lookups meet
				// both tombstones and live items.
				n := c.n.Load()
				if (n+int64(pass))%2 != 0 || !c.n.CompareAndSwap(n, retiredCount) {
					return false
				}
				retired[key] += n
				removed[key]++
				return true
			})
			if n > 0 {
				sweeps.Add(1)
			}
		}
	})
	wg.Wait()
	if sweeps.Load() < minSweeps {
		t.Fatalf("only %d sweeps removed anything in 20s; the race was not exercised", sweeps.Load())
	}

	var counted int64
	present := 0
	for k, key := range keys {
		inMap := int64(0)
		if c, ok := m.Load(key); ok {
			inMap = 1
			counted += c.n.Load()
		}
		present += int(inMap)
		if created[k].Load() != removed[string(key)]+inMap {
			t.Fatalf("key %q: %d counters created, %d removed, %d in the map", key, created[k].Load(), removed[string(key)], inMap)
		}
		counted += retired[string(key)]
	}
	if counted != increments.Load() {
		t.Fatalf("counters hold %d increments, want %d", counted, increments.Load())
	}
	if m.Len() != present {
		t.Fatalf("Len = %d, but %d keys are present", m.Len(), present)
	}
	t.Logf("%d increments, %d sweeps that removed counters", increments.Load(), sweeps.Load())
}
