package node

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
	"github.com/sluicehq/sluice/transport"
)

// Membership changes that cannot brick the cluster (docs/DESIGN.md,
// Membership): a joining node must answer the raft handshake before the
// configuration changes, enters as a non-voter (which counts for no
// quorum), and becomes a voter only once it has caught up and the voting
// core has room. A change that would leave the voters without a quorum is
// refused. Every change is decided and made under Node.membership, so two
// never decide from the same configuration.

const (
	// probeTimeout bounds the reachability check of a joining node.
	probeTimeout = 3 * time.Second
	// promoteWait bounds how long a join waits for the joiner to catch up
	// and be promoted before it answers; autopilot promotes it later.
	promoteWait = 5 * time.Second
	// caughtUpLag: a non-voter that has applied the log to within this
	// many entries of the leader has caught up (the leader appends a few
	// lease entries per TTL, so a live follower is never far behind).
	caughtUpLag = 64
)

// joinLocal admits req's node and, for another node, waits a while for it
// to become a voter.
func (n *Node) joinLocal(ctx context.Context, req admin.JoinRequest) error {
	if err := n.admit(req); err != nil {
		return err
	}
	if req.NodeID != n.cfg.ID {
		n.promoteWhenCaughtUp(ctx, req.NodeID)
	}
	return nil
}

// admit puts req's node into the configuration (a new node as a
// non-voter) and the member list, probing its raft address first whenever
// the configuration would change. A join that fails leaves no server
// behind.
func (n *Node) admit(req admin.JoinRequest) error {
	n.membership.Lock()
	defer n.membership.Unlock()
	id, addr := raft.ServerID(req.NodeID), raft.ServerAddress(req.RaftAddr)
	self := req.NodeID == n.cfg.ID
	var current *raft.Server
	var takenOver []raft.Server
	for _, s := range n.servers() {
		switch {
		case s.ID == id:
			current = &s
		case s.Address == addr:
			takenOver = append(takenOver, s)
		}
	}
	moved := current != nil && current.Address != addr
	if !self && (current == nil || moved) {
		if err := transport.Probe(n.trans, raft.ServerID(n.cfg.ID), id, addr, probeTimeout); err != nil {
			return fmt.Errorf("%w: %v", admin.ErrUnreachable, err)
		}
	}
	for _, s := range takenOver {
		// A node recreated under a new id at the same address: the old
		// entry can never answer again and would count against quorum.
		n.logger.Info("removing member whose raft address was taken over", "old", s.ID, "new", id, "addr", addr)
		if err := n.remove(string(s.ID)); err != nil {
			return err
		}
	}
	if req.Fresh && !self && current != nil && !moved && current.Suffrage == raft.Voter {
		n.demoteEmptied(req.NodeID)
	}
	added := false
	switch {
	case self && (current == nil || moved):
		// The leader records its own new address in place: removing
		// itself would shut it down.
		if err := n.raft.AddVoter(id, addr, 0, applyTimeout).Error(); err != nil {
			return raftError(err)
		}
	case moved:
		// Re-add instead of letting raft update the address in place:
		// raft v1.7.3's replication reads the peer without the lock that
		// guards that update (a data race). The old address cannot answer,
		// so its vote is lost either way.
		if err := n.raft.RemoveServer(id, 0, applyTimeout).Error(); err != nil {
			return raftError(err)
		}
		fallthrough
	case current == nil:
		// This node may have been alone: it decides at its share before
		// the newcomer can decide at all (lease mode).
		n.joining.Add(1)
		defer n.joining.Add(-1)
		n.updateMode()
		if err := n.raft.AddNonvoter(id, addr, 0, applyTimeout).Error(); err != nil {
			return raftError(err)
		}
		added = true
	}
	m := fsm.Member{ID: req.NodeID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}
	if cur, ok := n.fsm.State().Member(req.NodeID); ok && cur == m {
		return nil
	}
	if _, err := n.apply(fsm.EncodeUpsertMember(m)); err != nil {
		if added {
			n.raft.RemoveServer(id, 0, applyTimeout)
		}
		return err
	}
	n.logger.Info("member joined", "id", m.ID, "raft_addr", m.RaftAddr, "http_addr", m.HTTPAddr)
	return nil
}

// demoteEmptied makes voter id, which rejoined without its raft state (a
// lost disk, a new volume), a non-voter until it has caught up and is
// promoted again: with an empty log it would grant its vote to any
// candidate, and a leader elected so could lack entries the cluster had
// committed. If the other voters could not form a quorum without it, it
// stays a voter, so the cluster stays available, and the leader warns. The
// caller holds n.membership.
//
// Demoting needs more than quorumWithout's judgement, which gives every
// member the benefit of the doubt for a while after an election: a voter
// that lost its disk is often part of the event that made the leader, and a
// wrong guess would leave a voting core that can never commit again. So
// every other voter must have been heard from lately, by heartbeats and by
// its own demand reports, and must answer a probe now.
func (n *Node) demoteEmptied(id string) {
	now := time.Now()
	for _, s := range n.servers() {
		other := string(s.ID)
		if s.Suffrage != raft.Voter || other == id || other == n.cfg.ID {
			continue
		}
		// Reports lag a death by a few periods; the probe asks the voter
		// now, through the raft transport.
		if !n.heardFrom(other, now) || transport.Probe(n.trans, raft.ServerID(n.cfg.ID), s.ID, s.Address, probeTimeout) != nil {
			n.logger.Warn("voter rejoined without its raft state; left a voter, since another voter is not heard from", "id", id, "unheard", other)
			return
		}
	}
	if err := n.demote(id); err != nil {
		n.logger.Warn("voter rejoined without its raft state; left a voter, since demoting it would cost the quorum", "id", id, "err", err)
		return
	}
	n.logger.Info("voter rejoined without its raft state; demoted until it has caught up", "id", id)
}

