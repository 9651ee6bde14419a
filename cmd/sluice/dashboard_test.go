package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// metricName finds metric names in PromQL: identifiers of the families a
// node exports (label names and functions never start with these prefixes).
var metricName = regexp.MustCompile(`\b(?:sluice|go|process)_[a-z0-9_]+\b`)

// exposedAs maps a queried name to the family that exports it: a
// histogram's _bucket, _sum and _count series belong to the histogram.
func exposedAs(families map[string]*dto.MetricFamily, name string) (string, bool) {
	if families[name] != nil {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if ok && families[base].GetType() == dto.MetricType_HISTOGRAM {
			return base, true
		}
	}
	return "", false
}

// Every metric the Grafana dashboard queries is one a live node really
// exports, and the dashboard covers what an operator needs (SPEC §9).
func TestDashboardQueriesRealMetrics(t *testing.T) {
	var dash struct {
		UID        string           `json:"uid"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readRepoFile(t, "deploy/grafana/dashboards/sluice.json"), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(dash.Templating.List) == 0 || dash.Templating.List[0].Type != "datasource" || dash.Templating.List[0].Query != "prometheus" {
		t.Fatalf("the dashboard does not let the user pick its Prometheus datasource")
	}
	dsVar := "${" + dash.Templating.List[0].Name + "}"

	families := scrape(t, startGlobalNode(t).url)
	queried := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q does not use the %s datasource", p.Title, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, target := range p.Targets {
				names := metricName.FindAllString(target.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q: no metric in %q", p.Title, target.Expr)
				}
				for _, name := range names {
					family, ok := exposedAs(families, name)
					if !ok {
						t.Errorf("panel %q queries %s, which the node does not export", p.Title, name)
					}
					queried[family] = true
				}
			}
		}
	}
	walk(dash.Panels)
	for _, need := range []string{
		"sluice_decisions_total", "sluice_http_requests_total", "sluice_decision_duration_seconds",
		"sluice_redis_request_duration_seconds", "sluice_redis_requests_total", "sluice_fallback_active",
		"sluice_raft_is_leader", "sluice_raft_peers", "sluice_raft_voters", "sluice_lease_share", "sluice_lease_withheld",
	} {
		if !queried[need] {
			t.Errorf("the dashboard never shows %s", need)
		}
	}
}
