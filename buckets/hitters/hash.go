package hitters

import (
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
)

// hashKey hashes a key (already cut) for the index and the cells. Keys of
// up to 16 bytes, the usual client address or tenant, are mixed inline
// from two overlapping loads by two 64×64→128-bit multiplies (the mixing
// of wyhash), about half the cost of hash/maphash, which serves longer
// keys (BenchmarkHashKey measures both). The bounds do not depend on the
// hash: counters compare keys, and keys sharing a cell share its bound; a
// per-process random seed keeps anyone from choosing keys that share one.
func hashKey(k string) uint64 {
	var a, b uint64
	switch n := len(k); {
	case n > 16:
		return maphash.String(seed, k)
	case n >= 8:
		a, b = load64(k, 0), load64(k, n-8)
	case n >= 4:
		a, b = load32(k, 0), load32(k, n-4)
	case n > 0:
		a = uint64(k[0])<<16 | uint64(k[n>>1])<<8 | uint64(k[n-1])
	}
	hi, lo := bits.Mul64(a^mix0, b^mix1^uint64(len(k)))
	hi, lo = bits.Mul64(hi^lo, mix2)
	return hi ^ lo
}

var (
	seed             = maphash.MakeSeed()
	mix0, mix1, mix2 = rand.Uint64(), rand.Uint64(), rand.Uint64() | 1
)

// load64 and load32 read k's bytes from i, little-endian; the compiler
// makes each one load.
func load64(k string, i int) uint64 {
	_ = k[i+7]
	return uint64(k[i]) | uint64(k[i+1])<<8 | uint64(k[i+2])<<16 | uint64(k[i+3])<<24 |
		uint64(k[i+4])<<32 | uint64(k[i+5])<<40 | uint64(k[i+6])<<48 | uint64(k[i+7])<<56
}

func load32(k string, i int) uint64 {
	_ = k[i+3]
	return uint64(k[i]) | uint64(k[i+1])<<8 | uint64(k[i+2])<<16 | uint64(k[i+3])<<24
}
