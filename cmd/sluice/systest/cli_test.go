package systest_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
