package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/transport/tlstest"
)

// serveOnce runs serve with args until it returns or wait passes, and
// returns its error (nil if it was still running and stopped cleanly).
func serveOnce(t *testing.T, wait time.Duration, args ...string) error {
	t.Helper()
	fs := newFlagSet("serve", io.Discard, io.Discard)
	var f serveFlags
	f.register(fs)
	base := []string{"--node-id", "n1", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--rules", "../../testdata/rules.json"}
	if err := parseFlags(fs, append(base, args...)); err != nil {
		t.Fatal(err)
	}
	logger, _ := newLogger(io.Discard, "error", "text")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return serve(ctx, f, logger)
}

// TestServeRefusesOpenRaftBeyondLoopback: a raft port other hosts can reach
// with nothing authenticating the cluster is refused, naming the flags.
func TestServeRefusesOpenRaftBeyondLoopback(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	pair := ca.Issue(t, "n1")
	nodeTLS := []string{"--node-cert", pair.CertFile, "--node-key", pair.KeyFile, "--node-ca-cert", ca.CertFile}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"all interfaces", []string{"--raft-addr", "0.0.0.0:0", "--raft-advertise", "127.0.0.1:7000"},
			[]string{"0.0.0.0:0", "--admin-token", "--node-cert", "--insecure"}},
		{"advertised beyond loopback", []string{"--raft-addr", "127.0.0.1:0", "--raft-advertise", "10.0.0.5:7000"},
			[]string{"10.0.0.5:7000", "--admin-token", "--insecure"}},
		{"node TLS but plain HTTP", append([]string{"--raft-addr", "0.0.0.0:0", "--raft-advertise", "127.0.0.1:7000"}, nodeTLS...),
			[]string{"--http-cert", "--admin-token"}},
	} {
		err := serveOnce(t, 5*time.Second, tc.args...)
		if err == nil {
			t.Errorf("%s: serve started", tc.name)
			continue
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", tc.name, err, w)
			}
		}
	}
}

// TestServeBeyondLoopbackWithTokenOrInsecure: the same exposed raft port
// starts with a token, or when the operator insists with --insecure.
func TestServeBeyondLoopbackWithTokenOrInsecure(t *testing.T) {
	exposed := []string{"--raft-addr", "0.0.0.0:0", "--raft-advertise", "127.0.0.1:7000"}
	for _, extra := range [][]string{{"--admin-token", "s3cret"}, {"--insecure"}} {
		n := startLiveNode(t, append(exposed, extra...)...)
		if err := n.stop(); err != nil {
			t.Fatalf("%v: %v", extra, err)
		}
	}
}

func TestServeRejectsIncompleteTLSFlags(t *testing.T) {
	ca := tlstest.NewCA(t, "x")
	pair := ca.Issue(t, "n1")
	for _, args := range [][]string{
		{"--http-cert", pair.CertFile},
		{"--http-ca-cert", ca.CertFile},
		{"--node-cert", pair.CertFile, "--node-key", pair.KeyFile},
		{"--http-cert", pair.CertFile, "--http-key", ca.CertFile},
		{"--redis-ca-cert", pair.KeyFile},
	} {
		if err := serveOnce(t, 5*time.Second, append([]string{"--raft-addr", "127.0.0.1:0"}, args...)...); err == nil {
			t.Errorf("%v: serve started", args)
		}
	}
}

// TestTLSFlagsReadTheEnvironment: each new flag also reads SLUICE_<FLAG>.
func TestTLSFlagsReadTheEnvironment(t *testing.T) {
	fs := newFlagSet("serve", io.Discard, io.Discard)
	var f serveFlags
	f.register(fs)
	env := map[string]string{
		"SLUICE_HTTP_CERT": "h.pem", "SLUICE_HTTP_KEY": "h-key.pem", "SLUICE_HTTP_CA_CERT": "hca.pem",
		"SLUICE_NODE_CERT": "n.pem", "SLUICE_NODE_KEY": "n-key.pem", "SLUICE_NODE_CA_CERT": "nca.pem",
		"SLUICE_REDIS_CA_CERT": "r.pem", "SLUICE_INSECURE": "true",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	if err := parseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	want := tlsFlags{httpCert: "h.pem", httpKey: "h-key.pem", httpCA: "hca.pem",
		nodeCert: "n.pem", nodeKey: "n-key.pem", nodeCA: "nca.pem", redisCA: "r.pem"}
	if f.tls != want || !f.insecure {
		t.Fatalf("flags from the environment: %+v insecure=%v", f.tls, f.insecure)
	}
}
