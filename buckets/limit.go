package buckets

import (
	"math/bits"
	"time"
)

// maxSpan caps Burst·Interval and cost·Interval (about 146 years) so that
// TAT arithmetic cannot overflow int64 for absurd limits.
const maxSpan = int64(1) << 62

// Limit is a bucket's parameters in GCRA form. The zero Limit is invalid.
type Limit struct {
	Interval int64 // nanoseconds per token (per/rate), >= 1
	Burst    int64 // capacity in tokens, >= 1
}

// NewLimit converts "rate tokens per `per`, capacity burst" (rate >= 1) to
// GCRA form, rounding Interval to the nearest nanosecond (at least 1) and
// raising burst to at least 1.
func NewLimit(rate int64, per time.Duration, burst int64) Limit {
	p := per.Nanoseconds()
	interval := p / rate
	if (p%rate)*2 >= rate {
		interval++
	}
	return Limit{Interval: max(interval, 1), Burst: max(burst, 1)}
}

// Outcome of a Take/Peek. Durations in nanoseconds.
type Outcome struct {
	Allowed    bool
	Remaining  int64 // whole tokens left after this decision
	Reset      int64 // ns until the bucket is full again
	RetryAfter int64 // ns until `cost` tokens are available (0 when allowed)
	TooCostly  bool  // cost > Burst: can never be allowed (RetryAfter is then 0)
}

// span is the time `tokens` tokens take to refill, saturating at maxSpan.
func (l Limit) span(tokens int64) int64 {
	hi, lo := bits.Mul64(uint64(tokens), uint64(l.Interval))
	if hi != 0 || lo > uint64(maxSpan) {
		return maxSpan
	}
	return int64(lo)
}

// take decides a take of cost (1 <= cost <= Burst) from a bucket whose TAT is
// tat and returns the outcome and the TAT to store (tat itself if denied).
func (l Limit) take(tat, cost, now int64) (Outcome, int64) {
	window := l.span(l.Burst)
	base := max(tat, now)
	newTAT := base + l.span(cost)
	if allowAt := newTAT - window; allowAt > now {
		out := l.state(base, now, window)
		out.Allowed = false
		out.RetryAfter = allowAt - now
		return out, tat
	}
	return l.state(newTAT, now, window), newTAT
}

// state reports a bucket with TAT tat as an allowed zero-cost outcome.
func (l Limit) state(tat, now, window int64) Outcome {
	if tat <= now {
		return Outcome{Allowed: true, Remaining: l.Burst}
	}
	// left < 0 only when callers' clock reads race (now older than a stored TAT's).
	left := max(now+window-tat, 0)
	return Outcome{Allowed: true, Remaining: left / l.Interval, Reset: tat - now}
}
