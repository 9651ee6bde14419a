package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/transport"
)

// certReloadPoll is how often certificate files are checked for changes
// (SIGHUP reloads at once).
const certReloadPoll = 10 * time.Second

// tlsFlags are serve's TLS flags, named like rqlite's.
type tlsFlags struct {
	httpCert, httpKey, httpCA string
	nodeCert, nodeKey, nodeCA string
	redisCA                   string
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.httpCert, "http-cert", "", "PEM certificate: serve the HTTP API over HTTPS only [plain HTTP]")
	fs.StringVar(&f.httpKey, "http-key", "", "PEM key of --http-cert")
	fs.StringVar(&f.httpCA, "http-ca-cert", "", "PEM CA bundle: require every HTTP client to present a certificate it (or --node-ca-cert) signed")
	fs.StringVar(&f.nodeCert, "node-cert", "", "PEM certificate of this node: mutual TLS on the raft port and on node-to-node HTTPS calls")
	fs.StringVar(&f.nodeKey, "node-key", "", "PEM key of --node-cert")
	fs.StringVar(&f.nodeCA, "node-ca-cert", "", "PEM CA bundle that signed every node's certificate (and the peers' --http-cert)")
	fs.StringVar(&f.redisCA, "redis-ca-cert", "", "PEM CA bundle that verifies rediss:// servers [system roots]")
}

// serveTLS is the loaded certificates; nil fields are off.
type serveTLS struct {
	http, node *transport.CertSource
	redisRoots *x509.CertPool
}

// load checks the flags go together and reads every file once.
func (f tlsFlags) load() (*serveTLS, error) {
	if f.httpCA != "" && f.httpCert == "" {
		return nil, errors.New("--http-ca-cert needs --http-cert and --http-key")
	}
	node := transport.CertFiles{Cert: f.nodeCert, Key: f.nodeKey, CA: f.nodeCA}
	if !node.IsZero() && (f.nodeCert == "" || f.nodeKey == "" || f.nodeCA == "") {
		return nil, errors.New("node TLS needs all of --node-cert, --node-key and --node-ca-cert")
	}
	var t serveTLS
	var err error
	if t.http, err = transport.NewCertSource(transport.CertFiles{Cert: f.httpCert, Key: f.httpKey, CA: f.httpCA}); err != nil {
		return nil, fmt.Errorf("--http-cert: %w", err)
	}
	if t.node, err = transport.NewCertSource(node); err != nil {
		return nil, fmt.Errorf("--node-cert: %w", err)
	}
	if f.redisCA != "" {
		if t.redisRoots, _, err = transport.LoadCertPool(f.redisCA); err != nil {
			return nil, fmt.Errorf("--redis-ca-cert: %w", err)
		}
	}
	return &t, nil
}

// nodeClient recognises a node's client certificate; nil without node TLS.
func (t *serveTLS) nodeClient() func(*tls.ConnectionState) bool {
	if t.node == nil {
		return nil
	}
	return t.node.IsNodeClient
}

// watch reloads the HTTP and node certificates on SIGHUP and whenever their
// files change, until ctx ends. New connections get the new certificates;
// open ones (raft's among them) are not touched, so the cluster stays up.
func (t *serveTLS) watch(ctx context.Context, logger *slog.Logger) {
	sources := map[string]*transport.CertSource{"http": t.http, "node": t.node}
	for name, s := range sources {
		if s == nil {
			delete(sources, name)
		}
	}
	if len(sources) == 0 {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(certReloadPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
		}
		for name, s := range sources {
			changed, err := s.Reload()
			switch {
			case err != nil:
				logger.Error("certificate reload failed; keeping the previous certificates", "certs", name, "err", err)
			case changed:
				logger.Info("certificates reloaded", "certs", name)
			}
		}
	}
}

// requireAuthBeyondLoopback refuses a node whose raft port other hosts can
// reach while nothing authenticates raft and node-to-node calls: without a
// token the raft handshake is keyed by the empty string, so anyone who can
// reach the port could join the log and commit rules. Node TLS
// authenticates raft by certificate; node-to-node HTTP calls then carry the
// node certificate, which needs the API on HTTPS. --insecure overrides.
func requireAuthBeyondLoopback(f serveFlags, t *serveTLS) error {
	if f.insecure || f.adminToken != "" || (t.node != nil && t.http != nil) {
		return nil
	}
	exposed := ""
	for _, addr := range []string{f.raftAddr, f.raftAdvertise} {
		if addr != "" && !isLoopbackAddr(addr) {
			exposed = addr
			break
		}
	}
	if exposed == "" {
		return nil
	}
	if t.node != nil {
		return fmt.Errorf("raft address %s is reachable beyond loopback and node TLS alone leaves node-to-node HTTP calls unauthenticated: "+
			"serve the API over HTTPS (--http-cert, --http-key) so they carry the node certificate, or set --admin-token", exposed)
	}
	return fmt.Errorf("raft address %s is reachable beyond loopback but nothing authenticates the cluster: "+
		"set --admin-token (or SLUICE_ADMIN_TOKEN), or use mutual TLS with --node-cert, --node-key, --node-ca-cert and --http-cert, --http-key; "+
		"--insecure runs it open anyway", exposed)
}

// isLoopbackAddr reports whether host:port names only this machine.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
