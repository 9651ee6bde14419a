package buckets

import (
	"math"
	"testing"
	"time"
)

func TestNewLimitRoundsInterval(t *testing.T) {
	cases := []struct {
		rate  int64
		per   time.Duration
		burst int64
		want  Limit
	}{
		{rate: 10, per: time.Second, burst: 20, want: Limit{Interval: 100_000_000, Burst: 20}},
		{rate: 3, per: time.Second, burst: 3, want: Limit{Interval: 333_333_333, Burst: 3}},
		{rate: 2, per: 3, burst: 1, want: Limit{Interval: 2, Burst: 1}},                  // 1.5 rounds up
		{rate: 1000, per: time.Nanosecond, burst: 0, want: Limit{Interval: 1, Burst: 1}}, // floors at 1
	}
	for _, c := range cases {
		if got := NewLimit(c.rate, c.per, c.burst); got != c.want {
			t.Errorf("NewLimit(%d, %v, %d) = %+v, want %+v", c.rate, c.per, c.burst, got, c.want)
		}
	}
}

func TestTakeOutcomes(t *testing.T) {
	const ms = int64(time.Millisecond)
	lim := NewLimit(10, time.Second, 5) // a token every 100ms, window 500ms
	tab := NewTable()
	key := []byte("k")
	steps := []struct {
		name string
		now  int64
		cost int64 // 0 means Peek
		want Outcome
	}{
		{"fresh bucket is full", 0, 0, Outcome{Allowed: true, Remaining: 5}},
		{"take one", 0, 1, Outcome{Allowed: true, Remaining: 4, Reset: 100 * ms}},
		{"take the rest", 0, 4, Outcome{Allowed: true, Remaining: 0, Reset: 500 * ms}},
		{"empty bucket denies", 0, 1, Outcome{Remaining: 0, Reset: 500 * ms, RetryAfter: 100 * ms}},
		{"partial refill is floored", 150 * ms, 0, Outcome{Allowed: true, Remaining: 1, Reset: 350 * ms}},
		{"denied take waits for cost", 150 * ms, 3, Outcome{Remaining: 1, Reset: 350 * ms, RetryAfter: 150 * ms}},
		{"denial changed nothing", 150 * ms, 1, Outcome{Allowed: true, Remaining: 0, Reset: 450 * ms}},
		{"full again at reset", 600 * ms, 0, Outcome{Allowed: true, Remaining: 5}},
		{"cost above burst", 600 * ms, 6, Outcome{Remaining: 5, TooCostly: true}},
		{"cost equal to burst", 600 * ms, 5, Outcome{Allowed: true, Remaining: 0, Reset: 500 * ms}},
		{"too costly even when empty", 600 * ms, 6, Outcome{Remaining: 0, Reset: 500 * ms, TooCostly: true}},
	}
	for _, s := range steps {
		var got Outcome
		if s.cost == 0 {
			got = tab.Peek(key, lim, s.now)
		} else {
			got = tab.Take(key, lim, s.cost, s.now)
		}
		if got != s.want {
			t.Fatalf("%s: got %+v, want %+v", s.name, got, s.want)
		}
	}
}

func TestSpanSaturatesInsteadOfOverflowing(t *testing.T) {
	lim := Limit{Interval: int64(time.Hour), Burst: math.MaxInt64 / 2}
	if got := lim.span(lim.Burst); got != maxSpan {
		t.Fatalf("span = %d, want maxSpan %d", got, maxSpan)
	}
	tab := NewTable()
	out := tab.Take([]byte("k"), lim, 1, 0)
	if !out.Allowed || out.Reset != int64(time.Hour) || out.Remaining <= 0 {
		t.Fatalf("huge limit: %+v", out)
	}
}
