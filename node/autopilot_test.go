package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// suffrages returns id → voter for the leader's configuration.
func suffrages(n *Node) map[string]bool {
	out := map[string]bool{}
	for _, s := range n.servers() {
		out[string(s.ID)] = s.Suffrage == raft.Voter
	}
	return out
}

// TestVotingCoreKeepsItsSize: in auto mode four members make three voters
// and a non-voter that has caught up (and so could be promoted) stays one;
// the fifth member grows the core to five.
func TestVotingCoreKeepsItsSize(t *testing.T) {
	c := startCluster(t, 4)
	fourth := c.members[3]
	c.waitFor(fourth.id+" to catch up", 10*time.Second, func() bool { return c.leader().node.caughtUp(fourth.id, time.Now()) })
	time.Sleep(2 * autopilotEvery) // autopilot rounds that must not promote it
	leader := c.leader()
	if got := suffrages(leader.node); len(got) != 4 || got[fourth.id] || leader.node.voters() != 3 {
		t.Fatalf("four members: %v, want three voters and %s a non-voter", got, fourth.id)
	}
	if st := fourth.node.Stats(); st.Voter || st.Voters != 3 {
		t.Fatalf("%s own view: %+v", fourth.id, st)
	}

	fifth := c.addMember("n5")
	c.start(fifth, "127.0.0.1:0", []string{leader.httpAddr()})
	c.waitFor("five voters", 10*time.Second, func() bool { return leader.node.voters() == 5 })
}

// TestAutopilotReplacesADeadVoterAndRemovesIt: a voter unheard for longer
// than the grace gives its vote to the caught-up non-voter, and once
// unheard for longer than the removal threshold it leaves the membership;
// the cluster stays writable throughout.
func TestAutopilotReplacesADeadVoterAndRemovesIt(t *testing.T) {
	c := startTunedCluster(t, 4, func(_ *member, cfg *Config) {
		cfg.VoterGrace, cfg.RemoveAfter = time.Second, 4*time.Second
	})
	leader := c.leader()
	heir := c.members[3]
	var dead *member
	for _, m := range c.members[:3] {
		if m != leader {
			dead = m
			break
		}
	}
	c.waitFor("three voters", 10*time.Second, func() bool { return leader.node.voters() == 3 })
	c.stop(dead)
	c.waitFor(heir.id+" to vote in place of "+dead.id, 15*time.Second, func() bool {
		got := suffrages(c.leader().node)
		return got[heir.id] && !got[dead.id] && len(got) == 4
	})
	c.waitFor(dead.id+" to be removed", 15*time.Second, func() bool {
		l := c.leader().node
		_, inRaft := suffrages(l)[dead.id]
		_, isMember := l.fsm.State().Member(dead.id)
		return !inRaft && !isMember
	})
	c.waitRules(c.setRules(heir, 8), 3*time.Second)
}

// TestLeaveHandsOverTheVote: a leaving voter — the leader too — gives its
// vote to the non-voter before it stops; with no non-voter to take it, a
// voter keeps its vote.
func TestLeaveHandsOverTheVote(t *testing.T) {
	c := startCluster(t, 4)
	heir := c.members[3]
	c.waitFor(heir.id+" to catch up", 10*time.Second, func() bool { return c.leader().node.caughtUp(heir.id, time.Now()) })
	leader := c.leader()
	if err := leader.node.Leave(bg()); err != nil {
		t.Fatalf("leader leaving: %v", err)
	}
	next := c.leader()
	if next == leader {
		t.Fatalf("%s still leads after leaving", leader.id)
	}
	got := suffrages(next.node)
	if got[leader.id] || !got[heir.id] || next.node.voters() != 3 {
		t.Fatalf("after %s left: %v, want it a non-voter and %s a voter", leader.id, got, heir.id)
	}
	c.stop(leader)

	// No non-voter is left to take a vote: a leaving voter keeps it.
	var voter *member
	for _, m := range c.running() {
		if m != next && got[m.id] {
			voter = m
		}
	}
	if err := voter.node.Leave(bg()); err != nil {
		t.Fatalf("%s leaving: %v", voter.id, err)
	}
	if !suffrages(next.node)[voter.id] {
		t.Fatalf("%s lost its vote with nobody to take it: %v", voter.id, suffrages(next.node))
	}
	c.waitRules(c.setRules(voter, 9), 3*time.Second)
}

// TestHandOverRemembersOnlyMembers: hand-over requests naming nodes that
// are not members change nothing and leave no trace, so the leader's memory
// of leaving nodes is bounded by the membership whatever callers send.
func TestHandOverRemembersOnlyMembers(t *testing.T) {
	c := startCluster(t, 1)
	leader := c.leader()
	for i := range 100 {
		if err := leader.node.HandOver(bg(), fmt.Sprintf("ghost-%d", i)); err != nil {
			t.Fatalf("hand-over of a non-member: %v", err)
		}
	}
	leader.node.membership.Lock()
	n := len(leader.node.left)
	leader.node.membership.Unlock()
	if n != 0 {
		t.Fatalf("the leader remembers %d leaving nodes after hand-overs of non-members, want 0", n)
	}
}
