package main

import (
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

const alertsFile = "deploy/prometheus/alerts.yml"

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var doc struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, alertsFile), &doc); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// The shipped alerts are valid (promtool check rules) and behave as their
// unit tests say: each fires on the series it should and not on the near
// misses beside them (promtool test rules, deploy/prometheus/alerts_test.yml).
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install prometheus (.ci/run installs it)")
	}
	dir := filepath.Join(repoRoot, "deploy/prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
	// Every alert has a unit test in which it fires.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/alerts_test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fires[a.Alertname] = fires[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	for _, r := range loadAlertRules(t) {
		if r.Alert != "" && !fires[r.Alert] {
			t.Errorf("alert %s has no unit test in which it fires", r.Alert)
		}
	}
}

// Every metric an alert or recording rule queries is one a live node
// exports, so a renamed metric cannot silence an alert.
func TestAlertsQueryRealMetrics(t *testing.T) {
	families := scrape(t, startGlobalNode(t).url)
	for _, r := range loadAlertRules(t) {
		for _, name := range metricName.FindAllString(r.Expr, -1) {
			if _, ok := exposedAs(families, name); !ok {
				t.Errorf("%s%s queries %s, which the node does not export", r.Alert, r.Record, name)
			}
		}
	}
}

var runbookHeading = regexp.MustCompile(`(?m)^### (Sluice[A-Za-z]+)$`)

// Every alert links to its runbook entry in docs/OPERATIONS.md, and every
// runbook entry belongs to an alert.
func TestAlertsHaveRunbooks(t *testing.T) {
	var headings []string
	for _, m := range runbookHeading.FindAllStringSubmatch(string(readRepoFile(t, "docs/OPERATIONS.md")), -1) {
		headings = append(headings, m[1])
	}
	var alerts []string
	for _, r := range loadAlertRules(t) {
		if r.Alert == "" {
			continue
		}
		alerts = append(alerts, r.Alert)
		if want := "docs/OPERATIONS.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
			t.Errorf("alert %s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
		}
		if !slices.Contains(headings, r.Alert) {
			t.Errorf("docs/OPERATIONS.md has no \"### %s\" runbook entry", r.Alert)
		}
	}
	for _, h := range headings {
		if !slices.Contains(alerts, h) {
			t.Errorf("docs/OPERATIONS.md has a runbook for %s, which is no alert", h)
		}
	}
}

// Both Prometheus configurations load the alerts: compose mounts the file
// where its prometheus.yml looks for it; the Kubernetes job names it too.
func TestDeploymentsLoadAlerts(t *testing.T) {
	ruleFiles := func(rel string) []string {
		var cfg struct {
			RuleFiles []string `yaml:"rule_files"`
		}
		if err := yaml.Unmarshal(readRepoFile(t, rel), &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.RuleFiles
	}
	if got := ruleFiles("deploy/kubernetes/prometheus-scrape.yml"); !slices.Contains(got, "alerts.yml") {
		t.Errorf("Kubernetes Prometheus config loads rule files %v, not alerts.yml", got)
	}

	c := loadCompose(t)
	mounts := map[string]string{}
	for _, v := range c.Services["prometheus"].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[parts[1]] = path.Clean(parts[0])
		}
	}
	configDir := ""
	for target, src := range mounts {
		if src == "deploy/prometheus/prometheus.yml" {
			configDir = path.Dir(target)
		}
	}
	if configDir == "" {
		t.Fatalf("compose prometheus does not mount deploy/prometheus/prometheus.yml: %v", mounts)
	}
	files := ruleFiles("deploy/prometheus/prometheus.yml")
	if len(files) == 0 {
		t.Fatal("deploy/prometheus/prometheus.yml loads no rule files")
	}
	for _, f := range files {
		if src := mounts[path.Join(configDir, f)]; src != alertsFile {
			t.Errorf("compose prometheus reads rule file %s from %q, want %s", f, src, alertsFile)
		}
	}
}
