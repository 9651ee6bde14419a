package main

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/lua/redistest"
)

// slowBoxRedisTimeout keeps a node on a loaded CI machine (and under -race)
// from mistaking a slow Redis for a dead one and falling back.
const slowBoxRedisTimeout = "2s"

// startGlobalNode runs a live node against a real redis-server and sends it a
// few checks, so every counter family has at least one series.
func startGlobalNode(t *testing.T) *liveNode {
	t.Helper()
	rdb := redistest.StartServer(t)
	n := startLiveNode(t, "--redis", rdb.Addr(), "--redis-timeout", slowBoxRedisTimeout)
	c := client.New(n.url)
	for range 3 {
		req := check.Request{Attributes: check.Attrs{{Name: "route", Value: "/api/x"}, {Name: "ip", Value: "192.0.2.1"}}}
		if _, err := c.Decide(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if code := httpStatus(n.url + "/ping"); code != http.StatusOK {
		t.Fatalf("GET /ping: %d", code)
	}
	return n
}

// The SPEC §9 metrics, plus the Go, process and build-info collectors,
// pass Prometheus's own linter.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install prometheus (Debian's package ships promtool; .ci/run installs it)")
	}
	n := startGlobalNode(t)
	body := scrapeText(t, n.url)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}

	families := scrape(t, n.url)
	for _, name := range []string{
		"sluice_decisions_total", "sluice_decision_duration_seconds",
		"sluice_redis_requests_total", "sluice_redis_request_duration_seconds",
		"sluice_fallback_active", "sluice_slice_refills_total",
		"sluice_raft_is_leader", "sluice_raft_peers", "sluice_raft_is_voter", "sluice_raft_voters", "sluice_rules_applied_total",
		"sluice_lease_share", "sluice_lease_withheld", "sluice_http_requests_total", "sluice_http_request_duration_seconds",
		"go_goroutines", "process_resident_memory_bytes", "go_build_info",
	} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v := families["sluice_raft_is_leader"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("sluice_raft_is_leader = %v on a single bootstrapped node, want 1", v)
	}
	for _, name := range []string{"sluice_raft_peers", "sluice_raft_is_voter", "sluice_raft_voters"} {
		if v := families[name].GetMetric()[0].GetGauge().GetValue(); v != 1 {
			t.Errorf("%s = %v on a single bootstrapped node, want 1", name, v)
		}
	}
}

// Labels stay low-cardinality: HTTP metrics carry route templates, never
// raw paths, and no label anywhere carries a request's key.
func TestMetricLabelsAreBounded(t *testing.T) {
	n := startGlobalNode(t)
	for _, p := range []string{"/no/such/path/1", "/no/such/path/2"} {
		httpStatus(n.url + p)
	}
	text := string(scrapeText(t, n.url))
	for _, raw := range []string{"/no/such/path", "192.0.2.1", "127.0.0.1"} {
		if strings.Contains(text, raw) {
			t.Errorf("/metrics contains the raw value %q", raw)
		}
	}
	families := scrape(t, n.url)
	if got := counterSum(families, "sluice_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}); got != 2 {
		t.Errorf(`sluice_http_requests_total{route="unmatched",code="404"} = %v, want 2`, got)
	}
}

// sluice_decisions_total has no series a node cannot produce: a node
// without Redis shows modes local and lease (it decides in lease mode while
// the cluster has other members), a node with Redis global and
// fallback only; the shadow rule (tenant) shows shadow_denied, never
// denied, and the others the reverse. With the four sample rules plus
// "no rule" that is 1+4·2 series per mode.
func TestDecisionSeriesMatchTheNode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(*testing.T) *liveNode
		modes []string
	}{
		{"local", func(t *testing.T) *liveNode { return startLiveNode(t) }, []string{"local", "lease"}},
		{"redis", startGlobalNode, []string{"global", "fallback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.start(t)
			fam := scrape(t, n.url)["sluice_decisions_total"]
			if fam == nil {
				t.Fatal("/metrics lacks sluice_decisions_total")
			}
			if got, want := len(fam.GetMetric()), len(tc.modes)*(1+4*2); got != want {
				t.Errorf("%d sluice_decisions_total series, want %d", got, want)
			}
			for _, m := range fam.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if !slices.Contains(tc.modes, labels["mode"]) {
					t.Errorf("series %v: mode cannot occur on this node (modes %v)", labels, tc.modes)
				}
				shadowRule := labels["rule"] == "tenant"
				if (labels["result"] == "shadow_denied" && !shadowRule) || (labels["result"] == "denied" && shadowRule) {
					t.Errorf("series %v cannot occur for this rule", labels)
				}
			}
		})
	}
}
