package transport

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/transport/tlstest"
)

func certSource(t *testing.T, files CertFiles) *CertSource {
	t.Helper()
	s, err := NewCertSource(files)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func nodeSource(t *testing.T, ca *tlstest.CA, name string) *CertSource {
	t.Helper()
	p := ca.Issue(t, name)
	return certSource(t, CertFiles{Cert: p.CertFile, Key: p.KeyFile, CA: ca.CertFile})
}

func listenTLS(t *testing.T, token string, src *CertSource) *StreamLayer {
	t.Helper()
	s, err := Listen("127.0.0.1:0", "", token, src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRaftOverMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	server := listenTLS(t, "", nodeSource(t, ca, "n1"))
	client := listenTLS(t, "", nodeSource(t, ca, "n2"))
	conn, err := client.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("dialed connection is %T, not TLS", conn)
	}
	conn.Write([]byte("ping"))
	accepted := acceptOne(server, 2*time.Second)
	if accepted == nil {
		t.Fatal("a node with a certificate from the node CA was not accepted")
	}
	defer accepted.Close()
	state := accepted.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 || state.PeerCertificates[0].Subject.CommonName != "n2" {
		t.Fatalf("server did not verify the client certificate: %+v", state.PeerCertificates)
	}
}

func TestRaftTLSRefusesStrangers(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	server := listenTLS(t, "", nodeSource(t, ca, "n1"))
	addr := raft.ServerAddress(server.Addr().String())

	other := tlstest.NewCA(t, "other")
	stranger := listenTLS(t, "", nodeSource(t, other, "x"))
	if c, err := stranger.Dial(addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("a node with a certificate from another CA completed the handshake")
	}
	plain := listen(t, "")
	if c, err := plain.Dial(addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("a plain-TCP node completed the handshake with a TLS node")
	}
	// A TLS client with no certificate at all.
	raw, err := tls.Dial("tcp", string(addr), &tls.Config{RootCAs: server.tls.material().roots, ServerName: "127.0.0.1"})
	if err == nil {
		raw.Write(append([]byte(handshakeMagic), make([]byte, nonceLen)...))
		expectHangUp(t, raw)
	}
	if c := acceptOne(server, 500*time.Millisecond); c != nil {
		c.Close()
		t.Fatal("a connection without a node certificate was handed to raft")
	}
}

// TestCertificateReloadReachesNewConnections rotates the listener's
// certificate files: a connection made after Reload sees the new
// certificate, the one made before keeps working.
func TestCertificateReloadReachesNewConnections(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	first := ca.Issue(t, "n1")
	src := certSource(t, CertFiles{Cert: first.CertFile, Key: first.KeyFile, CA: ca.CertFile})
	server := listenTLS(t, "", src)
	client := listenTLS(t, "", nodeSource(t, ca, "n2"))
	addr := raft.ServerAddress(server.Addr().String())
	serial := func(c net.Conn) string {
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
	}

	before, err := client.Dial(addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	acceptedBefore := acceptOne(server, 2*time.Second)
	if acceptedBefore == nil {
		t.Fatal("not accepted")
	}
	defer acceptedBefore.Close()
	if serial(before) != first.Serial.String() {
		t.Fatal("first connection did not see the first certificate")
	}

	second := ca.Issue(t, "n1") // same files, new key and serial
	if changed, err := src.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if changed, _ := src.Reload(); changed {
		t.Fatal("a second Reload of unchanged files reported a change")
	}
	after, err := client.Dial(addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got := serial(after); got != second.Serial.String() {
		t.Fatalf("new connection saw serial %s, want the rotated %s", got, second.Serial)
	}
	if a := acceptOne(server, 2*time.Second); a != nil {
		a.Close()
	}
	before.Write([]byte("ping"))
	buf := make([]byte, 4)
	acceptedBefore.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := acceptedBefore.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the connection made before the rotation broke: %q, %v", buf, err)
	}
}

func TestReloadKeepsOldCertificateOnBadFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	p := ca.Issue(t, "n1")
	src := certSource(t, CertFiles{Cert: p.CertFile, Key: p.KeyFile})
	other := ca.Issue(t, "other")
	src.files.Key = other.KeyFile // a key that does not match the certificate
	if _, err := src.Reload(); err == nil {
		t.Fatal("a mismatched key pair reloaded")
	}
	if got := src.material().cert.Leaf.SerialNumber; got.Cmp(p.Serial) != 0 {
		t.Fatalf("serving serial %s after a failed reload, want %s", got, p.Serial)
	}
	if _, err := NewCertSource(CertFiles{Cert: p.CertFile}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}

// TestLeaderClientHTTPSWithNodeCertificate: over HTTPS, a node's call
// presents its node certificate, which the member's server recognises.
func TestLeaderClientHTTPSWithNodeCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	serverPair := ca.Issue(t, "http")
	httpSrc := certSource(t, CertFiles{Cert: serverPair.CertFile, Key: serverPair.KeyFile})
	nodeSrc := nodeSource(t, ca, "n2")
	fromNode := make(chan bool, 2)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fromNode <- nodeSrc.IsNodeClient(r.TLS)
		w.Write([]byte(`{}`))
	}))
	srv.TLS = HTTPServerConfig(httpSrc, nodeSrc)
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")

	c := NewLeaderClient("", 2*time.Second, nodeSrc, true)
	if err := c.Join(context.Background(), host, admin.JoinRequest{}); err != nil {
		t.Fatalf("bare host:port over HTTPS: %v", err)
	}
	if !<-fromNode {
		t.Fatal("the member did not see a node certificate")
	}
	// Without a client certificate the call still connects, but is not a node's.
	anon := NewLeaderClient("", 2*time.Second, certSource(t, CertFiles{CA: ca.CertFile}), false)
	if err := anon.Join(context.Background(), srv.URL, admin.JoinRequest{}); err != nil {
		t.Fatalf("https:// target: %v", err)
	}
	if <-fromNode {
		t.Fatal("a client without a certificate counted as a node")
	}
	// A client that does not trust the node CA refuses the member.
	if err := NewLeaderClient("", 2*time.Second, nil, true).Join(context.Background(), host, admin.JoinRequest{}); err == nil {
		t.Fatal("a member with an untrusted certificate was accepted")
	}
}

func TestHTTPClientCARequiresCertificates(t *testing.T) {
	ca := tlstest.NewCA(t, "clients")
	serverPair := ca.Issue(t, "http")
	httpSrc := certSource(t, CertFiles{Cert: serverPair.CertFile, Key: serverPair.KeyFile, CA: ca.CertFile})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	srv.TLS = HTTPServerConfig(httpSrc, nil)
	srv.StartTLS()
	defer srv.Close()
	trustOnly := certSource(t, CertFiles{CA: ca.CertFile})
	if err := NewLeaderClient("", 2*time.Second, trustOnly, false).Join(context.Background(), srv.URL, admin.JoinRequest{}); err == nil {
		t.Fatal("a client without a certificate was served although --http-ca-cert is set")
	}
	withCert := nodeSource(t, ca, "client")
	if err := NewLeaderClient("", 2*time.Second, withCert, false).Join(context.Background(), srv.URL, admin.JoinRequest{}); err != nil {
		t.Fatalf("a client with a certificate from the client CA: %v", err)
	}
}
