package accuracy

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// exact returns admits with Sent == Done at the given instants, cost 1.
func exact(at ...time.Duration) []Admit {
	out := make([]Admit, len(at))
	for i, t := range at {
		out[i] = Admit{Key: "k", Cost: 1, Sent: t, Done: t}
	}
	return out
}

// perfectStream is what an exact limiter admits under unbounded demand:
// burst at once, then one token every 1/rate.
func perfectStream(burst, rate int, d time.Duration) []Admit {
	var at []time.Duration
	for range burst {
		at = append(at, 0)
	}
	step := time.Second / time.Duration(rate)
	for t := step; t <= d; t += step {
		at = append(at, t)
	}
	return exact(at...)
}

// tiny absorbs float rounding where a stream meets the bound exactly.
const tiny = 1e-6

func TestPerfectStreamPasses(t *testing.T) {
	admits := perfectStream(10, 1000, time.Second)
	if err := CheckEnvelope(admits, 10, 1000, tiny); err != nil {
		t.Fatal(err)
	}
	// 901 admits in [0.1 s, 1 s]: one per ms.
	if u := Utilisation(admits, 1000, 100*time.Millisecond, time.Second); u < 0.999 || u > 1.0012 {
		t.Fatalf("utilisation %.4f, want 1", u)
	}
}

func TestUtilisationCountsOnlyAdmitsCertainlyInside(t *testing.T) {
	admits := []Admit{
		{Cost: 3, Sent: 0, Done: time.Second},                   // started before the window
		{Cost: 5, Sent: time.Second, Done: 2 * time.Second},     // inside
		{Cost: 7, Sent: 2 * time.Second, Done: 4 * time.Second}, // answered after it
	}
	if u := Utilisation(admits, 1, time.Second, 3*time.Second); u != 2.5 {
		t.Fatalf("utilisation %v, want 5 admitted / (1/s · 2 s) = 2.5", u)
	}
}

func TestOneTokenTooManyFails(t *testing.T) {
	admits := perfectStream(10, 1000, time.Second)
	admits = append(admits, exact(500*time.Millisecond)...)
	err := CheckEnvelope(admits, 10, 1000, tiny)
	if err == nil || !strings.Contains(err.Error(), "admitted") {
		t.Fatalf("one extra token: got %v, want a violation", err)
	}
	// The same stream against a bucket one token larger is fine.
	if err := CheckEnvelope(admits, 11, 1000, tiny); err != nil {
		t.Fatal(err)
	}
	// And eps of one token forgives it.
	if err := CheckEnvelope(admits, 10, 1000, 1+tiny); err != nil {
		t.Fatal(err)
	}
}

func TestViolationInsideLongRunIsFound(t *testing.T) {
	// Two bursts 50 ms apart at rate 100/s: the second burst needed 50 ms ×
	// 100/s = 5 tokens of refill, so it may hold 5, not 10.
	var at []time.Duration
	for range 10 {
		at = append(at, 0)
	}
	for range 6 {
		at = append(at, 50*time.Millisecond)
	}
	admits := exact(at...)
	if err := CheckEnvelope(admits, 10, 100, tiny); err == nil || !strings.Contains(err.Error(), "admitted 16") {
		t.Fatalf("got %v, want the 16 admits in [0, 50ms] reported", err)
	}
	if err := CheckEnvelope(admits[:15], 10, 100, tiny); err != nil {
		t.Fatalf("10 + 5 tokens in 50 ms at 100/s: %v", err)
	}
}

func TestHarnessDelaysNeverFail(t *testing.T) {
	// An exact limiter admits one token per ms, but the harness saw the
	// answers late and bunched: all Done stamps at 100 ms. Taken at Done
	// alone that is 101 tokens at once against a burst of 1; with the Sent
	// stamps it is what it was, and must pass.
	var admits []Admit
	for i := range 101 {
		sent := time.Duration(i) * time.Millisecond
		admits = append(admits, Admit{Key: "k", Cost: 1, Sent: sent, Done: 100 * time.Millisecond})
	}
	if err := CheckEnvelope(admits, 1, 1000, tiny); err != nil {
		t.Fatalf("late answers made a violation: %v", err)
	}
}

