package systest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// httpClient is shared by the harness's one-off calls; it never waits long,
// since a paused or cut-off node must not hang a test. HTTPS calls use the
// TLS settings of the last UseTLS.
var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialTLSContext: dialTLS}}

// harnessTLS is what the harness's HTTPS calls trust and present.
var harnessTLS atomic.Pointer[tls.Config]

// UseTLS makes the harness's HTTPS calls (and Proc.Client) trust the CA in
// caFile and, when certFile is set, present that client certificate. It
// lasts until the test ends.
func UseTLS(t testing.TB, caFile, certFile, keyFile string) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("systest: %v", err)
	}
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	cfg.RootCAs.AppendCertsFromPEM(pem)
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatalf("systest: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	harnessTLS.Store(cfg)
	t.Cleanup(func() { harnessTLS.Store(nil) })
}

// clientTLS is a copy of the harness's TLS settings for one connection.
func clientTLS() *tls.Config {
	if cfg := harnessTLS.Load(); cfg != nil {
		return cfg.Clone()
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

func dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	d := tls.Dialer{Config: clientTLS()}
	return d.DialContext(ctx, network, addr)
}

// Get fetches url and returns the status and body.
func Get(url string) (int, string, error) {
	return Do(context.Background(), http.MethodGet, url, "", "")
}

// Do sends one request with an optional JSON body and bearer token.
func Do(ctx context.Context, method, url, body, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
