package hitters

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// benchKeys are 4096 client addresses, a realistic key shape; a power of
// two, so that picking one costs a mask, not a division.
func benchKeys() []string {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("198.51.%d.%d", i/256, i%256)
	}
	return keys
}

// BenchmarkRecordHot records one key over and over: the key is counted, so
// this is the lookup-and-increment path an attacker's key takes.
func BenchmarkRecordHot(b *testing.B) {
	var r Rule
	r.Record("203.0.113.7", 1, true, 0)
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now += 100 // ten million decisions a second: seconds do turn over
		r.Record("203.0.113.7", 1, true, now)
	}
}

// BenchmarkRecordSpread records 4096 keys in turn, far more than a second's
// Capacity: nearly every Record replaces the smallest counter.
func BenchmarkRecordSpread(b *testing.B) { recordInTurn(b, benchKeys()) }

// BenchmarkRecordZipf records Zipf-distributed keys (s = 1.2 over 100,000
// keys): a few heavy keys that stay counted and a long tail of keys the
// summary does not count, the shape of ordinary traffic.
func BenchmarkRecordZipf(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.2, 1, 100_000-1)
	keys := make([]string, 1<<16)
	for i := range keys {
		rank := zipf.Uint64()
		keys[i] = fmt.Sprintf("198.%d.%d.%d", rank>>16, rank>>8&0xff, rank&0xff)
	}
	recordInTurn(b, keys)
}

// recordInTurn records keys (a power of two of them) in turn, one in eight
// denied, ten million a second, so seconds do turn over.
func recordInTurn(b *testing.B, keys []string) {
	var r Rule
	b.ReportAllocs()
	now, i := int64(0), 0
	for b.Loop() {
		now += 100
		i++
		r.Record(keys[i&(len(keys)-1)], 1, i%8 == 0, now)
	}
}

// BenchmarkRecordParallel has every core record into the same rule and
// side: the contended case, one lock per side and second.
func BenchmarkRecordParallel(b *testing.B) {
	var r Rule
	keys := benchKeys()
	var worker atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		now := int64(0)
		for pb.Next() {
			i++
			now += 100
			r.Record(keys[i&15], 1, true, now) // a few heavy keys, as in an attack
		}
	})
}

// BenchmarkRecordAll records batches of 1000 decisions over the 4096 keys
// with RecordAll, as a batch of checks does: the per-Record cost less the
// lock, paid once per side and chunk.
func BenchmarkRecordAll(b *testing.B) {
	var r Rule
	keys := benchKeys()
	recs := make([]Rec, 1000)
	b.ReportAllocs()
	now, i := int64(0), 0
	for b.Loop() {
		for j := range recs {
			i++
			recs[j] = Rec{Key: keys[i&(len(keys)-1)], Cost: 1, Denied: i%8 == 0}
		}
		now += 100 * int64(len(recs))
		r.RecordAll(recs, now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
