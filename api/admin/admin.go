// Package admin is the vocabulary of the admin API (SPEC §6): the wire types,
// the Admin interface the HTTP layer needs from a node, and the sentinel
// errors a node returns. It is a leaf package so that api/ can serve the admin
// routes without importing node/ or raft, and node/ can implement Admin
// without importing gin.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/fsm/rules"
)

// Sentinel errors. A node wraps them (fmt.Errorf("...: %w", ErrX)) and api/
// maps each to one HTTP status in one place (api/errors.go).
var (
	// ErrNoLeader: the cluster has no leader right now (503).
	ErrNoLeader = errors.New("no leader")
	// ErrUnknownNode: the named node is not a member (404).
	ErrUnknownNode = errors.New("unknown node")
	// ErrInvalid: the request is well-formed JSON but its content is invalid (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthorized: missing or wrong admin token (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: the node cannot serve this now, e.g. it is shutting down (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrConflict: the membership change would leave the cluster without a
	// quorum, e.g. removing its last voter (409). Nothing was changed.
	ErrConflict = errors.New("conflict")
	// ErrUnreachable: the joining node's raft address does not answer the
	// raft handshake, so adding it could only cost the cluster (422).
	// Nothing was changed; the joiner may retry once it is reachable.
	ErrUnreachable = errors.New("raft address unreachable")
)

// NodeStatus describes one member in GET /v1/cluster.
type NodeStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	// State is the raft role as this node sees it: "leader", "follower", or "unknown".
	State   string `json:"state"`
	Healthy bool   `json:"healthy"`
}

// Role is the member's part in the cluster: "leader", "voter" (counts for
// the quorum) or "non-voter" (receives the log and decides, but never
// votes).
func (s NodeStatus) Role() string {
	switch {
	case s.State == "leader":
		return "leader"
	case s.Voter:
		return "voter"
	}
	return "non-voter"
}

// ClusterStatus is the body of GET /v1/cluster.
type ClusterStatus struct {
	Leader string       `json:"leader"`
	Term   uint64       `json:"term"`
	Nodes  []NodeStatus `json:"nodes"`
	// RulesVersion is the rules version the node asked decides on.
	RulesVersion uint64 `json:"rules_version"`
	// Warning says what the node asked is deciding without, e.g. "no
	// leader; deciding on rules version 4"; empty when nothing is missing.
	Warning string `json:"warning,omitempty"`
}

