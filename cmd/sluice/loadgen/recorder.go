package loadgen

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicehq/sluice/api/check"
)

// Latencies are recorded in microseconds, from 1 µs to a minute; slower
// calls are recorded as a minute.
const (
	minLatencyMicros = 1
	maxLatencyMicros = int64(time.Minute / time.Microsecond)
)

// Counts are checks by outcome. A failed call counts every check it carried
// as an error.
type Counts struct {
	Sent    int64 `json:"sent"`
	Allowed int64 `json:"allowed"`
	Denied  int64 `json:"denied"`
	Errors  int64 `json:"errors"`
}

func (c *Counts) add(o Counts) {
	c.Sent += o.Sent
	c.Allowed += o.Allowed
	c.Denied += o.Denied
	c.Errors += o.Errors
}

// second is what completed during one second of the run.
type second struct {
	Counts
	latency *hdrhistogram.Histogram
}

// bucket is one (rule, key) token bucket as the node names it.
type bucket struct{ rule, key string }

// ruleTally counts the checks one enforced rule took part in.
type ruleTally struct {
	checks, denied int64
}

// maxDistinctErrors bounds how many different error messages are kept.
const maxDistinctErrors = 10

// recorder accumulates every call of a run. One mutex guards it all: a call
// costs tens of microseconds of HTTP, so a short critical section per call
// never becomes the bottleneck.
type recorder struct {
	start time.Time

	mu       sync.Mutex
	calls    int64
	total    Counts
	latency  *hdrhistogram.Histogram
	sched    *hdrhistogram.Histogram // open loop: release minus ideal time
	seconds  []*second
	admitted map[bucket]int64
	rules    map[string]*ruleTally
	modes    map[check.Mode]int64
	errs     map[string]int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{
		start:    start,
		latency:  hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3),
		sched:    hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3),
		admitted: map[bucket]int64{},
		rules:    map[string]*ruleTally{},
		modes:    map[check.Mode]int64{},
		errs:     map[string]int64{},
	}
}

// record files one call of n checks, due at dueAt (its latency counts from
// then) and answered at doneAt.
func (r *recorder) record(dueAt, doneAt time.Time, n int, decisions []check.Decision, err error) {
	micros := min(max(doneAt.Sub(dueAt).Microseconds(), minLatencyMicros), maxLatencyMicros)
	var c Counts
	c.Sent = int64(n)
	if err != nil {
		c.Errors = int64(n)
	}
	for i := range decisions {
		if decisions[i].Allowed {
			c.Allowed++
		} else {
			c.Denied++
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.total.add(c)
	_ = r.latency.RecordValue(micros)
	sec := r.secondAt(doneAt)
	sec.add(c)
	_ = sec.latency.RecordValue(micros)
	if err != nil {
		r.countError(err.Error())
	}
	for i := range decisions {
		r.modes[decisions[i].Mode]++
		r.tallyRules(&decisions[i])
	}
}

// lag files how late the open-loop scheduler released one call.
func (r *recorder) lag(d time.Duration) {
	micros := min(max(d.Microseconds(), minLatencyMicros), maxLatencyMicros)
	r.mu.Lock()
	_ = r.sched.RecordValue(micros)
	r.mu.Unlock()
}

func (r *recorder) secondAt(t time.Time) *second {
	i := max(int(t.Sub(r.start)/time.Second), 0)
	for len(r.seconds) <= i {
		// Two significant digits keep a long run's per-second histograms small.
		r.seconds = append(r.seconds, &second{latency: hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 2)})
	}
	return r.seconds[i]
}

func (r *recorder) countError(msg string) {
	if _, ok := r.errs[msg]; !ok && len(r.errs) >= maxDistinctErrors {
		msg = "(other errors)"
	}
	r.errs[msg]++
}

// tallyRules counts, for every enforced rule of d, the check and — when the
// whole decision admitted it — one token taken from its bucket. Shadow rules
// never deny, so they are left out of the limit comparison.
func (r *recorder) tallyRules(d *check.Decision) {
	for i := range d.Results {
		res := &d.Results[i]
		if res.Shadow {
			continue
		}
		t := r.rules[res.Rule]
		if t == nil {
			t = &ruleTally{}
			r.rules[res.Rule] = t
		}
		t.checks++
		if !res.Allowed {
			t.denied++
		}
		if d.Allowed {
			r.admitted[bucket{res.Rule, res.Key}]++
		}
	}
}

// Progress is a live view of a run.
type Progress struct {
	Elapsed time.Duration
	Total   Counts
	// Last is the last completed second; LastP99 its 99th percentile latency.
	Last    Counts
	LastP99 time.Duration
}

// progress returns the totals so far and the last whole second before now.
func (r *recorder) progress(now time.Time) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Progress{Elapsed: now.Sub(r.start), Total: r.total}
	if i := int(now.Sub(r.start)/time.Second) - 1; i >= 0 && i < len(r.seconds) {
		p.Last = r.seconds[i].Counts
		p.LastP99 = time.Duration(r.seconds[i].latency.ValueAtQuantile(99)) * time.Microsecond
	}
	return p
}