func TestLatencyCanHideExcessOnlyWithinItsSpan(t *testing.T) {
	// Five tokens over a 1-token burst, each request in flight for 10 ms:
	// the admits might all have happened at 10 ms (a violation) or spread
	// over it (allowed at 1000/s). The check only reports certain
	// violations, so this passes ...
	var admits []Admit
	for range 5 {
		admits = append(admits, Admit{Key: "k", Cost: 1, Sent: 0, Done: 10 * time.Millisecond})
	}
	if err := CheckEnvelope(admits, 1, 1000, tiny); err != nil {
		t.Fatalf("uncertain window reported: %v", err)
	}
	// ... but twenty such admits cannot fit into 10 ms at any timing.
	for range 15 {
		admits = append(admits, Admit{Key: "k", Cost: 1, Sent: 0, Done: 10 * time.Millisecond})
	}
	if err := CheckEnvelope(admits, 1, 1000, tiny); err == nil {
		t.Fatal("20 admits within 10 ms at 1000/s with burst 1 passed")
	}
}

func TestCostsCount(t *testing.T) {
	admits := []Admit{{Key: "k", Cost: 7, Sent: 0, Done: 0}, {Key: "k", Cost: 4, Sent: time.Millisecond, Done: time.Millisecond}}
	if err := CheckEnvelope(admits, 10, 1000, tiny); err != nil {
		t.Fatalf("7 then 4 one ms later, burst 10 at 1000/s: %v", err)
	}
	admits[1].Cost = 5
	if err := CheckEnvelope(admits, 10, 1000, tiny); err == nil {
		t.Fatal("7 then 5 one ms later, burst 10 at 1000/s, passed")
	}
}

func TestBadAdmitsRejected(t *testing.T) {
	for _, a := range []Admit{{Cost: 0}, {Cost: 1, Sent: 2, Done: 1}} {
		if err := CheckEnvelope([]Admit{a}, 1, 1, 0); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

// bruteExcess is the largest Σcost − burst − rate·Δ over every window
// [T1, T2] with T1 a Sent and T2 a Done stamp, counting the admits inside.
func bruteExcess(admits []Admit, burst int64, ratePerSec float64) float64 {
	worst := -1e18
	for _, a := range admits {
		for _, b := range admits {
			t1, t2 := a.Sent, b.Done
			if t1 > t2 {
				continue
			}
			var sum int64
			for _, c := range admits {
				if c.Sent >= t1 && c.Done <= t2 {
					sum += c.Cost
				}
			}
			worst = max(worst, float64(sum)-float64(burst)-ratePerSec*(t2-t1).Seconds())
		}
	}
	return worst
}

func TestAgreesWithBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		n := 1 + rng.IntN(40)
		var admits []Admit
		for range n {
			sent := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
			latency := time.Duration(rng.Int64N(int64(3 * time.Millisecond)))
			admits = append(admits, Admit{Key: "k", Cost: 1 + rng.Int64N(3), Sent: sent, Done: sent + latency})
		}
		const burst, rate = 5, 400.0
		excess := bruteExcess(admits, burst, rate)
		for _, eps := range []float64{excess - 0.01, excess + 0.01} {
			if eps < 0 {
				continue
			}
			err := CheckEnvelope(admits, burst, rate, eps)
			if (err != nil) != (excess > eps) {
				t.Fatalf("round %d, eps %.3f: brute-force excess %.3f, CheckEnvelope says %v", round, eps, excess, err)
			}
		}
	}
}

func TestLargeStreamIsQuick(t *testing.T) {
	admits := perfectStream(100, 20000, 5*time.Second) // 100k admits
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range admits {
		admits[i].Done += time.Duration(rng.Int64N(int64(time.Millisecond)))
	}
	rng.Shuffle(len(admits), func(i, j int) { admits[i], admits[j] = admits[j], admits[i] })
	start := time.Now()
	if err := CheckEnvelope(admits, 100, 20000, tiny); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("checked %d admits in %v", len(admits), took)
	if took > 10*time.Second {
		t.Fatalf("checking %d admits took %v", len(admits), took)
	}
}

func TestRecorderIsConcurrencySafe(t *testing.T) {
	rec := NewRecorder()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			key := string(rune('a' + g%2))
			for range 1000 {
				sent := rec.Now()
				rec.Record(key, 1, sent, rec.Now())
			}
		})
	}
	wg.Wait()
	if n := len(rec.Admits()); n != 8000 {
		t.Fatalf("%d admits recorded, want 8000", n)
	}
	byKey := rec.ByKey()
	if len(byKey) != 2 || len(byKey["a"]) != 4000 || len(byKey["b"]) != 4000 {
		t.Fatalf("by key: %d keys, a %d, b %d; want 4000 each", len(byKey), len(byKey["a"]), len(byKey["b"]))
	}
	for _, a := range byKey["a"] {
		if a.Sent > a.Done {
			t.Fatalf("admit %+v: Sent after Done", a)
		}
	}
}
