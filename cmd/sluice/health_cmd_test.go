package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
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

// Every StatefulSet pod gets the first pods' addresses in --join; the first
// pod (the seed) must see an empty list and bootstrap, the others every
// address but their own.
func TestJoinTargetsSkipSelf(t *testing.T) {
	const first = "sluice-0.sluice-raft.ns.svc.cluster.local:8000"
	const second = "sluice-1.sluice-raft.ns.svc.cluster.local:8000"
	if got := joinTargets(first, first); len(got) != 0 {
		t.Errorf("first pod joins %v, want nothing", got)
	}
	if got := joinTargets("http://"+first+"/", first); len(got) != 0 {
		t.Errorf("first pod (http:// form) joins %v, want nothing", got)
	}
	if got := joinTargets(first+","+second+",other:8000", first); len(got) != 0 {
		t.Errorf("first pod, listed first of three, joins %v, want nothing", got)
	}
	got := joinTargets(first+", "+second+", other:8000", second)
	if len(got) != 2 || got[0] != first || got[1] != "other:8000" {
		t.Errorf("second pod joins %v, want [%s other:8000]", got, first)
	}
	got = joinTargets(second+","+first, first)
	if len(got) != 1 || got[0] != second {
		t.Errorf("a node listed after the seed joins %v, want [%s]", got, second)
	}
}
