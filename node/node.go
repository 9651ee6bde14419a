package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
	"github.com/sluicehq/sluice/transport"
)

// Node is one member of a Sluice raft cluster: it replicates rules,
// membership and leases, forwards writes made on a follower to the leader,
// reports its demand and, while leading, allocates leases (lease_alloc.go),
// and implements admin.Admin for the HTTP layer.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm.FSM
	leader *transport.LeaderClient

	raft     *raft.Raft
	raftAddr raft.ServerAddress // as advertised to peers
	trans    *raft.NetworkTransport
	store    *raftboltdb.BoltStore
	stable   *guardedStable // raft's view of store as a stable store
	observer *raft.Observer
	health   peerHealth
	// membership serialises the leader's configuration changes
	// (membership.go).
	membership sync.Mutex
	// left: when each member last asked to hand its vote over (leader,
	// under membership).
	left map[string]time.Time
	// hadState: the data dir held raft state when the node started.
	hadState bool
	// rules is the newest rules version this node knows, from its data dir
	// or from raft (last_rules.go); nil until it has any.
	rules atomic.Pointer[knownRules]
	// joined: a new node with Join became a member, its join accepted (it
	// votes, or the core is full, or it waited its turn) or, as the seed,
	// by bootstrapping; it is not ready before.
	joined atomic.Bool

	own         atomic.Pointer[ownLeases] // this node's usable leases
	leasesSeen  atomic.Uint64             // newest lease generation applied
	shrunk      atomic.Bool               // an own lease shrank since the last report
	joining     atomic.Int32              // leader: joins adding a server in progress
	demand      demandTable               // leader: what each node reported
	reallocate  chan struct{}             // leader: the withheld set changed
	ruleNames   ruleNamesCache
	leaderSince atomic.Int64 // Unix ns when this node last became leader
	// rulesApplies counts PUT /v1/rules by result (rules_audit.go).
	rulesApplies *prometheus.CounterVec

	ctx    context.Context // ends at Close; bounds background work
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

var (
	_ admin.Admin            = (*Node)(nil)
	_ admin.DemandReceiver   = (*Node)(nil)
	_ admin.HandOverReceiver = (*Node)(nil)
)

// forwardTimeout bounds one call to another node's HTTP API.
const forwardTimeout = 10 * time.Second

// New validates cfg, opens the node's stores and starts raft. The node does
// not join or bootstrap a cluster until Open.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BootstrapRules == nil {
		cfg.BootstrapRules = []byte(`{"rules": []}`)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	n := &Node{
		cfg:    cfg,
		logger: cfg.Logger.With("component", "node"),
		leader: transport.NewLeaderClient(cfg.AdminToken, forwardTimeout, cfg.NodeTLS, cfg.HTTPS),
		// Holds one pending signal: the allocation it triggers reads the
		// latest reports, so signals arriving meanwhile add nothing.
		reallocate:   make(chan struct{}, 1),
		left:         map[string]time.Time{},
		rulesApplies: newRulesApplies(),
	}
	n.fsm = fsm.New(n.rulesApplied, fsm.WithLeasesHook(n.leasesApplied))
	n.own.Store(&ownLeases{})
	n.health.reset()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.cancel()
		return nil, err
	}
	if n.hadState {
		n.updateMode() // a restarted single node is alone again at once
	}
	n.wg.Go(n.runLeases)
	n.wg.Go(n.runAutopilot)
	return n, nil
}

// Open makes the node a member of its cluster. A node with raft state
// rejoins its cluster (and, with Join, re-announces its addresses in the
// background); a new node with Join asks the listed members to add it,
// retrying until one accepts or ctx ends; a new node without Join bootstraps
// a single-node cluster and waits until it leads and has its rules; a new
// seed joins or bootstraps as awaitSeeds finds.
func (n *Node) Open(ctx context.Context) error {
	switch {
	case n.hadState:
		n.logger.Info("restarting with existing raft state", "id", n.cfg.ID)
		if len(n.cfg.Join) > 0 {
			n.wg.Go(func() {
				if err := n.joinCluster(n.ctx); err != nil && n.ctx.Err() == nil {
					n.logger.Warn("re-announcing addresses failed", "err", err)
				}
			})
		}
		return nil
	case len(n.cfg.Join) > 0:
		if n.cfg.Seed {
			exists, err := n.awaitSeeds(ctx)
			if err != nil {
				return fmt.Errorf("seed: %w", err)
			}
			if !exists {
				return n.bootstrap(ctx)
			}
		}
		if err := n.joinCluster(ctx); err != nil {
			return err
		}
		n.joined.Store(true)
		return nil
	default:
		return n.bootstrap(ctx)
	}
}

// awaitSeeds tells a seed without raft state whether its cluster exists.
// It does as soon as one other seed says it belongs to a cluster (knows
// members or has rules). It does not once a majority of the seeds, this
// one included, say they belong to none, as at a cluster's first start.
// Until either, it asks again: a seed that lost its volume while cut off
// from the others must not bootstrap a second cluster beside theirs,
// which may still have its quorum, and two leaders would each hand out
// the whole limit.
func (n *Node) awaitSeeds(ctx context.Context) (exists bool, err error) {
	need := (len(n.cfg.Join) + 1) / 2 // the other seeds that, with this one, make a majority
	for asked := 0; ; asked++ {
		none := 0
		for _, target := range n.cfg.Join {
			callCtx, cancel := context.WithTimeout(ctx, seedProbeTimeout)
			st, err := n.leader.ClusterStatus(callCtx, target)
			cancel()
			switch {
			case err != nil:
			case len(st.Nodes) > 0 || st.RulesVersion > 0:
				n.logger.Warn("seed without raft state, but the cluster exists: joining it rather than bootstrapping a second one", "via", target)
				return true, nil
			default:
				none++
			}
		}
		if none >= need {
			return false, nil
		}
		if asked%seedWaitLogEvery == 0 {
			n.logger.Warn("seed without raft state waits for a majority of the seeds before bootstrapping",
				"seeds_without_cluster", none+1, "seeds", len(n.cfg.Join)+1, "majority", need+1)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(seedProbeInterval):
		}
	}
}