// removeLocal removes member id unless that would cost the quorum.
func (n *Node) removeLocal(id string) error {
	n.membership.Lock()
	defer n.membership.Unlock()
	if s, ok := serverByID(n.servers(), id); ok && s.Suffrage == raft.Voter {
		if err := n.quorumWithout(id); err != nil {
			return err
		}
	}
	return n.remove(id)
}

// remove drops the member first and the raft server second, so a leader
// removing itself still commits the member change before it steps down; if
// the raft change fails, the member is put back. The caller holds
// n.membership and has judged the quorum.
func (n *Node) remove(id string) error {
	m, isMember := n.fsm.State().Member(id)
	_, inRaft := serverByID(n.servers(), id)
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
			if isMember {
				n.apply(fsm.EncodeUpsertMember(m))
			}
			return raftError(err)
		}
	}
	n.logger.Info("member removed", "id", id)
	return nil
}

// quorumWithout returns admin.ErrConflict when the voters other than id
// could not form a quorum among those the leader hears from.
func (n *Node) quorumWithout(id string) error {
	now := time.Now()
	voters, alive := 0, 0
	for _, s := range n.servers() {
		if s.Suffrage != raft.Voter || string(s.ID) == id {
			continue
		}
		voters++
		if n.alive(string(s.ID), now) {
			alive++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: %s is the last voter; without it the cluster could never decide again", admin.ErrConflict, id)
	}
	if quorum := voters/2 + 1; alive < quorum {
		return fmt.Errorf("%w: without %s only %d of the other %d voters answer, short of their quorum of %d",
			admin.ErrConflict, id, alive, voters, quorum)
	}
	return nil
}

// alive reports whether the leader hears from member id: it answers raft
// heartbeats and has sent a demand report lately (a new leader gives every
// member one staleness period to report).
func (n *Node) alive(id string, now time.Time) bool {
	if id == n.cfg.ID {
		return true
	}
	led := time.Unix(0, n.leaderSince.Load())
	return n.heardFrom(id, now) || (n.health.healthy(id) && now.Sub(led) <= staleReports*n.reportEvery())
}

// heardFrom is alive without the benefit of the doubt after an election:
// id answers heartbeats and its last demand report is recent.
func (n *Node) heardFrom(id string, now time.Time) bool {
	return n.health.healthy(id) && now.Sub(n.demand.lastHeard(id)) <= staleReports*n.reportEvery()
}

// promoteWhenCaughtUp tries to promote non-voter id until it is a voter,
// the core is full, promoteWait has passed or ctx ends.
func (n *Node) promoteWhenCaughtUp(ctx context.Context, id string) {
	deadline := time.NewTimer(promoteWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !n.tryPromote(id) {
		select {
		case <-ctx.Done():
			return
		case <-n.ctx.Done():
			return
		case <-deadline.C:
			n.logger.Info("joined as non-voter; autopilot promotes it once it catches up", "id", id)
			return
		case <-tick.C:
		}
	}
}

// tryPromote makes non-voter id a voter if it has caught up and the core
// has room. It returns true when there is nothing left to wait for: id
// votes, is gone, the core is full, or this node no longer leads.
func (n *Node) tryPromote(id string) bool {
	n.membership.Lock()
	defer n.membership.Unlock()
	return !n.IsLeader() || n.promoteLocked(id)
}

// promoteLocked is tryPromote for a caller holding n.membership.
func (n *Node) promoteLocked(id string) bool {
	servers := n.servers()
	s, ok := serverByID(servers, id)
	if !ok || s.Suffrage == raft.Voter || countVoters(servers) >= n.coreSize(len(servers)) {
		return true
	}
	if now := time.Now(); !n.caughtUp(id, now) || n.leaving(id, now) {
		return false
	}
	if err := n.raft.AddVoter(s.ID, s.Address, 0, applyTimeout).Error(); err != nil {
		n.logger.Warn("promoting non-voter failed", "id", id, "err", err)
		return false
	}
	n.logger.Info("promoted non-voter to voter", "id", id)
	return true
}

// caughtUp reports whether id has lately reported an applied index near
// the leader's.
func (n *Node) caughtUp(id string, now time.Time) bool {
	applied, at := n.demand.progress(id)
	return now.Sub(at) <= staleReports*n.reportEvery() && applied+caughtUpLag >= n.raft.AppliedIndex()
}

// coreSize is how many voters a cluster of members servers should have:
// Config.Voters, or in auto mode 3 below five members and 5 from five on,
// never more than there are members.
func (n *Node) coreSize(members int) int {
	want := n.cfg.Voters
	if want == 0 {
		want = 3
		if members >= 5 {
			want = 5
		}
	}
	return min(want, members)
}

func serverByID(servers []raft.Server, id string) (raft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

func countVoters(servers []raft.Server) int {
	count := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			count++
		}
	}
	return count
}
