package hitters

import (
	"hash/maphash"
	"strings"
	"testing"
)

// TestHashKeyReadsEveryByte changes each byte of keys of every length up
// to past the inline limit and wants a different hash each time: a load
// at a wrong offset would leave some byte out and make those keys share
// cells and index slots.
func TestHashKeyReadsEveryByte(t *testing.T) {
	base := strings.Repeat("0123456789abcdefghijklmnopqrstuv", 2)
	seen := map[uint64]string{}
	for n := 0; n <= 40; n++ {
		key := base[:n]
		if other, ok := seen[hashKey(key)]; ok {
			t.Fatalf("%q and %q hash alike", key, other)
		}
		seen[hashKey(key)] = key
		for i := range n {
			changed := key[:i] + "#" + key[i+1:]
			if hashKey(changed) == hashKey(key) {
				t.Fatalf("changing byte %d of the %d-byte key %q leaves its hash unchanged", i, n, key)
			}
		}
	}
}

// BenchmarkHashKey compares hashKey with hash/maphash, which it replaces
// for keys of up to 16 bytes, on the client addresses the other benchmarks
// record.
func BenchmarkHashKey(b *testing.B) {
	keys := benchKeys()
	var sink uint64
	b.Run("maphash", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			sink += maphash.String(seed, keys[i&(len(keys)-1)])
		}
	})
	b.Run("hashKey", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			sink += hashKey(keys[i&(len(keys)-1)])
		}
	})
	_ = sink
}
