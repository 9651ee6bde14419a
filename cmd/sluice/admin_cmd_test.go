package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

// fakeCluster answers the admin routes the CLI calls, checking the token.
type fakeCluster struct {
	token   string
	removed []string
	applied []string
	setErr  error
}

func (f *fakeCluster) start(t *testing.T) string {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(func(c *gin.Context) {
		if f.token != "" && c.GetHeader("Authorization") != "Bearer "+f.token {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "unauthorized: missing or wrong admin token"})
		}
	})
	r.GET("/v1/cluster", func(c *gin.Context) {
		c.JSON(200, admin.ClusterStatus{Leader: "n1", Term: 7, Nodes: []admin.NodeStatus{
			{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", Voter: true, State: "leader", Healthy: true},
			{ID: "n2", RaftAddr: "127.0.0.1:7002", Voter: true, State: "follower"},
			{ID: "n3", RaftAddr: "127.0.0.1:7003", HTTPAddr: "127.0.0.1:8003", State: "follower", Healthy: true},
		}})
	})
	r.GET("/v1/leases", func(c *gin.Context) {
		c.JSON(200, admin.Leases{"per-ip": {"n1": {Share: 0.7833, ExpiresInMs: 8400}, "n2": {Share: 0.05, Withheld: true}}})
	})
	r.DELETE("/v1/cluster/nodes/:id", func(c *gin.Context) {
		if c.Param("id") == "ghost" {
			c.JSON(404, gin.H{"error": "unknown node: ghost"})
			return
		}
		f.removed = append(f.removed, c.Param("id"))
		c.JSON(200, gin.H{})
	})
	r.GET("/v1/rules", func(c *gin.Context) {
		c.JSON(200, admin.RulesDoc{Version: 3, Rules: json.RawMessage(`[{"name":"per-ip"}]`)})
	})
	r.PUT("/v1/rules", func(c *gin.Context) {
		body, _ := c.GetRawData()
		var ve *rules.ValidationError
		if errors.As(f.setErr, &ve) {
			c.JSON(400, gin.H{"error": f.setErr.Error(), "field": ve.Errors[0].Path, "fields": []gin.H{
				{"field": ve.Errors[0].Path, "error": ve.Errors[0].Msg},
				{"field": ve.Errors[1].Path, "error": ve.Errors[1].Msg},
			}})
			return
		}
		f.applied = append(f.applied, string(body))
		c.JSON(200, gin.H{"version": 4})
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

func runCLI(fn func(stdout, stderr *bytes.Buffer) int) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := fn(&stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestClusterStatusCommand(t *testing.T) {
	f := &fakeCluster{token: "t0k"}
	addr := f.start(t)
	code, out, errOut := runCLI(func(o, e *bytes.Buffer) int {
		return runCluster([]string{"status", "--addr", addr, "--token", "t0k"}, o, e)
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"leader: n1", "term:   7",
		"n1  leader     healthy    127.0.0.1:7001  127.0.0.1:8001",
		"n2  voter      unhealthy  127.0.0.1:7002  (none)",
		"n3  non-voter  healthy    127.0.0.1:7003  127.0.0.1:8003",
		"per-ip  n1    0.783  8.4s", "per-ip  n2    0.050  (floor only)  withheld"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(func(o, e *bytes.Buffer) int {
		return runCluster([]string{"status", "--json", "--addr", addr, "--token", "t0k"}, o, e)
	})
	var st admin.ClusterStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 3 {
		t.Fatalf("status --json: exit %d, %q", code, out)
	}
}

func TestAdminCommandsReadEnvironment(t *testing.T) {
	f := &fakeCluster{token: "from-env"}
	addr := f.start(t)
	t.Setenv("SLUICE_ADDR", addr)
	t.Setenv("SLUICE_ADMIN_TOKEN", "from-env")
	if code, _, errOut := runCLI(func(o, e *bytes.Buffer) int { return runCluster([]string{"remove", "n3"}, o, e) }); code != 0 {
		t.Fatalf("remove with env config: exit %d: %s", code, errOut)
	}
	if len(f.removed) != 1 || f.removed[0] != "n3" {
		t.Fatalf("removed = %v", f.removed)
	}
	// The flag wins over the environment.
	code, _, errOut := runCLI(func(o, e *bytes.Buffer) int {
		return runCluster([]string{"remove", "n4", "--token", "wrong"}, o, e)
	})
	if code != 1 || !strings.Contains(errOut, "unauthorized") {
		t.Fatalf("wrong --token: exit %d, %q", code, errOut)
	}
}

func TestClusterRemoveErrors(t *testing.T) {
	f := &fakeCluster{}
	addr := f.start(t)
	code, _, errOut := runCLI(func(o, e *bytes.Buffer) int {
		return runCluster([]string{"remove", "ghost", "--addr", addr}, o, e)
	})
	if code != 1 || !strings.Contains(errOut, "unknown node: ghost") {
		t.Fatalf("remove ghost: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{{}, {"remove"}, {"remove", "a", "b"}, {"frobnicate"}, {"status", "extra"}} {
		if code, _, _ := runCLI(func(o, e *bytes.Buffer) int { return runCluster(args, o, e) }); code != 2 {
			t.Errorf("cluster %v: exit %d, want 2", args, code)
		}
	}
}

func TestRulesGetAndApply(t *testing.T) {
	f := &fakeCluster{}
	addr := f.start(t)
	code, out, errOut := runCLI(func(o, e *bytes.Buffer) int { return runRulesRemote("get", []string{"--addr", addr}, o, e) })
	var doc admin.RulesDoc
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Version != 3 {
		t.Fatalf("rules get: exit %d, %q %q", code, out, errOut)
	}

	file := filepath.Join(t.TempDir(), "rules.json")
	content := `{"rules":[]}`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(func(o, e *bytes.Buffer) int {
		return runRulesRemote("apply", []string{"-f", file, "--addr", addr}, o, e)
	})
	if code != 0 || !strings.Contains(out, "version 4") || len(f.applied) != 1 || f.applied[0] != content {
		t.Fatalf("rules apply: exit %d, %q %q, node saw %v", code, out, errOut, f.applied)
	}

	f.setErr = fmt.Errorf("%w: %w", admin.ErrInvalid, &rules.ValidationError{Errors: []rules.FieldError{
		{Path: "rules[0].limit.rate", Msg: "must be > 0"}, {Path: "rules[1].name", Msg: "duplicate name"},
	}})
	code, _, errOut = runCLI(func(o, e *bytes.Buffer) int {
		return runRulesRemote("apply", []string{"-f", file, "--addr", addr}, o, e)
	})
	if code != 1 || !strings.Contains(errOut, "rules[0].limit.rate: must be > 0") || !strings.Contains(errOut, "rules[1].name: duplicate name") {
		t.Fatalf("invalid apply: exit %d, %q", code, errOut)
	}

	for _, tc := range []struct {
		sub  string
		args []string
	}{{"apply", nil}, {"get", []string{"x"}}, {"bogus", nil}} {
		if code, _, _ := runCLI(func(o, e *bytes.Buffer) int { return runRulesRemote(tc.sub, tc.args, o, e) }); code != 2 {
			t.Errorf("rules %s %v: exit %d, want 2", tc.sub, tc.args, code)
		}
	}
	if code, _, _ := runCLI(func(o, e *bytes.Buffer) int {
		return runRulesRemote("apply", []string{"-f", file + ".missing", "--addr", addr}, o, e)
	}); code != 1 {
		t.Errorf("apply of a missing file: exit %d, want 1", code)
	}
}
