package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// membershipOf returns the leader's raft configuration and member list.
func membershipOf(n *Node) ([]raft.Server, []fsm.Member) {
	return n.servers(), n.fsm.State().Members()
}

func sameMembership(t *testing.T, n *Node, servers []raft.Server, members []fsm.Member) {
	t.Helper()
	gotServers, gotMembers := membershipOf(n)
	if len(gotServers) != len(servers) || len(gotMembers) != len(members) {
		t.Fatalf("membership changed: servers %v → %v, members %v → %v", servers, gotServers, members, gotMembers)
	}
	for i := range servers {
		if gotServers[i] != servers[i] {
			t.Fatalf("server %d changed: %v → %v", i, servers[i], gotServers[i])
		}
	}
	for i := range members {
		if gotMembers[i] != members[i] {
			t.Fatalf("member %d changed: %v → %v", i, members[i], gotMembers[i])
		}
	}
}

// TestJoinOfUnreachableNodeChangesNothing: a join naming a raft address
// that does not answer the raft handshake — nothing listening, or a port
// that is not raft — is refused before the configuration changes, so a
// single-node cluster keeps its quorum and stays writable.
func TestJoinOfUnreachableNodeChangesNothing(t *testing.T) {
	c := startCluster(t, 1)
	m := c.members[0]
	c.waitRules(1, 2*time.Second)
	servers, members := membershipOf(m.node)
	for _, raftAddr := range []string{closedAddr(t), m.httpAddr()} {
		req := admin.JoinRequest{NodeID: "ghost", RaftAddr: raftAddr, HTTPAddr: "127.0.0.1:9"}
		if err := m.node.Join(bg(), req); !errors.Is(err, admin.ErrUnreachable) {
			t.Fatalf("join of ghost at %s = %v, want ErrUnreachable", raftAddr, err)
		}
		sameMembership(t, m.node, servers, members)
	}
	c.waitRules(c.setRules(m, 4), 2*time.Second)
}

// TestRemovingTheLastVoterIsRefused: removing the only node is a 409
// (ErrConflict) that changes neither raft nor the member list.
func TestRemovingTheLastVoterIsRefused(t *testing.T) {
	c := startCluster(t, 1)
	m := c.members[0]
	c.waitRules(1, 2*time.Second)
	servers, members := membershipOf(m.node)
	if err := m.node.RemoveNode(bg(), m.id); !errors.Is(err, admin.ErrConflict) {
		t.Fatalf("removing the last voter = %v, want ErrConflict", err)
	}
	sameMembership(t, m.node, servers, members)
	c.waitRules(c.setRules(m, 4), 2*time.Second)

	code, body := adminCall(t, m, http.MethodDelete, "/v1/cluster/nodes/"+m.id, "")
	if code != http.StatusConflict || !strings.Contains(body, "last voter") {
		t.Fatalf("DELETE of the only node: %d %s, want 409 naming the last voter", code, body)
	}
	sameMembership(t, m.node, servers, members)
}

// TestRemovalThatCostsTheQuorumIsRefused: with one of three voters down,
// removing a healthy one would leave one answering voter out of two; it is
// refused and nothing changes. Removing the dead one is fine.
func TestRemovalThatCostsTheQuorumIsRefused(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	var down, healthy *member
	for _, m := range c.members {
		switch {
		case m == leader:
		case down == nil:
			down = m
		default:
			healthy = m
		}
	}
	c.waitFor("all three to vote", 10*time.Second, func() bool { return leader.node.voters() == 3 })
	c.stop(down)
	c.waitFor("the leader to notice "+down.id+" is down", 5*time.Second, func() bool {
		return !leader.node.alive(down.id, time.Now())
	})
	servers, members := membershipOf(leader.node)
	for _, via := range []*member{leader, healthy} {
		err := removeRetryingElections(t, via, healthy.id)
		if !errors.Is(err, admin.ErrConflict) || !strings.Contains(err.Error(), "quorum") {
			t.Fatalf("quorum-costing removal via %s = %v, want ErrConflict", via.id, err)
		}
		sameMembership(t, leader.node, servers, members)
	}
	if err := removeRetryingElections(t, healthy, down.id); err != nil {
		t.Fatalf("removing the dead voter: %v", err)
	}
	c.waitRules(c.setRules(healthy, 6), 2*time.Second)
}

