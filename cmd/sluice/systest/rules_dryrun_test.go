package systest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

// tenantHourly limits each tenant to rate per per with burst: slow enough
// that nothing refills noticeably while a test runs.
func tenantHourly(rate int, per string, burst int) string {
	return fmt.Sprintf(`{"rules": [{"name": "tenant", "key": ["tenant"], "limit": {"rate": %d, "per": %q, "burst": %d}}]}`, rate, per, burst)
}

// dryRun asks p what doc would change.
func dryRun(t *testing.T, p *systest.Proc, doc, token string) admin.RulesDryRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := p.Client(token).DryRunRules(ctx, []byte(doc))
	if err != nil {
		t.Fatalf("dry run on %s: %v", p.ID, err)
	}
	return out
}

// A dry run against a node with real traffic counts the keys the new limit
// would throttle at once: of three tenants that asked for 15, 3 and 25
// tokens in the last minute, a limit admitting 10⅓ a minute (burst 10 plus
// a minute of refill) throttles the first and last, 16⅓ the last only,
// 40⅓ none. Nothing is applied.
func TestDryRunCountsKeysAboveTheNewLimit(t *testing.T) {
	p := systest.StartNode(t, systest.Options{Rules: tenantHourly(20, "1h", 20)})
	p.WaitReady()
	for tenant, n := range map[string]int{"heavy": 15, "light": 3, "over": 25} {
		for range n {
			decide(t, p, fmt.Sprintf(`{"attributes": {"tenant": %q}}`, tenant))
		}
	}
	// The summaries count whole seconds: this second's checks count from the next.
	waitFor(t, 10*time.Second, "the checks in the last minute's demand", func() error {
		if th := dryRun(t, p, tenantHourly(10, "30m", 10), "").Throttled["tenant"]; th.ActiveKeys != 3 {
			return fmt.Errorf("estimate %+v", th)
		}
		return nil
	})
	for _, tc := range []struct {
		doc  string
		want int
	}{
		{tenantHourly(10, "30m", 10), 2}, // one token per 3 min, as before
		{tenantHourly(16, "48m", 16), 1}, // only "over" has spent more than 16
		{tenantHourly(40, "2h", 40), 0},
		{tenantHourly(20, "1h", 20), 1}, // the limit in force: "over" is empty
	} {
		got := dryRun(t, p, tc.doc, "")
		th, ok := got.Throttled["tenant"]
		t.Logf("%s: %+v", tc.doc, th)
		if tc.doc == tenantHourly(20, "1h", 20) {
			// Unchanged: no estimate asked for.
			if ok || got.Unchanged != 1 {
				t.Errorf("dry run of the rules in force: %+v", got)
			}
			continue
		}
		if !ok || th.Measure != admin.MeasureDemand || th.ActiveKeys != 3 || th.AtOnce != tc.want {
			t.Errorf("dry run of %s: throttled %+v, want %d of 3 active keys", tc.doc, got.Throttled, tc.want)
		}
	}
	if doc, err := rulesOn(p); err != nil || doc.Version != 1 {
		t.Fatalf("rules after dry runs: version %d (%v), want 1", doc.Version, err)
	}
	if status, d := decide(t, p, `{"attributes": {"tenant": "light"}}`); status != http.StatusOK || d.Remaining != 16 {
		t.Fatalf("light after the dry runs: %d %+v, want its own bucket untouched (16 left)", status, d)
	}
}

