package systest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/transport"
	"github.com/sluicehq/sluice/transport/tlstest"
)

// tlsNode is one node's certificates: its node certificate (raft and
// node-to-node calls) and its HTTPS certificate.
type tlsNode struct {
	node, http tlstest.Pair
}

func (n tlsNode) args(nodeCA, clientCA *tlstest.CA) []string {
	return []string{
		"--node-cert", n.node.CertFile, "--node-key", n.node.KeyFile, "--node-ca-cert", nodeCA.CertFile,
		"--http-cert", n.http.CertFile, "--http-key", n.http.KeyFile, "--http-ca-cert", clientCA.CertFile,
	}
}

// TestTwoNodeClusterOverMutualTLS runs two real processes with raft and
// the HTTP API on mutual TLS and no admin token: every HTTP client must
// present a certificate (--http-ca-cert), so the follower's forwarded rules
// write reaches the leader only because it presents its node certificate.
// Then it rotates certificates on a running node: new connections see the
// new ones after SIGHUP while the cluster stays up.
func TestTwoNodeClusterOverMutualTLS(t *testing.T) {
	nodeCA := tlstest.NewCA(t, "nodes")
	clientCA := tlstest.NewCA(t, "clients")
	operator := clientCA.Issue(t, "operator")
	systest.UseTLS(t, nodeCA.CertFile, operator.CertFile, operator.KeyFile)
	certs := []tlsNode{
		{nodeCA.Issue(t, "n1-node"), nodeCA.Issue(t, "n1-http")},
		{nodeCA.Issue(t, "n2-node"), nodeCA.Issue(t, "n2-http")},
	}
	n1 := systest.StartNode(t, systest.Options{ID: "n1", HTTPS: true, Rules: rulesDoc("bootstrap", 5), Args: certs[0].args(nodeCA, clientCA)})
	n1.WaitReady()
	n2 := systest.StartNode(t, systest.Options{ID: "n2", HTTPS: true, Join: []string{n1.URL()}, Args: certs[1].args(nodeCA, clientCA)})
	n2.WaitReady()
	c := &systest.Cluster{Nodes: []*systest.Proc{n1, n2}}
	leader := systest.WaitLeader(t, c.Nodes...)
	follower := c.Others(leader)[0]

	version := putRules(t, follower, rulesDoc("over-tls", 2), "")
	for _, p := range c.Nodes {
		waitFor(t, 5*time.Second, "rules written on the follower reach "+p.ID, hasRules(p, version, "over-tls"))
	}
	if status, d := checkUser(t, follower, "alice"); status != http.StatusOK || d.Rule != "over-tls" {
		t.Fatalf("check over HTTPS: %d %+v", status, d)
	}
	// sluice top over HTTPS with the operator's certificate: the node asked
	// gathers the other's summaries over node-to-node mutual TLS.
	for range 4 {
		checkUser(t, follower, "mallory")
	}
	waitFor(t, 20*time.Second, "sluice top --once over HTTPS lists mallory from both nodes' answer", func() error {
		code, out, errOut := runCLI(t, nil, "top", "--once", "--addr", leader.URL(), "--ca-cert", nodeCA.CertFile,
			"--cert", operator.CertFile, "--key", operator.KeyFile)
		if code != 0 || !strings.Contains(out, "nodes n1,n2\n") || !strings.Contains(out, "mallory") {
			return fmt.Errorf("exit %d\n%s%s", code, out, errOut)
		}
		return nil
	})

	// Plain HTTP is not served, and HTTPS without a client certificate is refused.
	if status, _, err := systest.Get("http://" + leader.HTTPAddr + "/healthz"); err == nil && status == http.StatusOK {
		t.Fatal("plain HTTP served although --http-cert is set")
	}
	noCert := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, nodeCA.CertFile)}}}
	if resp, err := noCert.Get(leader.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("HTTPS without a client certificate answered %d", resp.StatusCode)
	}
	// The raft port speaks only mutual TLS with a node certificate.
	quiet := slog.New(slog.DiscardHandler)
	for name, src := range map[string]*transport.CertSource{"plain TCP": nil, "client CA certificate": certSource(t, operator, nodeCA)} {
		dialer, err := transport.Listen("127.0.0.1:0", "", "", src, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if conn, err := dialer.Dial(raft.ServerAddress(leader.RaftAddr), 3*time.Second); err == nil {
			// TLS 1.3 completes the client's side before the server has
			// checked the client certificate; a refused connection is then
			// closed, an accepted one waits for raft's first RPC.
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err := conn.Read(make([]byte, 1))
			conn.Close()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%s: a raft connection to %s was accepted", name, leader.ID)
			}
		}
		dialer.Close()
	}

	// Rotate n1's HTTPS and node certificates in place and send SIGHUP.
	oldHTTP, oldNode := certs[0].http.Serial, certs[0].node.Serial
	newHTTP := nodeCA.Issue(t, "n1-http")
	newNode := nodeCA.Issue(t, "n1-node")
	n1.Reload()
	waitFor(t, 10*time.Second, "n1 serves the rotated HTTPS certificate", func() error {
		return servedSerial(n1.HTTPAddr, operatorConfig(t, operator, nodeCA), newHTTP.Serial, oldHTTP)
	})
	waitFor(t, 10*time.Second, "n1's raft port presents the rotated node certificate", func() error {
		return servedSerial(n1.RaftAddr, operatorConfig(t, certs[1].node, nodeCA), newNode.Serial, oldNode)
	})
	// The cluster stayed up and still replicates in both directions.
	systest.WaitLeader(t, c.Nodes...)
	for i, p := range c.Nodes {
		name := fmt.Sprintf("after-rotation-%d", i)
		version := putRules(t, p, rulesDoc(name, 2), "")
		for _, q := range c.Nodes {
			waitFor(t, 5*time.Second, name+" reaches "+q.ID, hasRules(q, version, name))
		}
	}
}

// TestNodeWithTLSRedis: a node configured with rediss:// and
// --redis-ca-cert decides in global mode against a TLS-only redis-server.
func TestNodeWithTLSRedis(t *testing.T) {
	ca := tlstest.NewCA(t, "redis")
	pair := ca.Issue(t, "redis")
	redis := redistest.StartTLSServer(t, pair.CertFile, pair.KeyFile, ca.CertFile)
	p := systest.StartNode(t, systest.Options{Rules: rulesDoc("global", 3), Redis: "rediss://" + redis.Addr(), RedisMode: "single",
		Args: []string{"--redis-ca-cert", ca.CertFile}})
	p.WaitReady()
	waitFor(t, 10*time.Second, "a decision in global mode", func() error {
		if status, d := checkUser(t, p, "bob"); d.Mode != check.ModeGlobal {
			return fmt.Errorf("status %d, mode %q", status, d.Mode)
		}
		return nil
	})
}

func pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(data)
	return p
}

func certSource(t *testing.T, pair tlstest.Pair, ca *tlstest.CA) *transport.CertSource {
	t.Helper()
	src, err := transport.NewCertSource(transport.CertFiles{Cert: pair.CertFile, Key: pair.KeyFile, CA: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func operatorConfig(t *testing.T, client tlstest.Pair, ca *tlstest.CA) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool(t, ca.CertFile), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}
}

// servedSerial makes a new TLS connection to addr and checks the server's
// certificate is want, not old.
func servedSerial(addr string, cfg *tls.Config, want, old *big.Int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	got := conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
	if got.Cmp(want) != 0 {
		return fmt.Errorf("served serial %s (old %s), want %s", got, old, want)
	}
	return nil
}