// A seed asks each other seed for at most seedProbeTimeout, asks again
// every seedProbeInterval, and logs its wait every seedWaitLogEvery rounds.
const (
	seedProbeTimeout  = 2 * time.Second
	seedProbeInterval = 500 * time.Millisecond
	seedWaitLogEvery  = 20
)

func (n *Node) bootstrap(ctx context.Context) error {
	n.logger.Info("bootstrapping a new single-node cluster", "id", n.cfg.ID)
	self := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.ID), Address: n.raftAddr}
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{self}}).Error(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// Becoming leader applies the bootstrap rules (see leadershipGained);
	// they count once the rules hook has installed them.
	err := n.waitFor(ctx, "bootstrap", func() bool {
		return n.LeaderHTTPAddr() != "" && n.RulesVersion() > 0
	})
	n.updateMode()
	n.joined.Store(err == nil)
	return err
}

// Close shuts raft down. It hands leadership over first when other voters
// exist, so the cluster does not wait out an election timeout. Membership is
// kept: a restarted node rejoins with its state.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	if n.IsLeader() && n.voters() > 1 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.logger.Warn("leadership transfer before shutdown failed", "err", err)
		}
	}
	n.cancel()
	err := n.raft.Shutdown().Error()
	n.raft.DeregisterObserver(n.observer)
	n.wg.Wait()
	return errors.Join(err, n.stable.close(n.store.Close))
}

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderID returns the leader's node id, or "" when no leader is known.
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// LeaderHTTPAddr returns the leader's HTTP address, or "" when no leader is
// known or its address is not in the member list yet.
func (n *Node) LeaderHTTPAddr() string {
	id := n.LeaderID()
	if id == "" {
		return ""
	}
	if id == n.cfg.ID {
		return n.cfg.HTTPAdvertise
	}
	m, _ := n.fsm.State().Member(id)
	return m.HTTPAddr
}

// WaitForLeader returns once a leader is known, or ctx's error.
func (n *Node) WaitForLeader(ctx context.Context) error {
	return n.waitFor(ctx, "leader", func() bool { return n.LeaderID() != "" })
}

// Ready returns nil once the node has rules and knows a leader (SPEC §5
// /readyz), else an error saying what is missing. A node without a leader
// still decides, on its last rules, and the reason says so.
func (n *Node) Ready() error {
	if n.closed.Load() {
		return errors.New("node is shutting down")
	}
	if len(n.cfg.Join) > 0 && !n.hadState && !n.joined.Load() {
		return errors.New("joining the cluster")
	}
	version := n.RulesVersion()
	if version == 0 {
		return errors.New("no rules received yet")
	}
	if n.LeaderID() == "" {
		return noLeaderError(version)
	}
	return nil
}

// noLeaderError is the reason a node without a leader gives: it decides on.
func noLeaderError(version uint64) error {
	return fmt.Errorf("no leader; deciding on rules version %d", version)
}

// RulesVersion is the version of the newest rules this node knows (0
// before it has any): the rules it decides on.
func (n *Node) RulesVersion() uint64 {
	if r := n.rules.Load(); r != nil {
		return r.Version
	}
	return 0
}

// rulesApplied is the FSM's rules hook. Raft may deliver versions this node
// already installed from its data dir (a restart replays the log after the
// latest snapshot): those are skipped, so the engine never steps back to
// older rules. A newer version is saved first, then installed.
func (n *Node) rulesApplied(version uint64, doc []byte) {
	if cur := n.rules.Load(); cur != nil && version <= cur.Version {
		return
	}
	r := &knownRules{Version: version, Doc: doc}
	if err := saveLastRules(n.cfg.DataDir, r); err != nil {
		// Deciding on the new rules matters more than the copy; a restart
		// before the next save waits for the leader, as without the file.
		n.logger.Error("saving the applied rules failed", "version", version, "err", err)
	}
	n.installRules(r)
}

func (n *Node) installRules(r *knownRules) {
	n.rules.Store(r)
	if n.cfg.OnRules != nil {
		n.cfg.OnRules(r.Version, r.Doc)
	}
}

// Stats is what the metrics need from raft.
type Stats struct {
	IsLeader bool
	// HasLeader: this node knows a leader (false: it decides on its last
	// rules without one).
	HasLeader bool
	// Peers counts the servers in the raft configuration, this one included.
	Peers int
	// Voter: this node votes; Voters counts the voting core.
	Voter  bool
	Voters int
}

// Stats returns the node's raft role and cluster size.
func (n *Node) Stats() Stats {
	servers := n.servers()
	self, _ := serverByID(servers, n.cfg.ID)
	return Stats{
		IsLeader: n.IsLeader(), HasLeader: n.LeaderID() != "", Peers: len(servers),
		Voter: self.Suffrage == raft.Voter && self.ID != "", Voters: countVoters(servers),
	}
}

// waitFor polls cond until it holds or ctx ends.
func (n *Node) waitFor(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-n.ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, admin.ErrUnavailable)
		case <-tick.C:
		}
	}
	return nil
}
