package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sluicehq/sluice/api/admin"
)

// Join adds req's node to the cluster and records its addresses: as a
// non-voter once its raft address answers, promoted to voter when it has
// caught up and the voting core has room (membership.go). It is idempotent:
// joining again with the same addresses changes nothing, and joining with a
// changed address updates the member.
func (n *Node) Join(ctx context.Context, req admin.JoinRequest) error {
	if err := validateJoin(req); err != nil {
		return err
	}
	return n.onLeader(ctx,
		func() error { return n.joinLocal(ctx, req) },
		func(ctx context.Context, leader string) error { return n.leader.Join(ctx, leader, req) })
}

// RemoveNode removes a member from raft and from the member list, unless
// that would leave the voters without a quorum (admin.ErrConflict).
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
	req := admin.JoinRequest{NodeID: n.cfg.ID, RaftAddr: string(n.raftAddr), HTTPAddr: n.cfg.HTTPAdvertise, Fresh: !n.hadState}
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
