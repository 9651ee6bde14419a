// Package client is the Go client of a Sluice node's HTTP API: decisions
// (it implements check.Decider for the remote gin middleware) and the admin
// calls the CLI makes. One Client keeps its connections alive across calls.
package client

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"time"
)

// Client talks to one Sluice node.
type Client struct {
	base  string
	token string
	http  *http.Client
	tls   *tls.Config
}

// Option configures a Client.
type Option func(*Client)

// WithToken sets the admin bearer token sent with every call.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces the underlying HTTP client.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTLSConfig sets how HTTPS nodes are verified and, for a node started
// with --http-ca-cert, the client certificate to present. It applies to the
// default HTTP client and to one given with WithHTTPClient whose transport
// is an *http.Transport.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *Client) { c.tls = cfg } }

// WithRootCAs trusts roots (the CA that signed the node's --http-cert)
// instead of the system's CAs.
func WithRootCAs(roots *x509.CertPool) Option {
	return WithTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
}

// New returns a client for the node at addr ("host:port", "http://host:port"
// or "https://host:port").
func New(addr string, opts ...Option) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c := &Client{
		base: strings.TrimRight(addr, "/"),
		http: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
	for _, o := range opts {
		o(c)
	}
	if t, ok := c.http.Transport.(*http.Transport); ok && c.tls != nil {
		t.TLSClientConfig = c.tls
	}
	return c
}