// TestJoinEntersAsNonvoterThenVotes: the leader's log shows the joiner
// added as a non-voter first and promoted afterwards, and the join answers
// once the joiner votes.
func TestJoinEntersAsNonvoterThenVotes(t *testing.T) {
	c := startCluster(t, 2)
	leader := c.leader()
	joiner := c.members[1]
	if s, _ := serverByID(leader.node.servers(), joiner.id); s.Suffrage != raft.Voter {
		t.Fatalf("after its join answered, %s is %v, want a voter", joiner.id, s.Suffrage)
	}
	if seen := suffrageHistory(leader, joiner.id); !slices.Equal(seen, []raft.ServerSuffrage{raft.Nonvoter, raft.Voter}) {
		t.Fatalf("%s's suffrage in the leader's configurations: %v, want [Nonvoter Voter]", joiner.id, seen)
	}
}

// suffrageHistory is id's suffrage in each configuration of leader's raft
// log, repeats collapsed.
func suffrageHistory(leader *member, id string) []raft.ServerSuffrage {
	var seen []raft.ServerSuffrage
	first, _ := leader.node.store.FirstIndex()
	last, _ := leader.node.store.LastIndex()
	for i := first; i <= last; i++ {
		var entry raft.Log
		if err := leader.node.store.GetLog(i, &entry); err != nil || entry.Type != raft.LogConfiguration {
			continue
		}
		if s, ok := serverByID(raft.DecodeConfiguration(entry.Data).Servers, id); ok {
			if len(seen) == 0 || seen[len(seen)-1] != s.Suffrage {
				seen = append(seen, s.Suffrage)
			}
		}
	}
	return seen
}

