// Package accuracy checks a rate limiter from the outside, the way SPEC §4
// states its promises: tests record every admitted request with harness
// timestamps, then ask whether any window admitted more than burst + rate·Δ
// (safety) and how much of that allowance was used (utilisation). It is
// shared by the engine's tests and the system tests that drive real nodes.
package accuracy

import (
	"sync"
	"time"
)

// Admit is one admitted request as the harness saw it. The admission itself
// happened at some unknown instant between Sent and Done, both read from the
// harness clock: Sent just before the request was made, Done just after its
// answer arrived.
type Admit struct {
	Key  string
	Cost int64
	Sent time.Duration // harness clock, before the request
	Done time.Duration // harness clock, after the answer
}

// Recorder collects admits from many goroutines. Its clock is the monotonic
// time since NewRecorder.
type Recorder struct {
	start  time.Time
	mu     sync.Mutex
	admits []Admit
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now reads the harness clock: take it right before sending a request and
// right after its answer.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Record adds an admit of cost on key, requested at sent and answered at
// done (both from Now).
func (r *Recorder) Record(key string, cost int64, sent, done time.Duration) {
	r.mu.Lock()
	r.admits = append(r.admits, Admit{Key: key, Cost: cost, Sent: sent, Done: done})
	r.mu.Unlock()
}

// Admits returns a copy of every admit recorded so far.
func (r *Recorder) Admits() []Admit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Admit(nil), r.admits...)
}

// ByKey returns the admits recorded so far grouped by key: the safety
// promise holds per (rule, key) bucket.
func (r *Recorder) ByKey() map[string][]Admit {
	r.mu.Lock()
	defer r.mu.Unlock()
	byKey := make(map[string][]Admit)
	for _, a := range r.admits {
		byKey[a.Key] = append(byKey[a.Key], a)
	}
	return byKey
}
