package systest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

// runCLI runs the sluice binary with args and returns its exit code and output.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(systest.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("running sluice %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestAdminTokenGuardsAdminRoutes(t *testing.T) {
	const token = "s3cret"
	p := systest.StartNode(t, systest.Options{Rules: rulesDoc("r", 5), AdminToken: token})
	p.WaitReady()
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "guess", http.StatusUnauthorized},
		{"right token", token, http.StatusOK},
	} {
		status, body, err := systest.Do(context.Background(), http.MethodGet, p.URL()+"/v1/rules", "", tc.token)
		if err != nil || status != tc.want {
			t.Errorf("GET /v1/rules with %s: %d %s %v, want %d", tc.name, status, body, err, tc.want)
		}
	}
	// Checks are not admin calls.
	if status, _ := checkUser(t, p, "bob"); status != http.StatusOK {
		t.Errorf("check without a token: %d, want 200", status)
	}
}

func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	for path, doc := range map[string]string{
		good: rulesDoc("cli", 2),
		bad:  `{"rules": [{"name": "x", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`,
	} {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if code, out, errOut := runCLI(t, nil, "rules", "validate", "-f", good); code != 0 {
		t.Errorf("rules validate of a good file: exit %d, %s %s", code, out, errOut)
	}
	code, _, errOut := runCLI(t, nil, "rules", "validate", "-f", bad)
	if code != 1 || !strings.Contains(errOut, "rules[0].limit.rate") {
		t.Errorf("rules validate of a bad file: exit %d, stderr %q; want 1 naming rules[0].limit.rate", code, errOut)
	}

	p := systest.StartNode(t, systest.Options{Rules: rulesDoc("cli", 2)})
	p.WaitReady()
	for i, want := range []int{0, 0, 2} {
		code, out, errOut := runCLI(t, nil, "check", "--addr", p.URL(), "user=carol")
		if code != want {
			t.Fatalf("check %d: exit %d, want %d\n%s%s", i+1, code, want, out, errOut)
		}
	}
	// The address also comes from the environment.
	if code, out, errOut := runCLI(t, []string{"SLUICE_ADDR=" + p.URL()}, "check", "user=dave"); code != 0 {
		t.Errorf("check with SLUICE_ADDR: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "check", "--addr", "http://127.0.0.1:1", "user=erin"); code != 1 {
		t.Errorf("check against no node: exit %d, want 1 (%s)", code, errOut)
	}
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	p := systest.StartNode(t, systest.Options{ID: "from-env", Rules: rulesDoc("r", 5), FlagsViaEnv: true})
	p.WaitReady()
	st, err := systest.ClusterStatus(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "from-env" || len(st.Nodes) != 1 || st.Nodes[0].RaftAddr != p.RaftAddr {
		t.Fatalf("node configured by SLUICE_* variables: %+v, want id from-env with raft %s", st, p.RaftAddr)
	}

	// The flag wins over the variable.
	flagged := systest.StartNode(t, systest.Options{ID: "from-flag", Rules: rulesDoc("r", 5),
		Env: []string{"SLUICE_NODE_ID=from-env"}})
	flagged.WaitReady()
	if st, err := systest.ClusterStatus(flagged, ""); err != nil || st.Leader != "from-flag" {
		t.Fatalf("node with --node-id and SLUICE_NODE_ID: %+v %v, want id from-flag", st, err)
	}
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	p := systest.StartNode(t, systest.Options{Rules: rulesDoc("r", 5)})
	p.WaitReady()
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0\n%s", code, p.LogTail(3000))
	}
	// It restarts from its data directory with its rules.
	p.Restart()
	p.WaitReady()
	if err := hasRules(p, 1, "r")(); err != nil {
		t.Fatal(err)
	}
}

// The admin commands against a real three-node cluster with a token, each
// sent to a follower, which forwards writes to the leader.
func TestCLIAdminCommandsAgainstRealNodes(t *testing.T) {
	const token = "cli-admin-token"
	opts := systest.Options{Rules: rulesDoc("boot", 5), AdminToken: token}
	c := systest.StartCluster(t, opts, opts, opts)
	leader := leaderWithToken(t, c, token)
	follower := c.Others(leader)[0]
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, nil, append(args, "--addr", follower.URL(), "--token", token)...)
	}

	code, out, errOut := cli("rules", "get")
	var doc struct {
		Version uint64
		Rules   []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || doc.Version != 1 || len(doc.Rules) != 1 || doc.Rules[0].Name != "boot" {
		t.Fatalf("rules get: exit %d, %+v (%v)\n%s%s", code, doc, err, out, errOut)
	}
	if code, _, errOut := runCLI(t, nil, "rules", "get", "--addr", follower.URL()); code != 1 || !strings.Contains(errOut, "unauthorized") {
		t.Errorf("rules get without the token: exit %d, stderr %q; want 1, unauthorized", code, errOut)
	}

	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(rulesDoc("applied", 3)), 0o644)
	os.WriteFile(bad, []byte(`{"rules": [{"name": "x", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`), 0o644)
	if code, out, errOut := cli("rules", "apply", "-f", good); code != 0 || strings.TrimSpace(out) != "rules applied: version 2" {
		t.Fatalf("rules apply: exit %d, %q %s", code, out, errOut)
	}
	for _, p := range c.Nodes {
		waitFor(t, 10*time.Second, p.ID+" has the applied rules", func() error {
			if doc, err := rulesWithToken(p, token); err != nil || doc.Version != 2 {
				return fmt.Errorf("rules %+v, %v", doc, err)
			}
			return nil
		})
	}
	if code, _, errOut := cli("rules", "apply", "-f", bad); code != 1 || !strings.Contains(errOut, "rules[0].limit.rate") {
		t.Errorf("rules apply of a bad file: exit %d, stderr %q; want 1 naming rules[0].limit.rate", code, errOut)
	}
	if doc, err := rulesWithToken(leader, token); err != nil || doc.Version != 2 {
		t.Errorf("rules after the refused apply: %+v %v, want version 2 still", doc, err)
	}

	code, out, errOut = cli("cluster", "status")
	if code != 0 || !strings.Contains(out, "leader: "+leader.ID) || !strings.Contains(out, "leases:") {
		t.Fatalf("cluster status: exit %d\n%s%s", code, out, errOut)
	}
	roles := statusRoles(out)
	for _, p := range c.Nodes {
		want := "voter healthy"
		if p == leader {
			want = "leader healthy"
		}
		if !strings.Contains(out, p.RaftAddr) || roles[p.ID] != want {
			t.Errorf("cluster status lists %s as %q, want %q at %s:\n%s", p.ID, roles[p.ID], want, p.RaftAddr, out)
		}
	}
	code, out, _ = cli("cluster", "status", "--json")
	var st admin.ClusterStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Leader != leader.ID || st.RulesVersion != 2 || len(st.Nodes) != 3 {
		t.Fatalf("cluster status --json: exit %d, %+v (%v)\n%s", code, st, err, out)
	}

	if code, _, errOut := cli("cluster", "remove", "no-such-node"); code != 1 || !strings.Contains(errOut, "unknown node") {
		t.Errorf("cluster remove of an unknown node: exit %d, stderr %q; want 1, unknown node", code, errOut)
	}
	gone := c.Others(leader)[1]
	if code, out, errOut := cli("cluster", "remove", gone.ID); code != 0 || strings.TrimSpace(out) != "removed "+gone.ID {
		t.Fatalf("cluster remove %s: exit %d, %q %s", gone.ID, code, out, errOut)
	}
	waitFor(t, 10*time.Second, gone.ID+" gone from the cluster", func() error {
		st, err := systest.ClusterStatus(follower, token)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.ID == gone.ID {
				return fmt.Errorf("still listed: %+v", st.Nodes)
			}
		}
		return nil
	})
}

// statusRoles reads the node table of `sluice cluster status`: node id →
// "ROLE HEALTH", e.g. "non-voter unhealthy".
func statusRoles(out string) map[string]string {
	roles := map[string]string{}
	table, _, _ := strings.Cut(out, "\nleases:")
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] != "ID" && !strings.HasSuffix(f[0], ":") {
			roles[f[0]] = f[1] + " " + f[2]
		}
	}
	return roles
}

// rulesWithToken reads GET /v1/rules from p with the admin token.
// leaderWithToken returns c's leader, asking with the admin token.
func leaderWithToken(t *testing.T, c *systest.Cluster, token string) *systest.Proc {
	t.Helper()
	st, err := systest.ClusterStatus(c.Nodes[0], token)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Nodes {
		if p.ID == st.Leader {
			return p
		}
	}
	t.Fatalf("no leader among the nodes: %+v", st)
	return nil
}

func rulesWithToken(p *systest.Proc, token string) (admin.RulesDoc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return p.Client(token).Rules(ctx)
}