// sluice rules diff and rules apply --dry-run against a real three-node
// cluster, sent to a follower and to the leader: each prints the change
// (added, removed, raised, lowered, matcher changed), refuses a bad file as
// apply does, and leaves every node's rules version as it was. A real
// apply is then audited in the leader's log and counted in its metrics.
func TestCLIRulesDryRunAndDiffAgainstRealNodes(t *testing.T) {
	const token = "cli-dry-run-token"
	boot := `{"rules": [
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "login", "match": {"route": "/login"}, "key": ["ip"], "limit": {"rate": 5, "per": "1m"}},
		{"name": "tenant", "key": ["tenant"], "limit": {"rate": 100, "per": "1s"}},
		{"name": "old", "key": ["ip"], "limit": {"rate": 1, "per": "1s"}}]}`
	next := `{"rules": [
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 20, "per": "1s"}},
		{"name": "login", "match": {"route": "/signin"}, "key": ["ip"], "limit": {"rate": 5, "per": "1m"}},
		{"name": "tenant", "key": ["tenant"], "limit": {"rate": 50, "per": "1s"}},
		{"name": "payments", "key": [], "limit": {"rate": 5000, "per": "1s"}}]}`
	opts := systest.Options{Rules: boot, AdminToken: token}
	c := systest.StartCluster(t, opts, opts, opts)
	leader := leaderWithToken(t, c, token)
	dir := t.TempDir()
	nextFile, badFile := filepath.Join(dir, "next.json"), filepath.Join(dir, "bad.json")
	os.WriteFile(nextFile, []byte(next), 0o644)
	os.WriteFile(badFile, []byte(`{"rules": [{"name": "x", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`), 0o644)

	for _, p := range []*systest.Proc{c.Others(leader)[0], leader} {
		cli := func(args ...string) (int, string, string) {
			t.Helper()
			return runCLI(t, nil, append(args, "--addr", p.URL(), "--token", token)...)
		}
		code, out, errOut := cli("rules", "diff", "-f", nextFile)
		for _, want := range []string{
			`(?m)^\+ payments\s+added$`, `(?m)^- old\s+removed$`,
			`(?m)^    limit\.rate\s+10 → 20\s+raised$`, `(?m)^    limit\.rate\s+100 → 50\s+lowered$`,
			`(?m)^~ login\s+changed\n    match\s+\{"route":"/login"\} → \{"route":"/signin"\}\s+changed$`,
			`1 added, 1 removed, 3 changed, 0 unchanged`,
		} {
			if code != 0 || !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("rules diff on %s: exit %d, output lacks %s:\n%s%s", p.ID, code, want, out, errOut)
			}
		}
		if strings.Contains(out, "throttled") {
			t.Errorf("rules diff on %s printed estimates:\n%s", p.ID, out)
		}
		code, out, errOut = cli("rules", "apply", "--dry-run", "-f", nextFile)
		if code != 0 || !regexp.MustCompile(`(?m)^    throttled at once\s+0 of \d+ active keys\s+\(last_minute_demand\)$`).MatchString(out) ||
			!strings.Contains(out, "nothing applied") {
			t.Errorf("rules apply --dry-run on %s: exit %d\n%s%s", p.ID, code, out, errOut)
		}
		code, out, _ = cli("rules", "apply", "--dry-run", "--json", "-f", nextFile)
		var dry admin.RulesDryRun
		if err := json.Unmarshal([]byte(out), &dry); code != 0 || err != nil || !dry.DryRun || dry.Version != 1 || len(dry.Changed) != 3 || len(dry.Throttled) != 3 {
			t.Errorf("rules apply --dry-run --json on %s: exit %d, %+v (%v)\n%s", p.ID, code, dry, err, out)
		}
		for _, sub := range [][]string{{"rules", "diff"}, {"rules", "apply", "--dry-run"}} {
			if code, _, errOut := cli(append(sub, "-f", badFile)...); code != 1 || !strings.Contains(errOut, "rules[0].limit.rate") {
				t.Errorf("%v of a bad file on %s: exit %d, stderr %q; want 1 naming rules[0].limit.rate", sub, p.ID, code, errOut)
			}
		}
	}
	for _, p := range c.Nodes {
		if doc, err := rulesWithToken(p, token); err != nil || doc.Version != 1 {
			t.Fatalf("%s after dry runs and diffs: rules %+v (%v), want version 1", p.ID, doc, err)
		}
	}

	if code, out, errOut := runCLI(t, nil, "rules", "apply", "-f", nextFile, "--addr", c.Others(leader)[0].URL(), "--token", token); code != 0 || strings.TrimSpace(out) != "rules applied: version 2" {
		t.Fatalf("rules apply: exit %d, %q %s", code, out, errOut)
	}
	audit := regexp.MustCompile(`msg="rules applied" .*caller_addr=127\.0\.0\.1:\d+ caller_auth=admin-token caller_via="admin-token 127\.0\.0\.1:\d+" from_version=1 to_version=2 rules=4 added=1 removed=1 changed=3`)
	waitFor(t, 10*time.Second, "the audit line in "+leader.ID+"'s log", func() error {
		if !audit.MatchString(leader.LogTail(1 << 20)) {
			return fmt.Errorf("no line matching %s", audit)
		}
		return nil
	})
	status, metrics, err := systest.Do(context.Background(), http.MethodGet, leader.URL()+"/metrics", "", "")
	if err != nil || status != http.StatusOK || !strings.Contains(metrics, `sluice_rules_applied_total{result="ok"} 1`) {
		t.Errorf(`%s's /metrics lacks sluice_rules_applied_total{result="ok"} 1 (%v)`, leader.ID, err)
	}
}