// NodeInfo is the body of GET /v1/node: what the node answering is doing,
// for the status page and for operators asking one node.
type NodeInfo struct {
	ID string `json:"id"`
	// Mode is the mode decisions start in now: "local", "lease", "global"
	// or "fallback" (api/check.Mode).
	Mode string `json:"mode"`
	// Redis is how the node reaches Redis: "none" (no --redis), "single",
	// "cluster", or "unknown" (auto mode before Redis first answered).
	Redis        string `json:"redis"`
	RulesVersion uint64 `json:"rules_version"`
	// Decisions is rule → result ("allowed", "denied", "shadow_denied") →
	// decisions this node made since it started, over every mode: the
	// counters of sluice_decisions_total, so rates are differences.
	Decisions map[string]map[string]uint64 `json:"decisions"`
	// TimeMs is when the counters were read (Unix milliseconds, the node's
	// clock), so rates need no trust in the caller's timing.
	TimeMs int64 `json:"time_ms"`
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Fresh: the joiner has no raft state (a new node, or one that lost its
	// disk). It travels as the query parameter fresh=true, not in the body,
	// because leaders before it refuse unknown body fields and would refuse
	// new nodes during a rolling upgrade; they ignore the parameter.
	Fresh bool `json:"-"`
}

// RulesDoc is the body of GET /v1/rules: the rules document plus its version.
type RulesDoc struct {
	Version uint64          `json:"version"`
	Rules   json.RawMessage `json:"rules"`
}

// ParseRules validates a rules document as PUT /v1/rules does, for a real
// apply and a dry run alike: an invalid document fails with an error that
// is ErrInvalid and carries the *rules.ValidationError listing every bad
// field.
func ParseRules(doc []byte) (*rules.Set, error) {
	set, err := rules.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return set, nil
}

// RulesDryRun is the body of PUT /v1/rules?dry_run=true: what applying the
// document would change, compared with the rules the answering node
// decides on (Version, which stays in force: nothing is applied).
type RulesDryRun struct {
	DryRun  bool   `json:"dry_run"`
	Version uint64 `json:"version"`
	rules.Change
	// Throttled is, by rule name, how the keys of each changed rule that
	// keeps its key and kind would fare under its new limit.
	Throttled map[string]Throttled `json:"throttled"`
}

// How Throttled counts keys (docs/API.md, "Dry run"): from the last
// minute's cluster-wide demand per key (GET /v1/top's summaries), or from
// the bucket and quota state the engine holds.
const (
	MeasureDemand      = "last_minute_demand"
	MeasureBucketState = "bucket_state"
)

// Throttled is one rule's estimate: of the keys active lately (ActiveKeys,
// at most 1000 looked at; Truncated when there were more), how many would
// have nothing left for their next request under the new limit (AtOnce).
type Throttled struct {
	Measure    string `json:"measure"`
	ActiveKeys int    `json:"active_keys"`
	AtOnce     int    `json:"throttled_at_once"`
	Truncated  bool   `json:"truncated,omitempty"`
}

// Lease is one node's share of one rule (GET /v1/leases): its floor plus
// its leased extra, and how long the extra has left (0 when the node has no
// valid lease and uses its floor only). Withheld means the leader presumes
// the node may be deciding in fallback mode (it said so, or has not been
// heard from lately), so the other nodes keep its share out of the rate
// they draw from Redis.
type Lease struct {
	Share       float64 `json:"share"`
	ExpiresInMs int64   `json:"expires_in_ms"`
	Withheld    bool    `json:"withheld,omitempty"`
}

// Leases is the body of GET /v1/leases: rule → node id → lease.
type Leases map[string]map[string]Lease

// DemandReport is the body of POST /v1/internal/demand, which every node
// sends the leader a few times per lease period, and at once when it enters
// or leaves fallback mode: the decisions per second it saw for each rule,
// and whether it decides in fallback. The leader sizes the leases from the
// rates and withholds the shares of nodes in fallback from the others.
type DemandReport struct {
	NodeID   string             `json:"node_id"`
	Rates    map[string]float64 `json:"rates"`
	Fallback bool               `json:"fallback,omitempty"`
	// Released is rule → lease generation: the node uses no lease entry of
	// the rule from an earlier generation, so the leader may hand what those
	// entries granted to other nodes at once.
	Released map[string]uint64 `json:"released,omitempty"`
	// AppliedIndex is the last raft index the node applied: the leader
	// promotes a non-voter to voter only once this is near its own.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// DemandReceiver is the leader's end of demand reports. Nodes implement it
// next to Admin; the internal route exists when the Admin given to the HTTP
// layer does.
type DemandReceiver interface {
	ReportDemand(ctx context.Context, r DemandReport) error
}

// HandOverRequest is the body of POST /v1/internal/handover: a voter that
// is shutting down asks the leader to give its vote to a caught-up
// non-voter first, so its absence costs the quorum nothing.
type HandOverRequest struct {
	NodeID string `json:"node_id"`
}

// HandOverReceiver is the leader's end of hand-overs; the internal route
// exists when the Admin given to the HTTP layer implements it.
type HandOverReceiver interface {
	HandOver(ctx context.Context, nodeID string) error
}

// Admin is what the admin routes need from a node. Writes made on a follower
// are forwarded to the leader by the implementation.
type Admin interface {
	ClusterStatus(ctx context.Context) (ClusterStatus, error)
	Join(ctx context.Context, req JoinRequest) error
	RemoveNode(ctx context.Context, id string) error
	// Rules returns the current rules document ({"rules": [...]}) and version.
	Rules(ctx context.Context) (RulesDoc, error)
	// SetRules validates and replaces the rules; doc is a full rules document.
	SetRules(ctx context.Context, doc []byte) (version uint64, err error)
	// Leases returns every node's share of every rule as this node sees it.
	Leases(ctx context.Context) (Leases, error)
}

// ForwardedHeader marks an admin call one node forwarded to the node it
// took for the leader. A node that receives such a call but does not lead
// (leadership moved meanwhile) answers ErrNoLeader rather than forwarding it
// again, so during an election a call cannot bounce between nodes.
const ForwardedHeader = "X-Sluice-Forwarded"

type forwardedKey struct{}

// WithForwarded marks ctx as carrying a call that was already forwarded once.
func WithForwarded(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardedKey{}, true)
}

// IsForwarded reports whether ctx carries a call that was forwarded once.
func IsForwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
}
