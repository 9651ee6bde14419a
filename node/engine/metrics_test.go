package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/api/check"
)

// A batch adds to its counters once at the end, through a tally that holds
// only a few counters at a time; the totals must be exactly those of the
// same decisions made one by one. Twelve rules with different bursts and
// a shadow rule make more distinct counters than the tally holds.
func TestBatchCountsLikeSingleDecisions(t *testing.T) {
	var rs []string
	for i := range 12 {
		rs = append(rs, fmt.Sprintf(`{"name":"r%d","key":["ip"],"limit":{"rate":1,"per":"1h","burst":%d}}`, i, 3+i))
	}
	rs = append(rs, `{"name":"shadow","key":["ip"],"limit":{"rate":1,"per":"1h","burst":2},"shadow":true}`)
	doc := `{"rules":[` + strings.Join(rs, ",") + `]}`
	reqs := make([]check.Request, 40)
	for i := range reqs {
		reqs[i] = check.Request{Attributes: attrs("ip", fmt.Sprintf("10.0.0.%d", i%3))}
	}
	newEngine := func() (*Engine, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		e := New(WithMetrics(NewMetrics(reg)))
		e.SetRules(1, mustRules(t, doc))
		return e, reg
	}
	one, oneReg := newEngine()
	for i := range reqs {
		if _, err := one.Decide(context.Background(), reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	batch, batchReg := newEngine()
	if err := batch.DecideBatch(context.Background(), reqs, make([]check.Decision, len(reqs))); err != nil {
		t.Fatal(err)
	}
	want, got := counterValues(t, oneReg), counterValues(t, batchReg)
	if len(want) <= len(counterTally{}.pending) {
		t.Fatalf("only %d counters moved; the test needs more than the tally holds", len(want))
	}
	for labels, v := range want {
		if got[labels] != v {
			t.Errorf("%s = %v after the batch, %v after single decisions", labels, got[labels], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the batch moved %d counters, single decisions %d", len(got), len(want))
	}
	if n := histogramCount(t, batchReg, "sluice_decision_duration_seconds"); n != 1 {
		t.Errorf("the batch added %d latency samples, want 1 (its mean per decision)", n)
	}
}

// counterValues returns every non-zero sluice_decisions_total by its labels.
func counterValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "sluice_decisions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				out[labelString(m)] = v
			}
		}
	}
	return out
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// A node shows sluice_decisions_total series only for what can happen on
// it: a local engine's rules in mode local, allowed plus denied (or
// shadow_denied for a shadow rule); other combinations appear when they
// occur, and a rule's series go with the rule.
func TestDecisionSeriesAreOnlyThoseThatCanOccur(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := New(WithMetrics(NewMetrics(reg)))
	t.Cleanup(func() { e.Close(context.Background()) })
	e.SetRules(1, mustRules(t, `{"rules":[
		{"name":"strict","key":["ip"],"limit":{"rate":1,"per":"1h","burst":1}},
		{"name":"watch","key":["ip"],"limit":{"rate":1,"per":"1h","burst":1},"shadow":true}]}`))
	want := []string{
		"mode=local,result=allowed,rule=",
		"mode=local,result=allowed,rule=strict",
		"mode=local,result=denied,rule=strict",
		"mode=local,result=allowed,rule=watch",
		"mode=local,result=shadow_denied,rule=watch",
	}
	assertSeries(t, reg, want)

	for range 2 {
		if _, err := e.Decide(context.Background(), check.Request{Attributes: attrs("ip", "10.0.0.1")}); err != nil {
			t.Fatal(err)
		}
	}
	assertSeries(t, reg, want)
	if got := counterValues(t, reg); got["mode=local,result=denied,rule=strict"] != 1 || got["mode=local,result=shadow_denied,rule=watch"] != 1 {
		t.Errorf("after two decisions: %v", got)
	}

	e.SetRules(2, mustRules(t, `{"rules":[{"name":"watch","key":["ip"],"limit":{"rate":1,"per":"1h","burst":1},"shadow":true}]}`))
	assertSeries(t, reg, []string{
		"mode=local,result=allowed,rule=",
		"mode=local,result=allowed,rule=watch",
		"mode=local,result=shadow_denied,rule=watch",
	})
	if got := counterValues(t, reg); got["mode=local,result=shadow_denied,rule=watch"] != 1 {
		t.Errorf("a rule that stays keeps its count: %v", got)
	}
}

// assertSeries fails unless reg's sluice_decisions_total has exactly the
// series want (labels as labelString writes them).
func assertSeries(t *testing.T, reg *prometheus.Registry, want []string) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		if f.GetName() == "sluice_decisions_total" {
			for _, m := range f.GetMetric() {
				got = append(got, labelString(m))
			}
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("sluice_decisions_total series:\n got %v\nwant %v", got, want)
	}
}
