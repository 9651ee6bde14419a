package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/api/admin"
)

// auditLog is a slog handler that keeps the attributes of every record
// whose message is "rules applied", in the form fmt prints them.
type auditLog struct {
	mu    sync.Mutex
	lines []map[string]string
}

func (l *auditLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *auditLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *auditLog) WithGroup(string) slog.Handler            { return l }

func (l *auditLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "rules applied" {
		return nil
	}
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = fmt.Sprint(a.Value.Any())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, attrs)
	return nil
}

func (l *auditLog) all() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]string(nil), l.lines...)
}

// A rules change made through a follower is applied and audited by the
// leader: one log line naming the caller, the versions and the counts, and
// sluice_rules_applied_total{result="ok"}; an invalid document is counted
// as rejected where it was refused. Dry runs on either node change nothing.
func TestRulesApplyIsAuditedAndDryRunChangesNothing(t *testing.T) {
	logs := map[string]*auditLog{}
	c := startTunedCluster(t, 3, func(m *member, cfg *Config) {
		logs[m.id] = &auditLog{}
		cfg.Logger = slog.New(logs[m.id])
	})
	leader, follower := c.leader(), c.follower()
	before := leader.node.RulesVersion()

	next := `{"rules":[{"name":"per-ip","key":["ip"],"limit":{"rate":50,"per":"1s"}},{"name":"all","key":[],"limit":{"rate":5,"per":"1s"}}]}`
	for _, m := range []*member{leader, follower} {
		code, body := adminCall(t, m, "PUT", "/v1/rules?dry_run=true", next)
		var dry admin.RulesDryRun
		if err := json.Unmarshal([]byte(body), &dry); code != 200 || err != nil || !dry.DryRun || dry.Version != before ||
			len(dry.Added) != 1 || len(dry.Changed) != 1 || dry.Changed[0].Fields[0].Field != "limit.rate" {
			t.Fatalf("dry run on %s: %d %s", m.id, code, body)
		}
	}
	for _, m := range c.members {
		if v := m.node.RulesVersion(); v != before {
			t.Fatalf("%s: rules version %d after dry runs, want %d unchanged", m.id, v, before)
		}
	}
	if n := metricValue(t, leader.node.rulesApplies.WithLabelValues(applyOK)); n != 0 {
		t.Fatalf("dry runs counted %v applies", n)
	}

	code, body := adminCall(t, follower, "PUT", "/v1/rules", next)
	if code != 200 {
		t.Fatalf("PUT through %s: %d %s", follower.id, code, body)
	}
	c.waitFor("the audit line on the leader", 5*time.Second, func() bool { return len(logs[leader.id].all()) == 1 })
	line := logs[leader.id].all()[0]
	if line["caller_auth"] != admin.AuthToken || !strings.HasPrefix(line["caller_addr"], "127.0.0.1:") ||
		!strings.HasPrefix(line["caller_via"], admin.AuthToken+" 127.0.0.1:") ||
		line["from_version"] != fmt.Sprint(before) || line["to_version"] != fmt.Sprint(before+1) ||
		line["added"] != "1" || line["removed"] != "0" || line["changed"] != "1" || line["rules"] != "2" || line["audit"] != "true" {
		t.Fatalf("audit line %v", line)
	}
	if n := metricValue(t, leader.node.rulesApplies.WithLabelValues(applyOK)); n != 1 {
		t.Fatalf(`leader's sluice_rules_applied_total{result="ok"} = %v, want 1`, n)
	}
	if n := metricValue(t, follower.node.rulesApplies.WithLabelValues(applyOK)); n != 0 {
		t.Fatalf(`follower counted the forwarded apply: ok = %v`, n)
	}
	if len(logs[follower.id].all()) != 0 {
		t.Fatal("the follower logged an apply it only forwarded")
	}

	if code, body := adminCall(t, follower, "PUT", "/v1/rules", `{"rules":[{"name":"x","key":["ip"]}]}`); code != 400 {
		t.Fatalf("invalid PUT: %d %s", code, body)
	}
	if n := metricValue(t, follower.node.rulesApplies.WithLabelValues(applyRejected)); n != 1 {
		t.Fatalf(`follower's sluice_rules_applied_total{result="rejected"} = %v, want 1`, n)
	}
}

// metricValue reads a counter.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var v dto.Metric
	if err := m.Write(&v); err != nil {
		t.Fatal(err)
	}
	return v.GetCounter().GetValue()
}
