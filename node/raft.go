package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
	"github.com/sluicehq/sluice/transport"
)

// applyTimeout bounds how long a command may wait to enter raft's queue.
const applyTimeout = 5 * time.Second

// snapshotsRetained is how many snapshots stay in DataDir.
const snapshotsRetained = 2

// startRaft opens the bolt store (log and stable store in one file), the
// snapshot store and the transport, all under DataDir, and starts raft.
func (n *Node) startRaft() error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	raftLogger := newRaftLogger(n.cfg.Logger)
	store, err := raftboltdb.NewBoltStore(filepath.Join(n.cfg.DataDir, "raft.db"))
	if err != nil {
		return fmt.Errorf("open raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, snapshotsRetained, raftLogger)
	if err != nil {
		store.Close()
		return fmt.Errorf("open snapshot store: %w", err)
	}
	n.hadState, err = raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return fmt.Errorf("read raft state: %w", err)
	}
	// Before raft starts: restoring its snapshot calls the rules hook,
	// which must see the saved version.
	saved, err := loadLastRules(n.cfg.DataDir, n.hadState)
	if err != nil {
		n.logger.Error("saved rules unusable; waiting for the leader's", "err", err)
	} else if saved != nil {
		n.logger.Info("installing the rules saved at the last apply", "version", saved.Version)
		n.installRules(saved)
	}
	trans, err := transport.NewNetworkTransport(n.cfg.RaftAddr, n.cfg.RaftAdvertise, n.cfg.AdminToken, n.cfg.NodeTLS, n.cfg.Logger, raftLogger)
	if err != nil {
		store.Close()
		return err
	}
	stable := &guardedStable{StableStore: store}
	r, err := raft.NewRaft(n.raftConfig(raftLogger), n.fsm, store, stable, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft, n.store, n.stable, n.trans, n.raftAddr = r, store, stable, trans, trans.LocalAddr()
	events := make(chan raft.Observation, 64)
	n.observer = raft.NewObserver(events, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	n.wg.Go(func() { n.watch(events) })
	return nil
}

func (n *Node) raftConfig(logger hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(n.cfg.ID)
	c.Logger = logger
	t := n.cfg.RaftTimeouts
	if t.Heartbeat > 0 {
		c.HeartbeatTimeout = t.Heartbeat
	}
	if t.Election > 0 {
		c.ElectionTimeout = t.Election
	}
	if t.LeaderLease > 0 {
		c.LeaderLeaseTimeout = t.LeaderLease
	}
	if t.Commit > 0 {
		c.CommitTimeout = t.Commit
	}
	return c
}

// watch follows raft's observations: leadership changes and, while this
// node leads, which followers fail to answer heartbeats.
func (n *Node) watch(events <-chan raft.Observation) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-events:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				n.health.reset()
				if string(d.LeaderID) == n.cfg.ID {
					n.leaderSince.Store(time.Now().UnixNano())
					n.wg.Go(n.leadershipGained)
				}
			case raft.FailedHeartbeatObservation:
				n.health.set(string(d.PeerID), false)
			case raft.ResumedHeartbeatObservation:
				n.health.set(string(d.PeerID), true)
			}
		}
	}
}

// leadershipGained records this node's own addresses in the raft
// configuration and the member list (they may have changed across a
// restart) and applies the bootstrap rules
// if the cluster has none yet.
func (n *Node) leadershipGained() {
	if err := n.raft.Barrier(applyTimeout).Error(); err != nil {
		n.logger.Warn("new leader could not catch up", "err", err)
		return
	}
	if err := n.joinLocal(n.ctx, admin.JoinRequest{NodeID: n.cfg.ID, RaftAddr: string(n.raftAddr), HTTPAddr: n.cfg.HTTPAdvertise}); err != nil {
		n.logger.Warn("recording own addresses failed", "err", err)
		return
	}
	if v, _ := n.fsm.State().Rules(); v == 0 {
		version, err := n.apply(fsm.EncodeSetRules(n.cfg.BootstrapRules))
		if err != nil {
			n.logger.Warn("applying bootstrap rules failed", "err", err)
			return
		}
		n.logger.Info("applied bootstrap rules", "version", version)
	}
}

// apply commits cmd through raft and returns the FSM's answer.
func (n *Node) apply(cmd []byte) (any, error) {
	f := n.raft.Apply(cmd, applyTimeout)
	if err := f.Error(); err != nil {
		return nil, raftError(err)
	}
	return f.Response(), nil
}

// raftError maps raft's errors onto the admin sentinels.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", admin.ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", admin.ErrUnavailable, err)
	}
	return err
}

// servers returns the latest raft configuration, committed or not.
func (n *Node) servers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

func (n *Node) voters() int { return countVoters(n.servers()) }

// unhealthyVoters counts, on the leader, the voters that fail heartbeats: a
// cluster one such voter away from losing its majority. 0 on other nodes,
// which do not see heartbeats.
func (n *Node) unhealthyVoters() int {
	if !n.IsLeader() {
		return 0
	}
	count := 0
	for _, s := range n.servers() {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.ID && !n.health.healthy(string(s.ID)) {
			count++
		}
	}
	return count
}

// peerHealth is the leader's view of which followers answer heartbeats.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]bool
}

func (h *peerHealth) reset() {
	h.mu.Lock()
	h.failing = map[string]bool{}
	h.mu.Unlock()
}

func (h *peerHealth) set(id string, healthy bool) {
	h.mu.Lock()
	if healthy {
		delete(h.failing, id)
	} else {
		h.failing[id] = true
	}
	h.mu.Unlock()
}

func (h *peerHealth) healthy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.failing[id]
}
