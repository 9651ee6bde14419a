package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// Report is the outcome of a run: what the final table prints and --out
// writes as JSON. Latencies are in milliseconds, rates per second.
type Report struct {
	Targets     []string `json:"targets"`
	Loop        string   `json:"loop"` // "open" or "closed"
	Rate        float64  `json:"rate_calls_per_s,omitempty"`
	Concurrency int      `json:"concurrency"`
	Keys        int      `json:"keys"`
	KeyAttr     string   `json:"key_attr"`
	Batch       int      `json:"batch"`
	DurationS   float64  `json:"duration_s"`
	ElapsedS    float64  `json:"elapsed_s"`
	Calls       int64    `json:"calls"`
	Counts
	ThroughputPerS float64 `json:"throughput_per_s"`
	AllowedPerS    float64 `json:"allowed_per_s"`
	LatencyMs      Latency `json:"latency_ms"`
	// ScheduleLagMs is, in open loop, how late calls were released against
	// their ideal schedule (timer granularity, a starved generator); it is
	// not part of LatencyMs, which counts from the release.
	ScheduleLagMs *Latency `json:"schedule_lag_ms,omitempty"`
	// Modes counts decisions by where their tokens came from (SPEC §4):
	// "fallback" under load means Redis answered slower than --redis-timeout.
	Modes map[check.Mode]int64 `json:"modes"`
	Rules []RuleReport         `json:"rules"`
	// LimitHeld is whether every compared rule stayed inside its envelope;
	// null when no rule could be compared (rules unknown, or quotas only).
	LimitHeld *bool    `json:"limit_held"`
	Series    []Second `json:"series"`
	// Failures lists the error messages of failed calls, most frequent first.
	Failures []ErrorCount `json:"failures,omitempty"`
}

// Latency summarises call latencies in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(micros int64) float64 { return float64(micros) / 1000 }
	return Latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
	}
}

// Second is what completed during second T of the run.
type Second struct {
	T int `json:"t_s"`
	Counts
	LatencyMs Latency `json:"latency_ms"`
}

// RuleReport compares what one enforced rule admitted with its limit.
type RuleReport struct {
	Rule string `json:"rule"`
	// Buckets is how many distinct keys of the rule the run touched.
	Buckets  int   `json:"buckets"`
	Checks   int64 `json:"checks"`
	Denied   int64 `json:"denied"`
	Admitted int64 `json:"admitted"`
	// MaxBucketAdmitted is the most any one bucket admitted.
	MaxBucketAdmitted int64      `json:"max_bucket_admitted"`
	AdmittedPerS      float64    `json:"admitted_per_s"`
	Limit             *RuleLimit `json:"limit,omitempty"`
	// Note says why Limit is missing.
	Note string `json:"note,omitempty"`
}

// RuleLimit is a token-bucket rule's configuration and the verdict.
type RuleLimit struct {
	Rate  int64  `json:"rate"`
	Per   string `json:"per"`
	Burst int64  `json:"burst"`
	// LimitPerS is the rule's rate per second times the buckets touched.
	LimitPerS float64 `json:"limit_per_s"`
	// EnvelopePerBucket is burst + rate·elapsed: the most SPEC §4 lets one
	// bucket admit during the run.
	EnvelopePerBucket float64 `json:"envelope_per_bucket"`
	Held              bool    `json:"held"`
}

// ErrorCount is one error message and how many calls failed with it.
type ErrorCount struct {
	Error string `json:"error"`
	Calls int64  `json:"calls"`
}

// report builds the Report of a run that took elapsed.
func (r *recorder) report(cfg Config, elapsed time.Duration) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := elapsed.Seconds()
	rep := &Report{
		Targets: cfg.Targets, Loop: "closed", Rate: cfg.Rate, Concurrency: cfg.Concurrency,
		Keys: cfg.Keys, KeyAttr: cfg.KeyAttr, Batch: cfg.Batch,
		DurationS: cfg.Duration.Seconds(), ElapsedS: secs,
		Calls: r.calls, Counts: r.total,
		ThroughputPerS: float64(r.total.Sent) / secs,
		AllowedPerS:    float64(r.total.Allowed) / secs,
		LatencyMs:      latencyOf(r.latency),
		Modes:          maps.Clone(r.modes),
		Rules:          []RuleReport{},
		Series:         make([]Second, len(r.seconds)),
	}
	if cfg.Rate > 0 {
		rep.Loop = "open"
		lag := latencyOf(r.sched)
		rep.ScheduleLagMs = &lag
	}
	for i, s := range r.seconds {
		rep.Series[i] = Second{T: i, Counts: s.Counts, LatencyMs: latencyOf(s.latency)}
	}
	for msg, n := range r.errs {
		rep.Failures = append(rep.Failures, ErrorCount{Error: msg, Calls: n})
	}
	slices.SortFunc(rep.Failures, func(a, b ErrorCount) int { return cmp.Compare(b.Calls, a.Calls) })
	r.reportRules(rep, cfg.Rules, elapsed)
	return rep
}

