package loadgen

import (
	"context"
	"encoding/xml"
	"errors"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// fakeNode admits the first `allow` checks of every key for rule "per-ip"
// and denies the rest, counting what it decided.
type fakeNode struct {
	allow   int64
	delay   time.Duration
	mu      sync.Mutex
	perKey  map[string]int64
	calls   atomic.Int64
	allowed atomic.Int64
	denied  atomic.Int64
}

func (f *fakeNode) check(ctx context.Context, reqs []check.Request) ([]check.Decision, error) {
	f.calls.Add(1)
	time.Sleep(f.delay)
	out := make([]check.Decision, len(reqs))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range reqs {
		key, _ := r.Attributes.Get("ip")
		f.perKey[key]++
		ok := f.perKey[key] <= f.allow
		if ok {
			f.allowed.Add(1)
		} else {
			f.denied.Add(1)
		}
		out[i] = check.Decision{Allowed: ok, Results: []check.Result{
			{Rule: "per-ip", Key: key, Allowed: ok},
			{Rule: "tenant", Key: "acme", Allowed: false, Shadow: true},
		}}
	}
	return out, nil
}

func newFake(allow int64, delay time.Duration) *fakeNode {
	return &fakeNode{allow: allow, delay: delay, perKey: map[string]int64{}}
}

func perIPRules(rate, burst int64, per time.Duration) *rules.Set {
	return &rules.Set{Rules: []rules.Rule{{Name: "per-ip", Key: []string{"ip"},
		Limit: &rules.Limit{Rate: rate, Per: rules.Duration(per), Burst: burst}}}}
}

func baseConfig(f *fakeNode) Config {
	return Config{
		Targets: []string{"fake"}, Checkers: []Checker{f.check},
		Concurrency: 4, Duration: 300 * time.Millisecond, Keys: 3, KeyAttr: "ip", Batch: 1,
		Attrs: check.Attrs{{Name: "route", Value: "/api/x"}},
	}
}

func TestClosedLoopCountsEveryCheck(t *testing.T) {
	f := newFake(5, 0)
	cfg := baseConfig(f)
	cfg.Batch = 4
	cfg.Rules = perIPRules(1, 5, time.Hour)
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ScheduleLagMs != nil {
		t.Errorf("closed loop reports a schedule lag %+v; it has no schedule", rep.ScheduleLagMs)
	}
	if rep.Calls != f.calls.Load() || rep.Sent != 4*rep.Calls {
		t.Fatalf("report: %d calls, %d sent; node saw %d calls", rep.Calls, rep.Sent, f.calls.Load())
	}
	if rep.Allowed != f.allowed.Load() || rep.Denied != f.denied.Load() || rep.Errors != 0 {
		t.Fatalf("report allowed %d denied %d; node allowed %d denied %d", rep.Allowed, rep.Denied, f.allowed.Load(), f.denied.Load())
	}
	if len(rep.Rules) != 1 {
		t.Fatalf("rules %+v; want per-ip only (shadow rules are not compared)", rep.Rules)
	}
	rr := rep.Rules[0]
	if rr.Buckets != 3 || rr.Admitted != 15 || rr.MaxBucketAdmitted != 5 {
		t.Errorf("per-ip: %d buckets, %d admitted, max %d; want 3, 15, 5", rr.Buckets, rr.Admitted, rr.MaxBucketAdmitted)
	}
	if rr.Limit == nil || !rr.Limit.Held || rep.LimitHeld == nil || !*rep.LimitHeld {
		t.Errorf("5 per key against burst 5 must hold: %+v, held %v", rr.Limit, rep.LimitHeld)
	}
	if rep.Modes[""] != rep.Allowed+rep.Denied {
		t.Errorf("modes %v; want every decision counted once", rep.Modes)
	}
	var seriesSent int64
	for _, s := range rep.Series {
		seriesSent += s.Sent
	}
	if seriesSent != rep.Sent {
		t.Errorf("per-second series adds up to %d, total is %d", seriesSent, rep.Sent)
	}
}

// A node that admits more than burst + rate·elapsed for a key is caught.
func TestReportCatchesABrokenLimit(t *testing.T) {
	f := newFake(50, 0)
	cfg := baseConfig(f)
	cfg.Rules = perIPRules(1, 10, time.Hour)
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rules[0].MaxBucketAdmitted <= 10 {
		t.Fatalf("the fake admitted only %d per key; the test proves nothing", rep.Rules[0].MaxBucketAdmitted)
	}
	if rep.LimitHeld == nil || *rep.LimitHeld || rep.Rules[0].Limit.Held {
		t.Errorf("a bucket admitted %d against an envelope of %.1f, yet the limit is reported held",
			rep.Rules[0].MaxBucketAdmitted, rep.Rules[0].Limit.EnvelopePerBucket)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "limit held: NO") {
		t.Errorf("table does not say the limit broke:\n%s", table.String())
	}
}

// Open loop keeps to the schedule, and when the node is slower than the
// schedule, latency counts from when each call was due, not when a caller
// got round to it.
func TestOpenLoopMeasuresFromTheSchedule(t *testing.T) {
	f := newFake(1<<40, 20*time.Millisecond)
	cfg := baseConfig(f)
	cfg.Rate, cfg.Concurrency, cfg.Duration = 100, 1, 300*time.Millisecond
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 100/s for 0.3s is 30 calls due, at 0, 10, ..., 290ms.
	if rep.Calls != 30 {
		t.Fatalf("%d calls; want the 30 the schedule made due", rep.Calls)
	}
	// One caller at 20ms a call needs ~0.6s for them: the last waited ~0.3s.
	if rep.LatencyMs.Max < 200 || rep.LatencyMs.P50 < 60 {
		t.Errorf("latency p50 %.1fms max %.1fms: queueing behind the schedule is not counted", rep.LatencyMs.P50, rep.LatencyMs.Max)
	}
	// The scheduler itself released every call on time (to its ~1ms tick):
	// the lag it reports apart is not the queueing above.
	if rep.ScheduleLagMs == nil || rep.ScheduleLagMs.Max > 100 {
		t.Errorf("schedule lag %+v; want it reported, and far below the queueing", rep.ScheduleLagMs)
	}
}

func TestFailedCallsAreErrors(t *testing.T) {
	cfg := baseConfig(nil)
	cfg.Checkers = []Checker{func(context.Context, []check.Request) ([]check.Decision, error) {
		return nil, errors.New("connection refused")
	}}
	cfg.Duration = 50 * time.Millisecond
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent == 0 || rep.Errors != rep.Sent || rep.Allowed+rep.Denied != 0 {
		t.Fatalf("sent %d errors %d allowed %d denied %d", rep.Sent, rep.Errors, rep.Allowed, rep.Denied)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].Error != "connection refused" || rep.Failures[0].Calls != rep.Calls {
		t.Errorf("failures %+v", rep.Failures)
	}
	if rep.LimitHeld != nil {
		t.Errorf("nothing was compared, yet limit_held = %v", *rep.LimitHeld)
	}
}

// Calls go round-robin over the targets, keys round-robin over the checks.
func TestCallsSpreadOverTargetsAndKeys(t *testing.T) {
	a, b := newFake(1<<40, 0), newFake(1<<40, 0)
	cfg := baseConfig(a)
	cfg.Targets, cfg.Checkers = []string{"a", "b"}, []Checker{a.check, b.check}
	cfg.Concurrency, cfg.Keys, cfg.Batch = 1, 4, 4
	if _, err := Run(context.Background(), cfg, nil); err != nil {
		t.Fatal(err)
	}
	if d := a.calls.Load() - b.calls.Load(); d < 0 || d > 1 {
		t.Errorf("calls %d to a, %d to b; want an even split", a.calls.Load(), b.calls.Load())
	}
	if len(a.perKey) != 4 {
		t.Errorf("keys seen %v; want 4 distinct", a.perKey)
	}
	for k, n := range a.perKey {
		if n != a.calls.Load() {
			t.Errorf("key %s sent %d times in %d batches; each batch carries every key once", k, n, a.calls.Load())
		}
	}
}

func TestProgressIsReported(t *testing.T) {
	cfg := baseConfig(newFake(1<<40, time.Millisecond))
	cfg.Duration = 1200 * time.Millisecond
	var got []Progress
	if _, err := Run(context.Background(), cfg, func(p Progress) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].Total.Sent == 0 || got[0].Last.Sent == 0 {
		t.Fatalf("progress %+v; want a report after the first second with its counts", got)
	}
}

func TestConfigValidate(t *testing.T) {
	f := newFake(1, 0)
	for name, mutate := range map[string]func(*Config){
		"no checkers":       func(c *Config) { c.Checkers = nil },
		"negative rate":     func(c *Config) { c.Rate = -1 },
		"no concurrency":    func(c *Config) { c.Concurrency = 0 },
		"no duration":       func(c *Config) { c.Duration = 0 },
		"no keys":           func(c *Config) { c.Keys = 0 },
		"too many keys":     func(c *Config) { c.Keys = maxKeys + 1 },
		"batch too big":     func(c *Config) { c.Batch = 1001 },
		"key attr is fixed": func(c *Config) { c.Attrs = append(c.Attrs, check.Attr{Name: "ip", Value: "x"}) },
	} {
		cfg := baseConfig(f)
		mutate(&cfg)
		if cfg.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := baseConfig(f)
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

func TestKeyValues(t *testing.T) {
	if got := keyValue("ip", 0); got != "10.0.0.1" {
		t.Errorf("keyValue(ip, 0) = %q", got)
	}
	if got := keyValue("ip", maxKeys-1); got != "10.255.255.254" {
		t.Errorf("keyValue(ip, max) = %q", got)
	}
	if got := keyValue("tenant", 7); got != "key-7" {
		t.Errorf("keyValue(tenant, 7) = %q", got)
	}
}

var svgBlock = regexp.MustCompile(`(?s)<svg.*?</svg>`)

// The chart page is self-contained and its charts are well-formed SVG with
// one point per second of the run and the limit line.
func TestHTMLChart(t *testing.T) {
	f := newFake(5, 0)
	cfg := baseConfig(f)
	cfg.Rules = perIPRules(1, 5, time.Hour)
	cfg.Duration = 2100 * time.Millisecond
	cfg.Concurrency = 1
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, banned := range []string{"<script", "<link", "src=", "@import"} {
		if strings.Contains(html, banned) {
			t.Errorf("page contains %q: it must not load anything", banned)
		}
	}
	if !strings.Contains(html, "Limit held") || !strings.Contains(html, "limit/s (per-ip)") {
		t.Errorf("page lacks the verdict or the limit line")
	}
	svgs := svgBlock.FindAllString(html, -1)
	if len(svgs) != 2 {
		t.Fatalf("%d charts; want rates and latency", len(svgs))
	}
	for _, svg := range svgs {
		var doc struct {
			Polylines []struct {
				Points string `xml:"points,attr"`
			} `xml:"polyline"`
		}
		if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
			t.Fatalf("chart is not well-formed SVG: %v", err)
		}
		for _, pl := range doc.Polylines {
			if n := len(strings.Fields(pl.Points)); n < 2 || n > len(rep.Series) {
				t.Errorf("a line has %d points for %d seconds", n, len(rep.Series))
			}
		}
	}
}

func TestNiceStep(t *testing.T) {
	for top, want := range map[float64]float64{0: 1, 4: 1, 9: 2, 23: 5, 1000: 200, 0.03: 0.01} {
		if got := niceStep(top); got < want*0.999 || got > want*1.001 {
			t.Errorf("niceStep(%v) = %v, want %v", top, got, want)
		}
	}
}
