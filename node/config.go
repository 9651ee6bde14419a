package node

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/transport"
)

// RaftTimeouts tunes raft; a zero field keeps raft's production default.
// Tests use timeouts of tens of milliseconds to elect leaders quickly.
type RaftTimeouts struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	Commit      time.Duration
}

// Config describes one node of a cluster.
type Config struct {
	// ID names the node in raft and in the member list; it must never change.
	ID string
	// DataDir holds the raft log, stable store and snapshots.
	DataDir string
	// RaftAddr is the raft listen address.
	RaftAddr string
	// RaftAdvertise is the raft address peers dial; empty means RaftAddr.
	RaftAdvertise string
	// HTTPAdvertise is this node's HTTP API address as peers reach it
	// (followers forward writes there when this node leads).
	HTTPAdvertise string
	// Join lists HTTP addresses ("host:port" or "http://host:port") of
	// existing members. Without it, and without raft state, the node
	// bootstraps a new single-node cluster.
	Join []string
	// Seed: this node is the first entry of everyone's --join (Join then
	// lists the others). Without raft state it joins the cluster as soon
	// as a node in Join belongs to one (it lost its state), and bootstraps
	// only once a majority of the seeds, itself included, answer that they
	// belong to none; until then it asks again, so that a seed cut off from
	// the others never starts a second cluster beside theirs.
	Seed bool
	// BootstrapRules is applied when this node leads a cluster that has no
	// rules yet (in practice: the cluster it bootstraps). Nil means an empty
	// rules document: a cluster always has a rules version, so a node can
	// tell "no rules configured" (allow) from "rules not received" (503).
	BootstrapRules []byte
	// AdminToken authenticates raft connections and node-to-node HTTP calls.
	AdminToken string
	// NodeTLS, when set, runs raft over mutual TLS and gives node-to-node
	// HTTPS calls their client certificate and trusted CA.
	NodeTLS *transport.CertSource
	// HTTPS says members serve their HTTP API over TLS (--http-cert), so
	// node-to-node calls to a bare host:port use https.
	HTTPS bool
	// Logger receives the node's and raft's logs; nil means slog.Default().
	Logger *slog.Logger
	// RaftTimeouts tunes raft; zero values mean production defaults.
	RaftTimeouts RaftTimeouts
	// OnRules is told about every newer rules version: first, inside New,
	// the rules saved in DataDir at the last apply (before the node serves
	// anything), then each newer version raft applies. It runs on raft's
	// apply goroutine and must return quickly.
	OnRules func(version uint64, doc []byte)
	// LeaseTTL is how long a lease lives (--lease-ttl); zero means
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
	// MaxClockSkew is the largest difference assumed between any node's
	// wall clock and true time (--max-clock-skew); zero means
	// DefaultMaxClockSkew. Leases are trusted only within this bound.
	MaxClockSkew time.Duration
	// Voters is the size of the voting core (--voters): 1, 3, 5 or 7, or
	// 0 for 3 while the cluster has fewer than five members and 5 from
	// five on. The other members are non-voters. The leader's value counts.
	Voters int
	// VoterGrace is how long a voter may go unheard before autopilot
	// gives its vote to a caught-up non-voter (--autopilot-voter-grace);
	// zero means DefaultVoterGrace.
	VoterGrace time.Duration
	// RemoveAfter is how long a member may go unheard before autopilot
	// removes it (--autopilot-remove-after); zero means
	// DefaultRemoveAfter. It must exceed VoterGrace.
	RemoveAfter time.Duration
	// Demand returns the decisions this node has made per rule since it
	// started (Engine.Demand); the leader sizes leases from it. Nil reports
	// no demand.
	Demand func() map[string]float64
	// Fallback reports whether the engine decides in fallback mode now
	// (Engine.InFallback). Nodes report it to the leader, which withholds
	// the shares of nodes in fallback from the others' Redis rate. Nil
	// means never.
	Fallback func() bool
	// OnClustered is told whether this node must decide at its leased
	// share (true: other members exist or may still use leases) or alone
	// at the full limit (false); Engine.SetClustered. It is called often
	// with the same value and must return quickly. Nil for nodes with Redis.
	OnClustered func(clustered bool)
}

// Validate reports a configuration the node cannot run with.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("node: ID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: DataDir is required"))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("node: RaftAddr: %w", err))
	}
	if c.RaftAdvertise != "" {
		if _, _, err := net.SplitHostPort(c.RaftAdvertise); err != nil {
			errs = append(errs, fmt.Errorf("node: RaftAdvertise: %w", err))
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAdvertise); err != nil {
		errs = append(errs, fmt.Errorf("node: HTTPAdvertise: %w", err))
	}
	for i, j := range c.Join {
		if j == "" {
			errs = append(errs, fmt.Errorf("node: Join[%d] is empty", i))
		}
	}
	if c.BootstrapRules != nil {
		if _, err := rules.Parse(c.BootstrapRules); err != nil {
			errs = append(errs, fmt.Errorf("node: BootstrapRules: %w", err))
		}
	}
	if c.LeaseTTL < 0 || c.MaxClockSkew < 0 {
		errs = append(errs, errors.New("node: LeaseTTL and MaxClockSkew must not be negative"))
	}
	if ttl, skew := cmp.Or(c.LeaseTTL, DefaultLeaseTTL), cmp.Or(c.MaxClockSkew, DefaultMaxClockSkew); 4*skew >= ttl {
		errs = append(errs, fmt.Errorf("node: max clock skew %v must be under a quarter of the lease TTL %v, so that a lease outlives a missed renewal", skew, ttl))
	}
	if c.Voters != 0 && (c.Voters < 1 || c.Voters > 7 || c.Voters%2 == 0) {
		errs = append(errs, fmt.Errorf("node: Voters %d: want 0 (auto) or an odd number from 1 to 7", c.Voters))
	}
	if c.VoterGrace < 0 || c.RemoveAfter < 0 {
		errs = append(errs, errors.New("node: VoterGrace and RemoveAfter must not be negative"))
	} else if grace, remove := cmp.Or(c.VoterGrace, DefaultVoterGrace), cmp.Or(c.RemoveAfter, DefaultRemoveAfter); remove <= grace {
		errs = append(errs, fmt.Errorf("node: remove-after %v must exceed the voter grace %v, so a dead voter's vote moves before it goes", remove, grace))
	}
	t := c.RaftTimeouts
	if t.Heartbeat < 0 || t.Election < 0 || t.LeaderLease < 0 || t.Commit < 0 {
		errs = append(errs, errors.New("node: RaftTimeouts must not be negative"))
	}
	return errors.Join(errs...)
}
