package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestHealthCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	health := func(args ...string) int {
		code, _, _ := runCLI(func(o, e *bytes.Buffer) int { return run(append([]string{"health"}, args...), o, e) })
		return code
	}
	if code := health("--addr", srv.URL); code != 0 {
		t.Errorf("healthy node: exit %d, want 0", code)
	}
	if code := health("--addr", srv.URL, "--ready"); code != 1 {
		t.Errorf("unready node with --ready: exit %d, want 1", code)
	}
	// Inside the image no --addr is given: the port comes from serve's own
	// SLUICE_HTTP_ADDR, with an unspecified host meaning this host.
	t.Setenv("SLUICE_HTTP_ADDR", ":"+port)
	if code := health(); code != 0 {
		t.Errorf("health via SLUICE_HTTP_ADDR=:%s: exit %d, want 0", port, code)
	}
	srv.Close()
	if code := health("--addr", srv.URL); code != 1 {
		t.Errorf("no node listening: exit %d, want 1", code)
	}
}

func TestLocalHTTPAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":               "127.0.0.1:8000",
		":9000":          "127.0.0.1:9000",
		"0.0.0.0:8001":   "127.0.0.1:8001",
		"[::]:8002":      "127.0.0.1:8002",
		"10.1.2.3:8003":  "10.1.2.3:8003",
		"localhost:8004": "localhost:8004",
	} {
		if got := localHTTPAddr(in); got != want {
			t.Errorf("localHTTPAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every StatefulSet pod gets the first pods' addresses in --join; each
// joins through every address but its own, and the first pod is the seed
// (it bootstraps unless another listed node already belongs to a cluster).
func TestJoinTargetsSkipSelf(t *testing.T) {
	const first = "sluice-0.sluice-raft.ns.svc.cluster.local:8000"
	const second = "sluice-1.sluice-raft.ns.svc.cluster.local:8000"
	for _, tc := range []struct {
		join, self string
		want       []string
		seed       bool
	}{
		{first, first, nil, true},
		{"http://" + first + "/", first, nil, true},
		{first + "," + second + ",other:8000", first, []string{second, "other:8000"}, true},
		{first + ", " + second + ", other:8000", second, []string{first, "other:8000"}, false},
		{second + "," + first, first, []string{second}, false},
	} {
		got, seed := joinTargets(tc.join, tc.self)
		if !slices.Equal(got, tc.want) || seed != tc.seed {
			t.Errorf("joinTargets(%q, %q) = %v, seed %v; want %v, seed %v", tc.join, tc.self, got, seed, tc.want, tc.seed)
		}
	}
}