// reportRules fills rep.Rules and rep.LimitHeld.
func (r *recorder) reportRules(rep *Report, set *rules.Set, elapsed time.Duration) {
	byRule := map[string]*RuleReport{}
	for name, t := range r.rules {
		byRule[name] = &RuleReport{Rule: name, Checks: t.checks, Denied: t.denied}
	}
	for b, n := range r.admitted {
		rr := byRule[b.rule]
		rr.Buckets++
		rr.Admitted += n
		rr.MaxBucketAdmitted = max(rr.MaxBucketAdmitted, n)
	}
	for _, rr := range byRule {
		rr.AdmittedPerS = float64(rr.Admitted) / elapsed.Seconds()
		compareWithLimit(rr, set, elapsed)
		if rr.Limit != nil {
			held := rr.Limit.Held && (rep.LimitHeld == nil || *rep.LimitHeld)
			rep.LimitHeld = &held
		}
		rep.Rules = append(rep.Rules, *rr)
	}
	slices.SortFunc(rep.Rules, func(a, b RuleReport) int { return strings.Compare(a.Rule, b.Rule) })
}

// compareWithLimit fills rr.Limit from the rule's configuration, or rr.Note
// saying why it cannot.
func compareWithLimit(rr *RuleReport, set *rules.Set, elapsed time.Duration) {
	if set == nil {
		rr.Note = "rules unknown (the admin API refused; pass --token)"
		return
	}
	i := slices.IndexFunc(set.Rules, func(x rules.Rule) bool { return x.Name == rr.Rule })
	switch {
	case i < 0:
		rr.Note = "not in the rules read before the run"
		return
	case set.Rules[i].Limit == nil:
		rr.Note = "quota rule: not compared"
		return
	}
	lim := set.Rules[i].Limit
	per := time.Duration(lim.Per)
	burst := cmp.Or(lim.Burst, lim.Rate)
	perSecond := float64(lim.Rate) / per.Seconds()
	envelope := float64(burst) + float64(lim.Rate)*elapsed.Seconds()/per.Seconds()
	rr.Limit = &RuleLimit{
		Rate: lim.Rate, Per: per.String(), Burst: burst,
		LimitPerS:         perSecond * float64(rr.Buckets),
		EnvelopePerBucket: envelope,
		Held:              float64(rr.MaxBucketAdmitted) <= envelope,
	}
}

// chartRule is the rule the chart draws the limit of: the compared rule
// that denied most (the one actually limiting the run).
func (rep *Report) chartRule() *RuleReport {
	var best *RuleReport
	for i := range rep.Rules {
		rr := &rep.Rules[i]
		if rr.Limit != nil && (best == nil || rr.Denied > best.Denied) {
			best = rr
		}
	}
	return best
}

// WriteTable prints the report for a terminal.
func (rep *Report) WriteTable(w io.Writer) {
	calls := "single checks"
	if rep.Batch > 1 {
		calls = fmt.Sprintf("batches of %d", rep.Batch)
	}
	load := fmt.Sprintf("closed loop, %d callers", rep.Concurrency)
	if rep.Loop == "open" {
		load = fmt.Sprintf("open loop at %g calls/s (at most %d in flight)", rep.Rate, rep.Concurrency)
	}
	fmt.Fprintf(w, "\nsluice bench: %s, %s, %d key(s) of %q, %.1fs against %s\n\n",
		load, calls, rep.Keys, rep.KeyAttr, rep.ElapsedS, strings.Join(rep.Targets, ", "))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sent\tallowed\tdenied\terrors\tthroughput/s\tallowed/s\t")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.1f\t\n", rep.Sent, rep.Allowed, rep.Denied, rep.Errors, rep.ThroughputPerS, rep.AllowedPerS)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency ms\tp50\tp90\tp99\tp99.9\tmax\t")
	l := rep.LatencyMs
	fmt.Fprintf(tw, "per call\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	if s := rep.ScheduleLagMs; s != nil {
		fmt.Fprintf(tw, "schedule lag (not in latency)\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	tw.Flush()

	fmt.Fprint(w, "\ndecisions by mode:")
	for _, m := range slices.Sorted(maps.Keys(rep.Modes)) {
		fmt.Fprintf(w, " %s %d", m, rep.Modes[m])
	}
	fmt.Fprintln(w)
	if len(rep.Rules) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "rule\tbuckets\tadmitted\tadmitted/s\tlimit/s\tmax per bucket\tallowed per bucket\theld")
		for _, rr := range rep.Rules {
			if rr.Limit == nil {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t-\t%d\t-\t%s\n", rr.Rule, rr.Buckets, rr.Admitted, rr.AdmittedPerS, rr.MaxBucketAdmitted, rr.Note)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%d\t%.0f (burst %d + %d/%s)\t%s\n", rr.Rule, rr.Buckets, rr.Admitted,
				rr.AdmittedPerS, rr.Limit.LimitPerS, rr.MaxBucketAdmitted, rr.Limit.EnvelopePerBucket,
				rr.Limit.Burst, rr.Limit.Rate, rr.Limit.Per, yesNo(rr.Limit.Held))
		}
		tw.Flush()
	}
	for _, e := range rep.Failures {
		fmt.Fprintf(w, "error (%d calls): %s\n", e.Calls, e.Error)
	}
	switch {
	case rep.LimitHeld == nil:
		fmt.Fprintln(w, "\nlimit held: unknown (no token-bucket rule could be compared)")
	case *rep.LimitHeld:
		fmt.Fprintln(w, "\nlimit held: yes — no bucket admitted more than burst + rate·elapsed")
	default:
		fmt.Fprintln(w, "\nlimit held: NO — a bucket admitted more than burst + rate·elapsed")
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
