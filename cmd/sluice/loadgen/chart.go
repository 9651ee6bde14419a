package loadgen

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page (inline SVG and CSS, no scripts,
// nothing fetched) with the verdict, the totals, admitted per second against
// the limit, and latency percentiles per second.
func (rep *Report) WriteHTML(w io.Writer) error {
	return pageTemplate.Execute(w, pageData{
		Report:  rep,
		Verdict: rep.verdict(),
		Rates:   template.HTML(rep.rateChart()),
		Latency: template.HTML(rep.latencyChart()),
	})
}

type pageData struct {
	*Report
	Verdict verdict
	Rates   template.HTML
	Latency template.HTML
}

type verdict struct{ Class, Text string }

func (rep *Report) verdict() verdict {
	switch {
	case rep.LimitHeld == nil:
		return verdict{"unknown", "Limit not compared: no token-bucket rule known"}
	case *rep.LimitHeld:
		return verdict{"held", "Limit held: no bucket admitted more than burst + rate·elapsed"}
	default:
		return verdict{"broken", "Limit EXCEEDED: a bucket admitted more than burst + rate·elapsed"}
	}
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice bench</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
.verdict{padding:.8em 1em;font-size:1.2em;font-weight:bold;border-radius:6px;display:inline-block}
.held{background:#e3f6e5;color:#17612a}.broken{background:#fde4e4;color:#a11}.unknown{background:#eee;color:#555}
svg text{font:12px system-ui,sans-serif}
</style></head><body>
<h1>sluice bench</h1>
<p>{{.Loop}} loop{{if .Rate}} at {{.Rate}} calls/s{{end}}, concurrency {{.Concurrency}}, {{.Keys}} key(s) of <code>{{.KeyAttr}}</code>,
batch {{.Batch}}, {{printf "%.1f" .ElapsedS}} s against {{range $i, $t := .Targets}}{{if $i}}, {{end}}<code>{{$t}}</code>{{end}}</p>
<div class="verdict {{.Verdict.Class}}">{{.Verdict.Text}}</div>
<table><tr><th>sent</th><th>allowed</th><th>denied</th><th>errors</th><th>throughput/s</th><th>allowed/s</th>
<th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th></tr>
<tr><td>{{.Sent}}</td><td>{{.Allowed}}</td><td>{{.Denied}}</td><td>{{.Errors}}</td>
<td>{{printf "%.1f" .ThroughputPerS}}</td><td>{{printf "%.1f" .AllowedPerS}}</td>
<td>{{printf "%.3f" .LatencyMs.P50}}</td><td>{{printf "%.3f" .LatencyMs.P90}}</td><td>{{printf "%.3f" .LatencyMs.P99}}</td><td>{{printf "%.3f" .LatencyMs.P999}}</td></tr></table>
<p>decisions by mode:{{range $mode, $n := .Modes}} {{$mode}} {{$n}}{{end}}</p>
{{if .Rules}}<table><tr><th>rule</th><th>buckets</th><th>admitted</th><th>admitted/s</th><th>limit/s</th><th>max per bucket</th><th>allowed per bucket</th><th>held</th></tr>
{{range .Rules}}<tr><td>{{.Rule}}</td><td>{{.Buckets}}</td><td>{{.Admitted}}</td><td>{{printf "%.1f" .AdmittedPerS}}</td>
{{if .Limit}}<td>{{printf "%.1f" .Limit.LimitPerS}}</td><td>{{.MaxBucketAdmitted}}</td><td>{{printf "%.0f" .Limit.EnvelopePerBucket}} (burst {{.Limit.Burst}} + {{.Limit.Rate}}/{{.Limit.Per}})</td><td>{{if .Limit.Held}}yes{{else}}NO{{end}}</td>
{{else}}<td>-</td><td>{{.MaxBucketAdmitted}}</td><td>-</td><td>{{.Note}}</td>{{end}}</tr>
{{end}}</table>{{end}}
<h2>Checks per second</h2>
{{.Rates}}
<h2>Latency per second</h2>
{{.Latency}}
{{range .Failures}}<p>error ({{.Calls}} calls): <code>{{.Error}}</code></p>{{end}}
</body></html>
`))

// line is one series of a chart: a value per second, NaN where unknown.
type line struct {
	name, color string
	dashed      bool
	values      []float64
}

// perSecond returns each whole-enough second's rate of a count: the final
// second usually covers only part of a second, so it is divided by what it
// covers, and dropped when that is too little to mean anything.
func (rep *Report) perSecond(count func(Counts) int64) []float64 {
	out := make([]float64, len(rep.Series))
	for i, s := range rep.Series {
		covered := min(1, rep.ElapsedS-float64(s.T))
		if covered < 0.5 {
			out[i] = math.NaN()
			continue
		}
		out[i] = float64(count(s.Counts)) / covered
	}
	return out
}

func (rep *Report) rateChart() string {
	lines := []line{
		{name: "sent/s", color: "#999", values: rep.perSecond(func(c Counts) int64 { return c.Sent })},
		{name: "denied/s", color: "#e07070", values: rep.perSecond(func(c Counts) int64 { return c.Denied })},
		{name: "admitted/s", color: "#1a8a3a", values: rep.perSecond(func(c Counts) int64 { return c.Allowed })},
	}
	if rr := rep.chartRule(); rr != nil {
		limit := make([]float64, len(rep.Series))
		for i := range limit {
			limit[i] = rr.Limit.LimitPerS
		}
		lines = append(lines, line{name: fmt.Sprintf("limit/s (%s)", rr.Rule), color: "#1f3a93", dashed: true, values: limit})
	}
	return svgChart("checks/s", lines)
}

func (rep *Report) latencyChart() string {
	pick := func(f func(Latency) float64) []float64 {
		out := make([]float64, len(rep.Series))
		for i, s := range rep.Series {
			out[i] = f(s.LatencyMs)
		}
		return out
	}
	return svgChart("ms", []line{
		{name: "p50", color: "#1a8a3a", values: pick(func(l Latency) float64 { return l.P50 })},
		{name: "p90", color: "#d4a017", values: pick(func(l Latency) float64 { return l.P90 })},
		{name: "p99", color: "#e07020", values: pick(func(l Latency) float64 { return l.P99 })},
		{name: "p99.9", color: "#b01010", values: pick(func(l Latency) float64 { return l.P999 })},
	})
}

// Chart geometry in SVG user units.
const (
	chartW, chartH           = 900, 300
	padLeft, padRight        = 70, 170
	padTop, padBottom        = 10, 40
	plotW, plotH             = chartW - padLeft - padRight, chartH - padTop - padBottom
	legendX, legendRowHeight = chartW - padRight + 15, 20
)

// svgChart draws lines over seconds 0..n-1 with a y axis from 0.
func svgChart(unit string, lines []line) string {
	n := 0
	top := 0.0
	for _, l := range lines {
		n = max(n, len(l.values))
		for _, v := range l.values {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
	}
	step := niceStep(top)
	top = math.Max(step, math.Ceil(top/step)*step)
	x := func(t float64) float64 { return padLeft + t*plotW/math.Max(float64(n-1), 1) }
	y := func(v float64) float64 { return padTop + plotH - v*plotH/top }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, chartW, chartH, chartW, chartH)
	for v := 0.0; v <= top*1.0001; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padLeft, padLeft+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padLeft-6, y(v)+4, html.EscapeString(formatTick(v)))
	}
	for t := 0; t < n; t += max(1, n/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`, x(float64(t)), chartH-padBottom+18, t)
	}
	fmt.Fprintf(&b, `<text x="12" y="%d" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>`, padTop+plotH/2, padTop+plotH/2, html.EscapeString(unit))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`, padLeft, padTop, plotW, plotH)
	for i, l := range lines {
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`, l.color, dash, points(l.values, x, y))
		ly := padTop + 10 + i*legendRowHeight
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, legendX, legendX+20, ly, ly, l.color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, legendX+26, ly+4, html.EscapeString(l.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func points(values []float64, x, y func(float64) float64) string {
	var b strings.Builder
	for t, v := range values {
		if math.IsNaN(v) {
			continue
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x(float64(t)), y(v))
	}
	return strings.TrimSpace(b.String())
}

// niceStep is a 1, 2 or 5 times a power of ten giving about five grid lines
// up to top.
func niceStep(top float64) float64 {
	if top <= 0 {
		return 1
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func formatTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}
