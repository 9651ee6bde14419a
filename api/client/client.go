// Package client is the Go client of a Sluice node's HTTP API: decisions
// (it implements check.Decider for the remote gin middleware) and the admin
// calls the CLI makes. One Client keeps its connections alive across calls.
package client

import (
	"net/http"
	"strings"
	"time"
)

// Client talks to one Sluice node.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sets the admin bearer token sent with every call.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces the underlying HTTP client.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client for the node at addr ("host:port" or "http://host:port").
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
	return c
}
