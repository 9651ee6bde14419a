package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
)

// CertFiles names PEM files: this side's certificate and key, and the CA
// bundle that verifies the other side.
type CertFiles struct {
	Cert, Key, CA string
}

// IsZero reports whether no file is named.
func (f CertFiles) IsZero() bool { return f == CertFiles{} }

// Validate reports a certificate without its key or the reverse.
func (f CertFiles) Validate() error {
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("a certificate needs its key and a key its certificate")
	}
	return nil
}

// CertSource holds certificates loaded from CertFiles. Reload swaps them
// atomically: connections made afterwards use the new files, connections
// already open keep theirs, so certificates rotate without a restart and
// without dropping the cluster. Every tls.Config built here reads the
// source at handshake time.
type CertSource struct {
	files CertFiles
	cur   atomic.Pointer[certMaterial]
}

type certMaterial struct {
	cert  *tls.Certificate // nil without CertFiles.Cert
	roots *x509.CertPool   // nil without CertFiles.CA
	caPEM []byte
	raw   []byte // every file's bytes, to tell whether a reload changes anything
}

// NewCertSource loads files; a source with no files is nil.
func NewCertSource(files CertFiles) (*CertSource, error) {
	if files.IsZero() {
		return nil, nil
	}
	if err := files.Validate(); err != nil {
		return nil, err
	}
	s := &CertSource{files: files}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again and reports whether they changed. On an
// error the previous certificates stay in use.
func (s *CertSource) Reload() (changed bool, err error) {
	m, err := loadCertMaterial(s.files)
	if err != nil {
		return false, err
	}
	if old := s.cur.Load(); old != nil && bytes.Equal(old.raw, m.raw) {
		return false, nil
	}
	s.cur.Store(m)
	return true, nil
}

func loadCertMaterial(f CertFiles) (*certMaterial, error) {
	m := &certMaterial{}
	if f.Cert != "" {
		certPEM, err := os.ReadFile(f.Cert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := os.ReadFile(f.Key)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s / %s: %w", f.Cert, f.Key, err)
		}
		m.cert = &cert
		m.raw = append(append(m.raw, certPEM...), keyPEM...)
	}
	if f.CA != "" {
		pool, caPEM, err := LoadCertPool(f.CA)
		if err != nil {
			return nil, err
		}
		m.roots, m.caPEM = pool, caPEM
		m.raw = append(m.raw, caPEM...)
	}
	return m, nil
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(file string) (*x509.CertPool, []byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, data, nil
}

func (s *CertSource) material() *certMaterial { return s.cur.Load() }

// HasCA reports whether the source verifies peers with its own CA.
func (s *CertSource) HasCA() bool { return s != nil && s.files.CA != "" }

// serverConfig is a TLS server presenting the source's certificate;
// clientCAs, when set, verifies client certificates under clientAuth.
func serverConfig(m *certMaterial, clientAuth tls.ClientAuthType, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*m.cert},
		ClientAuth:   clientAuth,
		ClientCAs:    clientCAs,
	}
}

// clientConfig dials serverName presenting the source's certificate, if
// any, and trusting its CA (the system roots without one).
func (s *CertSource) clientConfig(serverName string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if s == nil {
		return cfg
	}
	m := s.material()
	cfg.RootCAs = m.roots
	if m.cert != nil {
		cfg.Certificates = []tls.Certificate{*m.cert}
	}
	return cfg
}

// MutualServerConfig requires every client to present a certificate signed
// by the source's CA: the raft listener of a node with --node-cert.
func (s *CertSource) MutualServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.material()
			return serverConfig(m, tls.RequireAndVerifyClientCert, m.roots), nil
		},
	}
}

// HTTPServerConfig serves the HTTP API with the certificate of s. With a CA
// on s (--http-ca-cert) every client must present a certificate signed by
// it or by the node CA; otherwise, with node certificates, a client may
// present a node certificate (how nodes authenticate their calls to each
// other) and anyone else connects without one.
func HTTPServerConfig(s, node *CertSource) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.material()
			switch {
			case s.HasCA():
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(m.caPEM)
				if node.HasCA() {
					pool.AppendCertsFromPEM(node.material().caPEM)
				}
				return serverConfig(m, tls.RequireAndVerifyClientCert, pool), nil
			case node.HasCA():
				return serverConfig(m, tls.VerifyClientCertIfGiven, node.material().roots), nil
			default:
				return serverConfig(m, tls.NoClientCert, nil), nil
			}
		},
	}
}

// IsNodeClient reports whether a connection's client presented a
// certificate signed by the source's CA: another node of the cluster.
func (s *CertSource) IsNodeClient(state *tls.ConnectionState) bool {
	if !s.HasCA() || state == nil || len(state.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         s.material().roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err == nil
}

// DialTLS dials addr and completes a TLS handshake verifying the server's
// name against the host of addr.
func (s *CertSource) DialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, s.clientConfig(host))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}
