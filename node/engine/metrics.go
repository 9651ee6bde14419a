package engine

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/check"
)

// Metrics are the decision-path metrics (SPEC §9). Per-rule counters
// are resolved once per rules version, so the hot path only does atomic adds.
//
// sluice_decisions_total shows only series that can occur on this node:
// each rule's own results (allowed plus denied, or shadow_denied for a
// shadow rule) in the modes the engine can decide in (local and lease
// without Redis, global and fallback with it) start at zero; any other combination
// appears on its first decision. A rule's series go when the rule does, so
// the label set stays bounded by the rules document.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  prometheus.Histogram
}

// NewMetrics registers the decision metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
	return m
}

var modes = [...]check.Mode{check.ModeLocal, check.ModeLease, check.ModeGlobal, check.ModeFallback}

// The result label's values, by result index.
const (
	resultAllowed = iota
	resultDenied
	resultShadowDenied
	numResults
)

var resultNames = [numResults]string{"allowed", "denied", "shadow_denied"}

// ruleCounters holds one rule's counters by result and mode index, each
// created on first use (see Metrics). Nil without metrics.
type ruleCounters struct {
	vec    *prometheus.CounterVec
	rule   string
	series [numResults][len(modes)]atomic.Pointer[prometheus.Counter]
}

func modeIndex(m check.Mode) int {
	for i, x := range modes {
		if x == m {
			return i
		}
	}
	return 0
}

// countersFor returns rule's counters with the series it can produce in
// the given modes already at zero.
func (m *Metrics) countersFor(rule string, shadow bool, possible []check.Mode) *ruleCounters {
	if m == nil {
		return nil
	}
	rc := &ruleCounters{vec: m.decisions, rule: rule}
	results := []int{resultAllowed}
	switch {
	case rule == "":
	case shadow:
		results = append(results, resultShadowDenied)
	default:
		results = append(results, resultDenied)
	}
	for _, mode := range possible {
		for _, res := range results {
			rc.counter(res, modeIndex(mode))
		}
	}
	return rc
}

// forget drops the series of rule, which left the rules.
func (m *Metrics) forget(rule string) {
	if m != nil {
		m.decisions.DeletePartialMatch(prometheus.Labels{"rule": rule})
	}
}

// counter returns the series for result and mode, creating it on first use.
func (rc *ruleCounters) counter(result, mode int) prometheus.Counter {
	slot := &rc.series[result][mode]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := rc.vec.WithLabelValues(rc.rule, resultNames[result], string(modes[mode]))
	slot.Store(&c)
	return c
}

// value is the sum of rc's series: decisions made under the rule.
func (rc *ruleCounters) value() float64 {
	total := 0.0
	for r := range rc.series {
		for m := range rc.series[r] {
			if c := rc.series[r][m].Load(); c != nil {
				total += counterValue(*c)
			}
		}
	}
	return total
}

// latencySampleMask samples 1 in 8 decisions for the latency histogram:
// reading the clock a second time costs more than the rest of a fast-path
// decision's bookkeeping, and a sample describes the distribution as well.
const latencySampleMask = 7

// observe counts one decision: one increment per applicable rule (or one for
// "no rule"), plus, sampled, its latency since start by clock.
func (m *Metrics) observe(rs *ruleSet, applicable []int, d *check.Decision, clock func() int64, start int64) {
	if m == nil {
		return
	}
	m.count(rs, applicable, d, nil)
	if rand.Uint32()&latencySampleMask == 0 {
		m.duration.Observe(time.Duration(clock() - start).Seconds())
	}
}

// count adds one decision to its counters, through t when not nil.
func (m *Metrics) count(rs *ruleSet, applicable []int, d *check.Decision, t *counterTally) {
	mi := modeIndex(d.Mode)
	if len(applicable) == 0 {
		t.inc(rs.noRule.counter(resultAllowed, mi))
	}
	for n, i := range applicable {
		rc := rs.counters[i]
		res := &d.Results[n]
		switch {
		case res.Allowed:
			t.inc(rc.counter(resultAllowed, mi))
		case res.Shadow:
			t.inc(rc.counter(resultShadowDenied, mi))
		default:
			t.inc(rc.counter(resultDenied, mi))
		}
	}
}

// batchMetrics counts the decisions of one batch: each counter is added to
// once per batch instead of once per decision (an atomic add on a cache
// line every core shares), and the batch contributes one latency sample,
// its mean time per decision. Call done when the batch is decided. It
// also gathers the batch's top-keys records (hits), recorded at the end.
type batchMetrics struct {
	m     *Metrics
	tally counterTally
	n     int
	hits  *hitBatch
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
