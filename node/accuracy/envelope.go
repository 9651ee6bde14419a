package accuracy

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"time"
)

// CheckEnvelope reports an error when some window admitted more than
// burst + ratePerSec·Δ + eps cost (SPEC §4's safety promise for one bucket:
// pass the admits of one key).
//
// The harness does not know when a request was admitted, only that it was
// between its Sent and Done. So the check counts, for a window [T1, T2], the
// admits with Sent ≥ T1 and Done ≤ T2: those certainly fell inside it, and
// their sum must respect the bound for Δ = T2 − T1. Every such window is
// checked (it suffices to take T1 among the Sent and T2 among the Done
// stamps; any other window counts the same admits over a longer Δ). Errors
// therefore only go one way: a reported violation is real, up to eps, while
// an excess smaller than the tokens admitted during one decision's latency
// can go unseen. Scheduling delays in the harness widen [Sent, Done] and so
// only weaken the check, never fail it. The remaining error is the rate of
// the harness clock against the limiter's (Redis TIME), which eps covers.
//
// It runs in O(n log n): a sweep over the Done stamps with a segment tree,
// indexed by candidate T1, holding Σcost + rate·T1.
func CheckEnvelope(admits []Admit, burst int64, ratePerSec, eps float64) error {
	n := len(admits)
	if n == 0 {
		return nil
	}
	perNs := ratePerSec / 1e9
	starts := make([]time.Duration, n)
	for i, a := range admits {
		if a.Cost < 1 || a.Sent > a.Done {
			return fmt.Errorf("admit %d (%+v): want cost >= 1 and Sent <= Done", i, a)
		}
		starts[i] = a.Sent
	}
	slices.Sort(starts)
	byDone := slices.Clone(admits)
	slices.SortFunc(byDone, func(a, b Admit) int { return cmp.Compare(a.Done, b.Done) })

	tree := newMaxTree(n, func(i int) float64 { return perNs * float64(starts[i]) })
	var (
		worst      = eps
		worstT1    time.Duration
		worstT2    time.Duration
		worstCount float64
		violated   bool
	)
	for _, a := range byDone {
		// Every candidate T1 <= a.Sent now counts a.
		tree.add(upperBound(starts, a.Sent), float64(a.Cost))
		// Windows ending at a.Done start at a T1 <= a.Done.
		best, at := tree.max(upperBound(starts, a.Done))
		sum := best - perNs*float64(starts[at])
		excess := best - perNs*float64(a.Done) - float64(burst)
		if excess > worst {
			worst, worstT1, worstT2, worstCount, violated = excess, starts[at], a.Done, sum, true
		}
	}
	if violated {
		d := worstT2 - worstT1
		return fmt.Errorf("window [%v, %v] (Δ %v) admitted %.0f, more than burst %d + rate·Δ %.2f + eps %.2f",
			worstT1, worstT2, d, worstCount, burst, perNs*float64(d), eps)
	}
	return nil
}

// Utilisation is SPEC §4's measure: the cost admitted within [from, to] as
// a fraction of rate·(to − from). Only admits certainly inside the window
// count (Sent ≥ from, Done ≤ to), so harness delays can only lower it. Pick
// a window of sustained demand that starts once the bucket's initial burst
// is spent: from then on a limiter can admit no more than rate·Δ on average,
// and tokens still in flight at either end of the window cancel out.
func Utilisation(admits []Admit, ratePerSec float64, from, to time.Duration) float64 {
	var sum int64
	for _, a := range admits {
		if a.Sent >= from && a.Done <= to {
			sum += a.Cost
		}
	}
	return float64(sum) / (ratePerSec * (to - from).Seconds())
}

// upperBound is how many of the sorted ts are <= t.
func upperBound(ts []time.Duration, t time.Duration) int {
	return sort.Search(len(ts), func(i int) bool { return ts[i] > t })
}

// maxTree is a segment tree over n values with "add to a prefix" and "max
// (and where) of a prefix", both O(log n).
type maxTree struct {
	n       int
	best    []float64 // max of the node's range, including its own pending add
	at      []int     // index of that max
	pending []float64 // pending add for the node's whole range
}

func newMaxTree(n int, value func(i int) float64) *maxTree {
	t := &maxTree{n: n, best: make([]float64, 4*n), at: make([]int, 4*n), pending: make([]float64, 4*n)}
	t.build(1, 0, n-1, value)
	return t
}

func (t *maxTree) build(node, lo, hi int, value func(int) float64) {
	if lo == hi {
		t.best[node], t.at[node] = value(lo), lo
		return
	}
	mid := (lo + hi) / 2
	t.build(2*node, lo, mid, value)
	t.build(2*node+1, mid+1, hi, value)
	t.pull(node)
}

func (t *maxTree) pull(node int) {
	l, r := 2*node, 2*node+1
	if t.best[l] >= t.best[r] {
		t.best[node], t.at[node] = t.best[l], t.at[l]
	} else {
		t.best[node], t.at[node] = t.best[r], t.at[r]
	}
	t.best[node] += t.pending[node]
}

// add adds v to the first k values.
func (t *maxTree) add(k int, v float64) {
	if k > 0 {
		t.addRange(1, 0, t.n-1, k-1, v)
	}
}

func (t *maxTree) addRange(node, lo, hi, last int, v float64) {
	if hi <= last {
		t.best[node] += v
		t.pending[node] += v
		return
	}
	mid := (lo + hi) / 2
	t.addRange(2*node, lo, mid, last, v)
	if last > mid {
		t.addRange(2*node+1, mid+1, hi, last, v)
	}
	t.pull(node)
}

// max returns the largest of the first k values (k >= 1) and its index.
func (t *maxTree) max(k int) (float64, int) {
	return t.maxRange(1, 0, t.n-1, k-1)
}

func (t *maxTree) maxRange(node, lo, hi, last int) (float64, int) {
	if hi <= last {
		return t.best[node], t.at[node]
	}
	mid := (lo + hi) / 2
	best, at := t.maxRange(2*node, lo, mid, last)
	if last > mid {
		if b, i := t.maxRange(2*node+1, mid+1, hi, last); b > best {
			best, at = b, i
		}
	}
	return best + t.pending[node], at
}
