package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
)

// Join adds req's node to the cluster as a voter and records its addresses.
// It is idempotent: joining again with the same addresses changes nothing,
// and joining with a changed address updates the member.
func (n *Node) Join(ctx context.Context, req admin.JoinRequest) error {
	if err := validateJoin(req); err != nil {
		return err
	}
	return n.onLeader(ctx,
		func() error { return n.joinLocal(req) },
		func(ctx context.Context, leader string) error { return n.leader.Join(ctx, leader, req) })
}

// RemoveNode removes a member from raft and from the member list.
func (n *Node) RemoveNode(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: node id is required", admin.ErrInvalid)
	}
	return n.onLeader(ctx,
		func() error { return n.removeLocal(id) },
		func(ctx context.Context, leader string) error { return n.leader.RemoveNode(ctx, leader, id) })
}

func validateJoin(req admin.JoinRequest) error {
	if req.NodeID == "" {
		return fmt.Errorf("%w: node_id is required", admin.ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return fmt.Errorf("%w: raft_addr: %v", admin.ErrInvalid, err)
	}
	if _, _, err := net.SplitHostPort(req.HTTPAddr); err != nil {
		return fmt.Errorf("%w: http_addr: %v", admin.ErrInvalid, err)
	}
	return nil
}

// onLeader runs local when this node leads, else forward with the leader's
// HTTP address and a context marked as forwarded (admin.ForwardedHeader). A
// call that reached this node forwarded already is not forwarded again: it
// fails with admin.ErrNoLeader, and the caller retries once the election
// has settled.
func (n *Node) onLeader(ctx context.Context, local func() error, forward func(ctx context.Context, leaderHTTP string) error) error {
	if n.closed.Load() {
		return fmt.Errorf("%w: node is shutting down", admin.ErrUnavailable)
	}
	if n.IsLeader() {
		return local()
	}
	if admin.IsForwarded(ctx) {
		return fmt.Errorf("%w: the call was forwarded here, but this node no longer leads", admin.ErrNoLeader)
	}
	leader := n.LeaderHTTPAddr()
	if leader == "" {
		return admin.ErrNoLeader
	}
	return forward(admin.WithForwarded(ctx), leader)
}

func (n *Node) joinLocal(req admin.JoinRequest) error {
	id, addr := raft.ServerID(req.NodeID), raft.ServerAddress(req.RaftAddr)
	isVoter := false
	for _, s := range n.servers() {
		switch {
		case s.ID == id && s.Address == addr:
			isVoter = s.Suffrage == raft.Voter
		case s.ID == id && string(id) != n.cfg.ID:
			// The node moved. Re-add it instead of letting AddVoter update
			// the address in place: raft v1.7.3's replication reads the
			// peer without the lock that guards that update (a data race).
			// The leader itself has no replication to race with, and
			// removing itself would shut it down, so it updates in place.
			if err := n.raft.RemoveServer(id, 0, applyTimeout).Error(); err != nil {
				return raftError(err)
			}
		case s.Address == addr:
			// A node recreated under a new id at the same address: the old
			// entry can never answer again and would count against quorum.
			n.logger.Info("removing member whose raft address was taken over", "old", s.ID, "new", id, "addr", addr)
			if err := n.removeLocal(string(s.ID)); err != nil {
				return err
			}
		}
	}
	if !isVoter {
		if string(id) != n.cfg.ID {
			// This node may have been alone: it decides at its share
			// before the newcomer can decide at all.
			n.joining.Add(1)
			defer n.joining.Add(-1)
			n.updateMode()
		}
		if err := n.raft.AddVoter(id, addr, 0, applyTimeout).Error(); err != nil {
			return raftError(err)
		}
	}
	m := fsm.Member{ID: req.NodeID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}
	if cur, ok := n.fsm.State().Member(req.NodeID); ok && cur == m {
		return nil
	}
	if _, err := n.apply(fsm.EncodeUpsertMember(m)); err != nil {
		return err
	}
	n.logger.Info("member joined", "id", m.ID, "raft_addr", m.RaftAddr, "http_addr", m.HTTPAddr)
	return nil
}

// removeLocal drops the member first and the raft server second, so a
// leader removing itself still commits the member change before it steps
// down.
func (n *Node) removeLocal(id string) error {
	_, isMember := n.fsm.State().Member(id)
	inRaft := false
	for _, s := range n.servers() {
		inRaft = inRaft || string(s.ID) == id
	}
	if !isMember && !inRaft {
		return fmt.Errorf("%w: %s", admin.ErrUnknownNode, id)
	}
	if isMember {
		if _, err := n.apply(fsm.EncodeRemoveMember(id)); err != nil {
			return err
		}
	}
	if inRaft {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, applyTimeout).Error(); err != nil {
			return raftError(err)
		}
	}
	n.logger.Info("member removed", "id", id)
	return nil
}

// Join retry delays: a cluster being started together needs a moment to
// elect the leader the joiner must reach.
const (
	joinFirstBackoff = 100 * time.Millisecond
	joinMaxBackoff   = 5 * time.Second
)

// joinCluster asks each Join target in turn to add this node, until one
// accepts or ctx ends. A follower target forwards to its leader. A request
// the cluster refuses as invalid or unauthorized is not retried.
func (n *Node) joinCluster(ctx context.Context) error {
	req := admin.JoinRequest{NodeID: n.cfg.ID, RaftAddr: string(n.raftAddr), HTTPAddr: n.cfg.HTTPAdvertise}
	backoff := joinFirstBackoff
	for {
		var lastErr error
		for _, target := range n.cfg.Join {
			callCtx, cancel := context.WithTimeout(ctx, forwardTimeout)
			err := n.leader.Join(callCtx, target, req)
			cancel()
			if err == nil {
				n.logger.Info("joined cluster", "via", target)
				return nil
			}
			if errors.Is(err, admin.ErrInvalid) || errors.Is(err, admin.ErrUnauthorized) {
				return fmt.Errorf("join via %s refused: %w", target, err)
			}
			n.logger.Debug("join attempt failed", "target", target, "err", err)
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %v: %w (last error: %v)", n.cfg.Join, ctx.Err(), lastErr)
		case <-n.ctx.Done():
			return fmt.Errorf("join: %w: node closed", admin.ErrUnavailable)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, joinMaxBackoff)
	}
}
