package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
)

// Autopilot is the leader's membership housekeeping (after Consul's): it
// keeps the voting core at its size (coreSize) with members it hears from,
// so that an autoscaled fleet needs no admin calls. Once a second the
// leader
//   - removes members unheard for longer than Config.RemoveAfter,
//   - moves the vote of a voter unheard for longer than Config.VoterGrace
//     to a caught-up non-voter (demote, then promote),
//   - promotes caught-up non-voters while the core is below its size, and
//   - demotes voters beyond it (the fleet shrank below five members).
//
// Every step is a single-server change checked by quorumWithout, so none
// can cost the quorum.

// Autopilot defaults (--autopilot-voter-grace, --autopilot-remove-after).
const (
	DefaultVoterGrace  = 10 * time.Second
	DefaultRemoveAfter = 5 * time.Minute
)

// autopilotEvery is how often the leader looks over the membership.
const autopilotEvery = time.Second

// unheard tracks, on the leader, since when each member has not been heard
// from (alive). It is reset when leadership changes hands.
type unheard struct {
	leaderSince int64
	since       map[string]time.Time
}

func (n *Node) runAutopilot() {
	tick := time.NewTicker(autopilotEvery)
	defer tick.Stop()
	var u unheard
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
			if n.IsLeader() {
				n.autopilot(&u, time.Now())
			}
		}
	}
}

func (n *Node) autopilot(u *unheard, now time.Time) {
	n.membership.Lock()
	defer n.membership.Unlock()
	if since := n.leaderSince.Load(); u.since == nil || u.leaderSince != since {
		u.leaderSince, u.since = since, map[string]time.Time{}
	}
	ids := map[string]bool{}
	for _, s := range n.servers() {
		ids[string(s.ID)] = true
	}
	for _, m := range n.fsm.State().Members() {
		ids[m.ID] = true
	}
	for id := range ids {
		switch _, seen := u.since[id]; {
		case n.alive(id, now):
			delete(u.since, id)
		case !seen:
			u.since[id] = now
		}
	}
	gone := func(id string, after time.Duration) bool {
		t, ok := u.since[id]
		return ok && now.Sub(t) > after
	}
	for _, id := range sortedKeys(u.since) {
		if gone(id, n.removeAfter()) {
			n.autoRemove(id)
		}
	}
	for _, s := range n.servers() {
		if s.Suffrage == raft.Voter && gone(string(s.ID), n.voterGrace()) {
			n.replaceVoter(string(s.ID), now, "unheard")
		}
	}
	n.fillCore(now)
	n.trimCore(u)
}

func (n *Node) voterGrace() time.Duration { return cmp.Or(n.cfg.VoterGrace, DefaultVoterGrace) }

func (n *Node) removeAfter() time.Duration { return cmp.Or(n.cfg.RemoveAfter, DefaultRemoveAfter) }

// autoRemove removes a member gone for good, unless that costs the quorum.
func (n *Node) autoRemove(id string) {
	if s, ok := serverByID(n.servers(), id); ok && s.Suffrage == raft.Voter {
		if err := n.quorumWithout(id); err != nil {
			n.logger.Warn("autopilot keeps an unheard voter", "id", id, "err", err)
			return
		}
	}
	if err := n.remove(id); err != nil {
		n.logger.Warn("autopilot could not remove an unheard member", "id", id, "err", err)
		return
	}
	n.logger.Info("autopilot removed a member unheard for longer than the threshold", "id", id, "after", n.removeAfter())
}

// replaceVoter gives voter id's vote to heir, a caught-up non-voter the
// leader hears from, and reports whether it did. reason ("unheard",
// "leaving") goes to the log, where operators see why the core changed.
func (n *Node) replaceVoter(id string, now time.Time, reason string) bool {
	heir, _ := n.heir(now)
	if heir == "" {
		return false
	}
	if err := n.demote(id); err != nil {
		n.logger.Warn("autopilot could not demote a voter", "id", id, "err", err)
		return false
	}
	n.logger.Info("vote moved", "from", id, "to", heir, "reason", reason)
	n.promoteLocked(heir)
	return true
}

// heir returns the first caught-up non-voter the leader hears from, and
// whether some other non-voter it hears from may catch up yet.
func (n *Node) heir(now time.Time) (id string, pending bool) {
	for _, s := range n.servers() {
		if s.Suffrage == raft.Voter || !n.alive(string(s.ID), now) || n.leaving(string(s.ID), now) {
			continue
		}
		if n.caughtUp(string(s.ID), now) {
			return string(s.ID), false
		}
		pending = true
	}
	return "", pending
}

