package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/cmd/sluice/loadgen"
)

// decisionCounts reads the node's per-ip allowed and denied totals.
func decisionCounts(t *testing.T, url string) (allowed, denied float64) {
	families := scrape(t, url)
	return counterSum(families, "sluice_decisions_total", map[string]string{"rule": "per-ip", "result": "allowed"}),
		counterSum(families, "sluice_decisions_total", map[string]string{"rule": "per-ip", "result": "denied"})
}

// `sluice bench` against a live node: the table, the JSON and the chart are
// written, the limit held, and the bench's counts are exactly what the
// node's own metrics counted over the run.
func TestBenchAgreesWithNodeMetrics(t *testing.T) {
	n := startGlobalNode(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		// One hot key at 3x its rate: after the burst, a third is admitted.
		{"single checks open loop", []string{"--rate", "300", "--keys", "1"}},
		{"batches closed loop", []string{"--batch", "20", "--concurrency", "2", "--keys", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowedBefore, deniedBefore := decisionCounts(t, n.url)
			out := filepath.Join(t.TempDir(), "run")
			args := append([]string{"bench", "--target", n.url, "--duration", "2s", "--out", out}, tc.args...)
			code, stdout, stderr := runCLI(func(o, e *bytes.Buffer) int { return run(args, o, e) })
			if code != 0 {
				t.Fatalf("bench exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			for _, want := range []string{"sent", "allowed", "p99.9", "per-ip", "limit held: yes"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("bench table lacks %q:\n%s", want, stdout)
				}
			}
			if !strings.Contains(stderr, "sent ") {
				t.Errorf("no progress line on stderr: %q", stderr)
			}

			var rep loadgen.Report
			data, err := os.ReadFile(out + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &rep); err != nil {
				t.Fatal(err)
			}
			allowedAfter, deniedAfter := decisionCounts(t, n.url)
			if rep.Errors != 0 || rep.Sent == 0 || rep.Sent != rep.Allowed+rep.Denied {
				t.Fatalf("report counts: sent %d allowed %d denied %d errors %d", rep.Sent, rep.Allowed, rep.Denied, rep.Errors)
			}
			if got := allowedAfter - allowedBefore; float64(rep.Allowed) != got {
				t.Errorf("bench says %d allowed, node counted %v", rep.Allowed, got)
			}
			if got := deniedAfter - deniedBefore; float64(rep.Denied) != got {
				t.Errorf("bench says %d denied, node counted %v", rep.Denied, got)
			}
			if rep.Modes[check.ModeGlobal] != rep.Sent {
				t.Errorf("decisions by mode %v; want all %d global (the node has Redis)", rep.Modes, rep.Sent)
			}
			if rep.Denied == 0 {
				t.Errorf("the run never hit the limit (allowed %d): the comparison proves nothing", rep.Allowed)
			}
			if rep.LimitHeld == nil || !*rep.LimitHeld || len(rep.Rules) != 1 || rep.Rules[0].Limit == nil {
				t.Errorf("limit verdict missing or broken: held=%v rules=%+v", rep.LimitHeld, rep.Rules)
			}
			page, err := os.ReadFile(out + ".html")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(page), "<svg") || !strings.Contains(string(page), "Limit held") {
				t.Errorf("chart page lacks the chart or the verdict")
			}
		})
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--batch", "1001"},
		{"--keys", "0"},
		{"--attr", "noequals"},
		{"--attr", "ip=1.2.3.4"}, // the key attribute cannot also be fixed
		{"--concurrency", "0"},
	} {
		code, _, stderr := runCLI(func(o, e *bytes.Buffer) int { return run(append([]string{"bench"}, args...), o, e) })
		if code != 2 || stderr == "" {
			t.Errorf("bench %v: exit %d, stderr %q; want 2 with a message", args, code, stderr)
		}
	}
}
