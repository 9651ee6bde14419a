// Package check holds the vocabulary shared by everything that asks for or
// makes a rate-limit decision: the request (attributes + cost) and the
// decision (overall verdict plus one result per applicable rule).
//
// It is a leaf package on purpose: the engine in node/engine, the HTTP server in
// api/, the gin middleware and the Go client all speak these types without
// importing each other (and without importing raft).
package check

import (
	"context"
	"time"
)

// Mode says where a decision's tokens came from (SPEC §4).
type Mode string

const (
	// ModeLocal: one node, no Redis; its buckets are the whole limit (exact).
	ModeLocal Mode = "local"
	// ModeLease: several nodes, no Redis; local buckets at the node's leased
	// share, so that the cluster holds one limit.
	ModeLease Mode = "lease"
	// ModeGlobal: tokens come from slices granted by the Redis bucket.
	ModeGlobal Mode = "global"
	// ModeFallback: Redis unreachable; local buckets at the node's leased share.
	ModeFallback Mode = "fallback"
)

// Attr is one request attribute. Requests carry a handful of attributes, so
// a slice with linear lookup beats a map and lets decoders avoid allocating.
type Attr struct {
	Name  string
	Value string
}

// Attrs is a request's attribute list; names are unique.
type Attrs []Attr

// Get returns the value of the named attribute.
func (a Attrs) Get(name string) (string, bool) {
	for i := range a {
		if a[i].Name == name {
			return a[i].Value, true
		}
	}
	return "", false
}

// Request is one check: attributes and a cost (≥ 1; 0 means the default 1).
type Request struct {
	Attributes Attrs `json:"attributes"`
	Cost       int64 `json:"cost,omitempty"`
}

// EffectiveCost returns the cost with the default applied.
func (r *Request) EffectiveCost() int64 {
	if r.Cost == 0 {
		return 1
	}
	return r.Cost
}

// Result is the outcome of one applicable rule.
type Result struct {
	Rule         string `json:"rule"`
	Key          string `json:"key"`
	Allowed      bool   `json:"allowed"`
	Shadow       bool   `json:"shadow"`
	Limit        int64  `json:"limit"`
	Remaining    int64  `json:"remaining"`
	ResetMs      int64  `json:"reset_ms"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	// Used is set for quota rules only.
	Used   *int64 `json:"used,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Decision is the overall answer. When no rule applies, Rule is empty,
// Results is empty and the numeric summary fields are zero.
type Decision struct {
	Allowed      bool     `json:"allowed"`
	Rule         string   `json:"rule,omitempty"`
	Limit        int64    `json:"limit"`
	Remaining    int64    `json:"remaining"`
	ResetMs      int64    `json:"reset_ms"`
	RetryAfterMs int64    `json:"retry_after_ms"`
	Reason       string   `json:"reason,omitempty"`
	Mode         Mode     `json:"mode"`
	Results      []Result `json:"results"`
}

// Decider makes decisions. The engine in node/ implements it in-process;
// api/client implements it over HTTP.
type Decider interface {
	Decide(ctx context.Context, req Request) (Decision, error)
}

// CeilMs converts nanoseconds to milliseconds, rounding up so a client that
// waits the reported time never comes back too early. Every *_ms field in
// the API is rounded this way.
func CeilMs(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Millisecond) - 1) / int64(time.Millisecond)
}
