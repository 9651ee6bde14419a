package buckets

import (
	"math"
	"strconv"
	"testing"
)

// BenchmarkSliceSweep is one sweeper tick over 100,000 warm keys holding
// roomy (5-minute) slices with deadlines spread evenly, every key in use:
// "full" visits every key (Expire, as every tick did before the deadline
// index), "due" only the slices due or near their deadline (Due). Ticks are
// 125 ms apart, as with the default 250 ms slice TTL; every slice settled or
// picked for renewal is replaced by a fresh one, as the renewals would, so
// both keep the same steady state.
func BenchmarkSliceSweep(b *testing.B) {
	const (
		keys  = 100_000
		life  = int64(300e9)
		tick  = int64(125e6)
		ttl   = int64(250e6)
		start = int64(1) << 40
	)
	for _, mode := range []string{"full", "due"} {
		b.Run("keys=100000/"+mode, func(b *testing.B) {
			tab := NewSliceTable()
			renewAt := func(e *SliceEntry, now int64) {
				e.Install(NewSlice(1, 100, now, now+life, 0, 0), now)
			}
			for i := range keys {
				e := tab.Entry(strconv.AppendInt([]byte("per-ip:"), int64(i), 10), "r", "k")
				e.lastUsed.Store(math.MaxInt64)
				issued := start - life*int64(i)/keys
				e.Install(NewSlice(1, 100, issued, issued+life, 0, 0), issued)
			}
			now := start
			settle := func(e *SliceEntry, _ *Slice, _ int64) { renewAt(e, now) }
			b.ResetTimer()
			for b.Loop() {
				now += tick
				ahead := &RenewAhead{Before: now + 2*ttl, MinLife: ttl + 1}
				var renew []*SliceEntry
				if mode == "full" {
					_, renew = tab.Expire(now, now-30e9, ahead, settle)
				} else {
					renew = tab.Due(now, ahead, settle)
				}
				for _, e := range renew {
					e.Retire(now)
					renewAt(e, now)
				}
			}
		})
	}
}