// fillCore promotes caught-up non-voters, in id order, while the core is
// below its size.
func (n *Node) fillCore(now time.Time) {
	var nonvoters []string
	for _, s := range n.servers() {
		if s.Suffrage != raft.Voter && n.alive(string(s.ID), now) {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	slices.Sort(nonvoters)
	for _, id := range nonvoters {
		n.promoteLocked(id)
	}
}

// trimCore demotes voters beyond the core's size: unheard ones first, then
// the highest ids, never this node.
func (n *Node) trimCore(u *unheard) {
	servers := n.servers()
	excess := countVoters(servers) - n.coreSize(len(servers))
	if excess <= 0 {
		return
	}
	var candidates []string
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.ID {
			candidates = append(candidates, string(s.ID))
		}
	}
	slices.SortFunc(candidates, func(a, b string) int {
		_, downA := u.since[a]
		_, downB := u.since[b]
		if downA != downB {
			if downA {
				return -1
			}
			return 1
		}
		return -strings.Compare(a, b)
	})
	for _, id := range candidates[:min(excess, len(candidates))] {
		if err := n.demote(id); err != nil {
			n.logger.Warn("autopilot could not shrink the core", "id", id, "err", err)
			return
		}
		n.logger.Info("autopilot demoted a voter beyond the core size", "id", id, "core", n.coreSize(len(servers)))
	}
}

// demote makes voter id a non-voter, unless that costs the quorum. The
// caller holds n.membership.
func (n *Node) demote(id string) error {
	if err := n.quorumWithout(id); err != nil {
		return err
	}
	if err := n.raft.DemoteVoter(raft.ServerID(id), 0, applyTimeout).Error(); err != nil {
		return raftError(err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// HandOver gives voter id's vote to a caught-up non-voter the leader hears
// from, before id shuts down; a follower passes the call to the leader
// (admin.HandOverReceiver). Without such a non-voter — a cluster whose
// members all vote — id keeps its vote: demoting it would only shrink the
// core, and a restarted id comes back as a voter.
func (n *Node) HandOver(ctx context.Context, id string) error {
	return n.onLeader(ctx,
		func() error {
			n.membership.Lock()
			defer n.membership.Unlock()
			s, ok := serverByID(n.servers(), id)
			if !ok {
				return nil // not a member: nothing to hand over, nothing to remember
			}
			now := time.Now()
			for other := range n.left {
				if !n.leaving(other, now) {
					delete(n.left, other) // only members, and only lately: n.left stays small
				}
			}
			n.left[id] = now
			if s.Suffrage != raft.Voter {
				return nil
			}
			if id == n.cfg.ID && n.voters() > 1 {
				// A leader hands leadership over first (Leave retries).
				return fmt.Errorf("%w: the leader hands over leadership before its vote", admin.ErrUnavailable)
			}
			if !n.replaceVoter(id, time.Now(), "leaving") {
				if _, pending := n.heir(time.Now()); pending {
					return fmt.Errorf("%w: no non-voter has caught up to take the vote yet", admin.ErrUnavailable)
				}
			}
			return nil
		},
		func(ctx context.Context, leader string) error { return n.leader.HandOver(ctx, leader, id) })
}

// leaving reports whether id asked to hand over lately: it is about to
// stop, though the leader may still hear from it, so it must not be given
// a vote. The caller holds n.membership.
func (n *Node) leaving(id string, now time.Time) bool {
	at, ok := n.left[id]
	return ok && now.Sub(at) < 2*staleReports*n.reportEvery()
}

// Leave prepares a graceful shutdown (SIGTERM): a leader hands leadership
// to another voter, and a voter hands its vote over (HandOver). It retries
// while the cluster is between leaders, until ctx ends. The node stays a
// member; one that does not come back is removed after Config.RemoveAfter.
func (n *Node) Leave(ctx context.Context) error {
	for {
		if n.IsLeader() && n.voters() > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.logger.Warn("leadership transfer before leaving failed", "err", err)
			}
		}
		if s, ok := serverByID(n.servers(), n.cfg.ID); !ok || s.Suffrage != raft.Voter {
			return nil
		}
		err := n.HandOver(ctx, n.cfg.ID)
		if err == nil || !(errors.Is(err, admin.ErrNoLeader) || errors.Is(err, admin.ErrUnavailable)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("handing over the vote: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