// loseDisk stops m and empties its data dir, as when a node's volume is lost.
func (c *cluster) loseDisk(m *member) (raftAddr string) {
	c.t.Helper()
	raftAddr = string(m.node.raftAddr)
	c.stop(m)
	if err := os.RemoveAll(m.dataDir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(m.dataDir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	return raftAddr
}

// A voter that rejoins with an empty data dir (a lost volume) would grant
// its vote to any candidate: the leader demotes it while it catches up, then
// promotes it again.
func TestVoterRejoiningWithoutStateIsDemotedUntilCaughtUp(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	var lost, other *member
	for _, m := range c.members {
		switch {
		case m == leader:
		case lost == nil:
			lost = m
		default:
			other = m
		}
	}
	c.waitFor(other.id+"'s demand reports on the leader", 10*time.Second, func() bool {
		return leader.node.heardFrom(other.id, time.Now())
	})
	before := suffrageHistory(leader, lost.id)
	addr := c.loseDisk(lost)
	c.start(lost, addr, []string{leader.httpAddr()})
	leader = c.leader()
	want := append(before, raft.Nonvoter, raft.Voter)
	c.waitFor(lost.id+" demoted and a voter again", 15*time.Second, func() bool {
		return slices.Equal(suffrageHistory(leader, lost.id), want)
	})
	c.setRules(leader, 7)
}

// When the other voters could not form a quorum without it, a voter that
// lost its state stays a voter: demoting it would leave a core that can
// never commit again.
func TestVoterRejoiningWithoutStateStaysAVoterWhenItsVoteIsNeeded(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	var followers []*member
	for _, m := range c.members {
		if m != leader {
			followers = append(followers, m)
		}
	}
	lost, down := followers[0], followers[1]
	c.stop(down)
	addr := c.loseDisk(lost)
	c.start(lost, addr, []string{leader.httpAddr()})
	leader = c.leader()
	if s, _ := serverByID(leader.node.servers(), lost.id); s.Suffrage != raft.Voter {
		t.Fatalf("%s after rejoining without state while %s is down: %v, want still a voter", lost.id, down.id, s.Suffrage)
	}
	if seen := suffrageHistory(leader, lost.id); slices.Contains(seen[min(2, len(seen)):], raft.Nonvoter) {
		t.Fatalf("%s's suffrage in the leader's configurations: %v, want no demotion", lost.id, seen)
	}
	c.setRules(leader, 7)
}

// removeRetryingElections removes id through m, retrying while the cluster
// is between leaders (a loaded machine can miss a heartbeat), and returns
// the first other answer.
func removeRetryingElections(t *testing.T, m *member, id string) error {
	t.Helper()
	var err error
	waitFor(t, 5*time.Second, "an answer other than no-leader", func() bool {
		err = m.node.RemoveNode(bg(), id)
		return !errors.Is(err, admin.ErrNoLeader)
	})
	return err
}

// The seed (first in everyone's --join) that lost its volume joins the
// cluster the others still form, rather than bootstrapping a second one.
func TestSeedWithoutStateJoinsTheExistingCluster(t *testing.T) {
	c := startCluster(t, 3)
	seed, others := c.members[0], c.members[1:]
	c.tune = func(m *member, cfg *Config) { cfg.Seed = m == seed }
	addr := c.loseDisk(seed)
	c.start(seed, addr, []string{others[0].httpAddr(), others[1].httpAddr()})
	leader := c.leader()
	c.waitFor(seed.id+" back in the cluster, on its rules", 15*time.Second, func() bool {
		v := seed.node.RulesVersion()
		return seed.node.LeaderID() == leader.id && v > 0 && v == leader.node.RulesVersion()
	})
	if n := len(leader.node.servers()); n != 3 {
		t.Fatalf("the cluster has %d servers after its seed came back without state, want 3", n)
	}
}

// A cluster's first start: the seed and the other two start together; the
// others answer that they belong to no cluster (they are trying to join),
// which with the seed is a majority, so the seed bootstraps and they join.
func TestSeedBootstrapsOnceAMajorityOfSeedsHasNoCluster(t *testing.T) {
	c := &cluster{t: t}
	seed, n2, n3 := c.addMember("n1"), c.addMember("n2"), c.addMember("n3")
	c.tune = func(m *member, cfg *Config) { cfg.Seed = m == seed }
	var opened sync.WaitGroup
	for _, m := range []*member{n2, n3} {
		others := []string{seed.httpAddr(), n2.httpAddr(), n3.httpAddr()}
		others = slices.DeleteFunc(others, func(a string) bool { return a == m.httpAddr() })
		n, err := c.newNode(m, "127.0.0.1:0", others, testToken)
		if err != nil {
			t.Fatal(err)
		}
		opened.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := n.Open(ctx); err != nil {
				t.Errorf("%s: open: %v", m.id, err)
			}
		})
	}
	c.start(seed, "127.0.0.1:0", []string{n2.httpAddr(), n3.httpAddr()})
	opened.Wait()
	c.waitFor("one cluster of three, led by the seed", 10*time.Second, func() bool {
		return seed.node.IsLeader() && len(seed.node.servers()) == 3 &&
			n2.node.LeaderID() == seed.id && n3.node.LeaderID() == seed.id
	})
	c.waitFor("every member ready, the seed included", 5*time.Second, func() bool {
		for _, m := range c.members {
			if m.node.Ready() != nil {
				return false
			}
		}
		return true
	})
}

// A seed without raft state whose fellow seeds do not answer (its volume
// lost while it is cut off from them, and they may still have their
// quorum) bootstraps nothing: it keeps asking until its context ends.
func TestSeedCutOffFromTheOtherSeedsDoesNotBootstrap(t *testing.T) {
	c := &cluster{t: t, tune: func(_ *member, cfg *Config) { cfg.Seed = true }}
	seed := c.addMember("n1")
	n, err := c.newNode(seed, "127.0.0.1:0", []string{closedAddr(t), closedAddr(t)}, testToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*seedProbeInterval+seedProbeTimeout)
	defer cancel()
	if err := n.Open(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open with no other seed answering: %v, want the context's deadline", err)
	}
	if servers := n.servers(); len(servers) != 0 || n.IsLeader() {
		t.Fatalf("the seed bootstrapped (servers %v, leader %v) with no other seed answering", servers, n.IsLeader())
	}
}
