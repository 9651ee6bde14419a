package node

import (
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/check"
)

// EngineMetrics are the decision-path metrics (SPEC §9). Per-rule counters
// are resolved once per rules version, so the hot path only does atomic adds.
type EngineMetrics struct {
	decisions *prometheus.CounterVec
	duration  prometheus.Histogram
	noRule    ruleCounters
}

// NewEngineMetrics registers the decision metrics with reg.
func NewEngineMetrics(reg prometheus.Registerer) *EngineMetrics {
	m := &EngineMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Name: "decisions_total",
			Help: "Decisions per rule, result (allowed, denied, shadow_denied) and mode; rule is empty for requests no rule applies to.",
		}, []string{"rule", "result", "mode"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sluice", Name: "decision_duration_seconds",
			Help:    "Time to decide one request inside the engine (a random 1-in-8 sample of decisions).",
			Buckets: []float64{1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2},
		}),
	}
	reg.MustRegister(m.decisions, m.duration)
	m.noRule = m.countersFor("")
	return m
}

var modes = [...]check.Mode{check.ModeLocal, check.ModeGlobal, check.ModeFallback}

// ruleCounters holds one rule's counters by mode index.
type ruleCounters struct {
	allowed, denied, shadowDenied [len(modes)]prometheus.Counter
}

func modeIndex(m check.Mode) int {
	for i, x := range modes {
		if x == m {
			return i
		}
	}
	return 0
}

func (m *EngineMetrics) countersFor(rule string) ruleCounters {
	var rc ruleCounters
	if m == nil {
		return rc
	}
	for i, mode := range modes {
		rc.allowed[i] = m.decisions.WithLabelValues(rule, "allowed", string(mode))
		rc.denied[i] = m.decisions.WithLabelValues(rule, "denied", string(mode))
		rc.shadowDenied[i] = m.decisions.WithLabelValues(rule, "shadow_denied", string(mode))
	}
	return rc
}

// latencySampleMask samples 1 in 8 decisions for the latency histogram:
// reading the clock a second time costs more than the rest of a fast-path
// decision's bookkeeping, and a sample describes the distribution as well.
const latencySampleMask = 7

// observe counts one decision: one increment per applicable rule (or one for
// "no rule"), plus, sampled, its latency since start by clock.
func (m *EngineMetrics) observe(rs *ruleSet, applicable []int, d *check.Decision, clock func() int64, start int64) {
	if m == nil {
		return
	}
	m.count(rs, applicable, d, nil)
	if rand.Uint32()&latencySampleMask == 0 {
		m.duration.Observe(time.Duration(clock() - start).Seconds())
	}
}

// count adds one decision to its counters, through t when not nil.
func (m *EngineMetrics) count(rs *ruleSet, applicable []int, d *check.Decision, t *counterTally) {
	mi := modeIndex(d.Mode)
	if len(applicable) == 0 {
		t.inc(m.noRule.allowed[mi])
	}
	for n, i := range applicable {
		rc := &rs.counters[i]
		res := &d.Results[n]
		switch {
		case res.Allowed:
			t.inc(rc.allowed[mi])
		case res.Shadow:
			t.inc(rc.shadowDenied[mi])
		default:
			t.inc(rc.denied[mi])
		}
	}
}

// batchMetrics counts the decisions of one batch: each counter is added to
// once per batch instead of once per decision (an atomic add on a cache
// line every core shares), and the batch contributes one latency sample,
// its mean time per decision. Call done when the batch is decided.
type batchMetrics struct {
	m     *EngineMetrics
	tally counterTally
	n     int
}

func (b *batchMetrics) observe(rs *ruleSet, applicable []int, d *check.Decision) {
	if b.m == nil {
		return
	}
	b.m.count(rs, applicable, d, &b.tally)
	b.n++
}

func (b *batchMetrics) done(clock func() int64, start int64) {
	if b.m == nil || b.n == 0 {
		return
	}
	b.tally.flush()
	b.m.duration.Observe(time.Duration(clock()-start).Seconds() / float64(b.n))
}

// counterTally holds pending increments for a few counters. A nil tally
// increments at once.
type counterTally struct {
	n       int
	pending [8]struct {
		c prometheus.Counter
		n float64
	}
}

func (t *counterTally) inc(c prometheus.Counter) {
	if t == nil {
		c.Inc()
		return
	}
	for i := range t.n {
		if t.pending[i].c == c {
			t.pending[i].n++
			return
		}
	}
	if t.n == len(t.pending) {
		t.flush()
	}
	t.pending[t.n].c, t.pending[t.n].n = c, 1
	t.n++
}

func (t *counterTally) flush() {
	for i := range t.n {
		t.pending[i].c.Add(t.pending[i].n)
		t.pending[i].c = nil
	}
	t.n = 0
}
