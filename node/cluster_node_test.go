package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

func bg() context.Context { return context.Background() }

func TestThreeNodesReplicateRulesForwardedFromFollower(t *testing.T) {
	c := startCluster(t, 3)
	c.waitRules(1, time.Second)

	f := c.follower()
	v := c.setRules(f, 42)
	if v < 2 {
		t.Fatalf("SetRules on follower %s returned version %d", f.id, v)
	}
	c.waitRules(v, time.Second)
	for _, m := range c.members {
		doc, err := m.node.Rules(bg())
		if err != nil || doc.Version != v || !strings.Contains(string(doc.Rules), `"rate":42`) || doc.Rules[0] != '[' {
			t.Fatalf("%s Rules() = %d %s, %v", m.id, doc.Version, doc.Rules, err)
		}
		if err := m.node.Ready(); err != nil {
			t.Fatalf("%s not ready: %v", m.id, err)
		}
	}
}

func TestClusterStatusAndHealth(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	for _, m := range c.members {
		st, err := m.node.ClusterStatus(bg())
		if err != nil || st.Leader != leader.id || st.Term == 0 || len(st.Nodes) != 3 {
			t.Fatalf("%s ClusterStatus = %+v, %v", m.id, st, err)
		}
		for i, ns := range st.Nodes {
			want := c.members[i]
			if ns.ID != want.id || ns.HTTPAddr != want.httpAddr() || ns.RaftAddr != string(want.node.raftAddr) ||
				!ns.Voter || !ns.Healthy || (ns.State == "leader") != (ns.ID == leader.id) {
				t.Fatalf("%s sees node %+v", m.id, ns)
			}
		}
	}
	if s := leader.node.Stats(); !s.IsLeader || s.Peers != 3 {
		t.Fatalf("leader Stats = %+v", s)
	}

	down := c.follower()
	c.stop(down)
	c.waitFor("the leader to see "+down.id+" unhealthy", 3*time.Second, func() bool {
		st, _ := leader.node.ClusterStatus(bg())
		for _, ns := range st.Nodes {
			if ns.ID == down.id {
				return !ns.Healthy
			}
		}
		return false
	})
	// A follower reports the leader's view.
	other := c.follower()
	st, err := other.node.ClusterStatus(bg())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range st.Nodes {
		if ns.Healthy == (ns.ID == down.id) {
			t.Fatalf("follower %s reports %+v", other.id, ns)
		}
	}
}

func TestFiveNodesSurviveLeaderLoss(t *testing.T) {
	c := startCluster(t, 5)
	old := c.leader()
	oldTerm := old.node.raft.CurrentTerm()
	c.stop(old)

	next := c.leader()
	if next == old || next.node.raft.CurrentTerm() <= oldTerm {
		t.Fatalf("no re-election: leader %s term %d (was %s term %d)", next.id, next.node.raft.CurrentTerm(), old.id, oldTerm)
	}
	c.waitFor("followers to learn the new leader's address", 3*time.Second, func() bool {
		for _, m := range c.running() {
			if m.node.LeaderHTTPAddr() != next.httpAddr() {
				return false
			}
		}
		return true
	})
	v := c.setRules(c.follower(), 7)
	c.waitRules(v, time.Second)

	c.start(old, string(old.node.raftAddr), nil)
	c.waitFor("the old leader to catch up", 3*time.Second, func() bool { return old.rules.latest() == v })
}

func TestJoinIsIdempotentAndUpdatesAddresses(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	f := c.follower()
	same := admin.JoinRequest{NodeID: f.id, RaftAddr: string(f.node.raftAddr), HTTPAddr: f.httpAddr()}
	before := leader.node.raft.LastIndex()
	for _, via := range c.members {
		if err := via.node.Join(bg(), same); err != nil {
			t.Fatalf("re-join via %s: %v", via.id, err)
		}
	}
	if after := leader.node.raft.LastIndex(); after != before {
		t.Fatalf("idempotent joins appended %d log entries", after-before)
	}

	// The follower comes back on a new raft address and re-announces itself.
	oldAddr := f.node.raftAddr
	c.stop(f)
	c.start(f, "127.0.0.1:0", []string{leader.httpAddr()})
	if f.node.raftAddr == oldAddr {
		t.Fatal("restart kept the old address; the test proves nothing")
	}
	c.waitFor("the leader to use the new address", 3*time.Second, func() bool {
		for _, s := range leader.node.servers() {
			if string(s.ID) == f.id {
				m, _ := leader.node.fsm.State().Member(f.id)
				return s.Address == f.node.raftAddr && m.RaftAddr == string(f.node.raftAddr)
			}
		}
		return false
	})
	if n := len(leader.node.servers()); n != 3 {
		t.Fatalf("servers after address change = %d, want 3", n)
	}
	c.waitRules(c.setRules(leader, 9), 2*time.Second)
}

func TestJoinTakesOverAddressOfDeadMember(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	f := c.follower()
	addr := string(f.node.raftAddr)
	c.stop(f)

	// A fresh node with a new id and an empty data dir on the same address.
	fresh := c.addMember("n9")
	c.start(fresh, addr, []string{leader.httpAddr()})
	c.waitFor("n9 to replace "+f.id, 3*time.Second, func() bool {
		ids := []string{}
		for _, s := range leader.node.servers() {
			ids = append(ids, string(s.ID))
		}
		_, stale := leader.node.fsm.State().Member(f.id)
		return len(ids) == 3 && slices.Contains(ids, "n9") && !slices.Contains(ids, f.id) && !stale
	})
	c.waitFor("n9 to receive the rules", 3*time.Second, func() bool { return fresh.rules.latest() == 1 })
}

func TestRemoveNode(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	victim := c.follower()
	var via *member
	for _, m := range c.members {
		if m != leader && m != victim {
			via = m
		}
	}
	if err := via.node.RemoveNode(bg(), victim.id); err != nil {
		t.Fatalf("RemoveNode via follower: %v", err)
	}
	st, err := leader.node.ClusterStatus(bg())
	if err != nil || len(st.Nodes) != 2 {
		t.Fatalf("status after remove = %+v, %v", st, err)
	}
	if _, ok := leader.node.fsm.State().Member(victim.id); ok {
		t.Fatal("removed node still in the member list")
	}
	for _, m := range []*member{leader, via} {
		if err := m.node.RemoveNode(bg(), victim.id); !errors.Is(err, admin.ErrUnknownNode) {
			t.Fatalf("second remove via %s = %v, want ErrUnknownNode", m.id, err)
		}
		if err := m.node.RemoveNode(bg(), "nobody"); !errors.Is(err, admin.ErrUnknownNode) {
			t.Fatalf("remove unknown via %s = %v, want ErrUnknownNode", m.id, err)
		}
	}
	// The two remaining nodes still form a working cluster.
	v := c.setRules(via, 3)
	c.waitFor("rules on the remaining nodes", time.Second, func() bool {
		return leader.rules.latest() == v && via.rules.latest() == v
	})
}

func TestSnapshotAndRestart(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	var v uint64
	for rate := 2; rate <= 4; rate++ {
		v = c.setRules(leader, rate)
	}
	c.waitRules(v, time.Second)
	f := c.follower()
	for _, m := range []*member{leader, f} {
		if err := m.node.raft.Snapshot().Error(); err != nil {
			t.Fatalf("%s snapshot: %v", m.id, err)
		}
	}
	c.restart(f, nil)
	// Restored from the snapshot: the first rules it hears of are the latest.
	c.waitFor(f.id+" to restore its rules", 3*time.Second, func() bool { return f.rules.latest() == v })
	if got := f.rules.all(); got[0] != v {
		t.Fatalf("restarted node replayed rules %v instead of restoring the snapshot", got)
	}
	if ms := f.node.fsm.State().Members(); len(ms) != 3 {
		t.Fatalf("members after restore = %v", ms)
	}
	c.waitRules(c.setRules(f, 5), time.Second)
}

func TestEveryNodeRestartsWithRulesIntact(t *testing.T) {
	c := startCluster(t, 3)
	v := c.setRules(c.follower(), 11)
	c.waitRules(v, time.Second)
	addrs := map[*member]string{}
	for _, m := range c.members {
		addrs[m] = string(m.node.raftAddr)
		c.stop(m)
	}
	// Restart concurrently: each node needs a quorum to elect a leader, and
	// the one given --join re-announces itself in the background.
	done := make(chan error, len(c.members))
	for i, m := range c.members {
		var join []string
		if i == 2 {
			join = []string{c.members[0].httpAddr()}
		}
		n, err := c.newNode(m, addrs[m], join, testToken)
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- n.Open(bg()) }()
	}
	for range c.members {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	c.leader()
	c.waitRules(v, 3*time.Second)
	for _, m := range c.members {
		doc, _ := m.node.Rules(bg())
		if !strings.Contains(string(doc.Rules), `"rate":11`) {
			t.Fatalf("%s rules after restart = %s", m.id, doc.Rules)
		}
	}
	after := c.setRules(c.follower(), 12)
	if after <= v {
		t.Fatalf("version after full restart = %d, was %d", after, v)
	}
	c.waitRules(after, time.Second)
}

func TestInvalidRulesChangeNothing(t *testing.T) {
	c := startCluster(t, 3)
	c.waitRules(1, time.Second)
	bad := []byte(`{"rules":[{"name":"a","key":["ip"],"limit":{"rate":0,"per":"1s"}},{"name":"a","key":["ip"],"limit":{"rate":1,"per":"soon"}}]}`)
	for _, m := range c.members {
		_, err := m.node.SetRules(bg(), bad)
		var ve *rules.ValidationError
		if !errors.Is(err, admin.ErrInvalid) || !errors.As(err, &ve) || len(ve.Errors) < 2 {
			t.Fatalf("%s SetRules(bad) = %v", m.id, err)
		}
	}
	for _, m := range c.members {
		if v, _ := m.node.fsm.State().Rules(); v != 1 || m.rules.latest() != 1 {
			t.Fatalf("%s rules version %d after invalid writes", m.id, v)
		}
	}
	// A valid write after them is a barrier: had any invalid write been
	// committed, it would have taken version 2 and this one a later version.
	if v := c.setRules(c.leader(), 7); v != 2 {
		t.Fatalf("first valid write after invalid ones got version %d, want 2", v)
	}
	c.waitRules(2, time.Second)
}

func TestBadJoinAndRemoveRequests(t *testing.T) {
	c := startCluster(t, 1)
	n := c.members[0].node
	for _, req := range []admin.JoinRequest{
		{RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"},
		{NodeID: "x", RaftAddr: "nowhere", HTTPAddr: "127.0.0.1:2"},
		{NodeID: "x", RaftAddr: "127.0.0.1:1"},
	} {
		if err := n.Join(bg(), req); !errors.Is(err, admin.ErrInvalid) {
			t.Fatalf("Join(%+v) = %v, want ErrInvalid", req, err)
		}
	}
	if err := n.RemoveNode(bg(), ""); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("RemoveNode(\"\") = %v", err)
	}
	if len(n.servers()) != 1 {
		t.Fatalf("bad requests changed the configuration: %v", n.servers())
	}
}

func TestNoLeaderMeansErrNoLeader(t *testing.T) {
	c := startCluster(t, 3)
	survivor := c.follower()
	for _, m := range c.members {
		if m != survivor {
			c.stop(m)
		}
	}
	c.waitFor(survivor.id+" to lose the leader", 5*time.Second, func() bool { return survivor.node.LeaderID() == "" })
	if _, err := survivor.node.SetRules(bg(), rulesDoc(5)); !errors.Is(err, admin.ErrNoLeader) {
		t.Fatalf("SetRules without leader = %v", err)
	}
	if err := survivor.node.Ready(); err == nil || !strings.Contains(err.Error(), "leader") {
		t.Fatalf("Ready without leader = %v", err)
	}
	st, err := survivor.node.ClusterStatus(bg())
	if err != nil || st.Leader != "" || len(st.Nodes) != 3 {
		t.Fatalf("status without leader = %+v, %v", st, err)
	}
}

func TestWrongTokenCannotJoin(t *testing.T) {
	c := startCluster(t, 1)
	intruder := c.addMember("evil")
	n, err := c.newNode(intruder, "127.0.0.1:0", []string{c.members[0].httpAddr()}, "wrong-token")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	defer cancel()
	if err := n.Open(ctx); !errors.Is(err, admin.ErrUnauthorized) {
		t.Fatalf("Open with the wrong token = %v, want ErrUnauthorized", err)
	}
	if got := len(c.members[0].node.servers()); got != 1 {
		t.Fatalf("cluster has %d servers after a refused join", got)
	}
}

// TestBootstrapWithoutRulesAppliesEmptyRules: a cluster bootstrapped without
// rules still gets a rules version (an empty document), so its nodes become
// ready and allow everything, instead of refusing decisions forever.
func TestBootstrapWithoutRulesAppliesEmptyRules(t *testing.T) {
	dir := t.TempDir()
	var seen atomic.Uint64
	n, err := New(Config{ID: "solo", DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAdvertise: "127.0.0.1:1",
		Logger: testLogger(t, "solo"), RaftTimeouts: fastRaft,
		OnRules: func(version uint64, _ []byte) { seen.Store(version) }})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	defer cancel()
	if err := n.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.IsLeader() || n.LeaderHTTPAddr() != "127.0.0.1:1" {
		t.Fatalf("bootstrapped node: leader %v at %q", n.IsLeader(), n.LeaderHTTPAddr())
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready after bootstrap without rules = %v", err)
	}
	doc, err := n.Rules(bg())
	if err != nil || doc.Version != 1 || string(doc.Rules) != "[]" || seen.Load() != 1 {
		t.Fatalf("Rules after bootstrap = %+v, %v (OnRules saw version %d)", doc, err, seen.Load())
	}
	if v, err := n.SetRules(bg(), []byte(testRules)); err != nil || v != 2 {
		t.Fatalf("SetRules = %d, %v", v, err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ID: "a", DataDir: "/tmp/x", RaftAddr: "127.0.0.1:7000", HTTPAdvertise: "127.0.0.1:8000"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.ID = "" },
		func(c *Config) { c.DataDir = "" },
		func(c *Config) { c.RaftAddr = "7000" },
		func(c *Config) { c.RaftAdvertise = "host" },
		func(c *Config) { c.HTTPAdvertise = "" },
		func(c *Config) { c.Join = []string{""} },
		func(c *Config) { c.BootstrapRules = []byte(`{"rules":[{"name":""}]}`) },
		func(c *Config) { c.RaftTimeouts.Election = -time.Second },
		func(c *Config) { c.Voters = 4 },
		func(c *Config) { c.Voters = 9 },
		func(c *Config) { c.Voters = -1 },
		func(c *Config) { c.VoterGrace = time.Minute; c.RemoveAfter = time.Minute },
		func(c *Config) { c.RemoveAfter = -time.Second },
	}
	for i, mutate := range bad {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: invalid config accepted: %+v", i, c)
		}
	}
}

// TestAdminHTTPThroughRealRoutes drives the admin API over HTTP: tokens,
// malformed bodies and invalid rules on a follower.
func TestAdminHTTPThroughRealRoutes(t *testing.T) {
	c := startCluster(t, 3)
	c.waitRules(1, time.Second)
	f := c.follower()
	do := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, token := range []string{"", "wrong"} {
		if code, _ := do("GET", "/v1/cluster", token, ""); code != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", token, code)
		}
	}
	code, body := do("POST", "/v1/cluster/join", testToken, `{"node_id":"x","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2","extra":1}`)
	if code != http.StatusBadRequest || body["field"] != "extra" {
		t.Fatalf("join with unknown field: %d %v", code, body)
	}
	code, body = do("PUT", "/v1/rules", testToken, `{"rules":[{"name":"a","key":["ip"],"limit":{"rate":-1,"per":"1s"}},{"name":"b","key":["ip"],"limit":{"rate":1,"per":"soon"}}]}`)
	fields, _ := body["fields"].([]any)
	if code != http.StatusBadRequest || len(fields) < 2 || !strings.HasPrefix(body["field"].(string), "rules[0]") {
		t.Fatalf("PUT invalid rules: %d %v", code, body)
	}
	code, body = do("DELETE", "/v1/cluster/nodes/ghost", testToken, "")
	if code != http.StatusNotFound {
		t.Fatalf("DELETE unknown node: %d %v", code, body)
	}
	code, body = do("PUT", "/v1/rules", testToken, string(rulesDoc(77)))
	if code != http.StatusOK || body["version"] != 2.0 {
		t.Fatalf("PUT rules on follower: %d %v", code, body)
	}
	c.waitRules(2, time.Second)
	code, body = do("GET", "/v1/rules", testToken, "")
	list, _ := body["rules"].([]any)
	if code != http.StatusOK || body["version"] != 2.0 || len(list) != 1 {
		t.Fatalf("GET rules: %d %v", code, body)
	}
	code, body = do("GET", "/v1/cluster", testToken, "")
	nodes, _ := body["nodes"].([]any)
	if code != http.StatusOK || len(nodes) != 3 || body["leader"] != c.leader().id {
		t.Fatalf("GET cluster: %d %v", code, body)
	}
}

func TestLeaderRecordsItsNewRaftAddress(t *testing.T) {
	c := startCluster(t, 1)
	m := c.members[0]
	old := m.node.raftAddr
	c.stop(m)
	c.start(m, "127.0.0.1:0", nil)
	if m.node.raftAddr == old {
		t.Fatal("restart kept the old address; the test proves nothing")
	}
	c.waitFor("the restarted leader to record its new address", 3*time.Second, func() bool {
		st, err := m.node.ClusterStatus(bg())
		if err != nil || len(st.Nodes) != 1 {
			return false
		}
		rec, _ := m.node.fsm.State().Member(m.id)
		return st.Nodes[0].RaftAddr == string(m.node.raftAddr) && rec.RaftAddr == string(m.node.raftAddr)
	})
	c.waitRules(c.setRules(m, 8), time.Second)
}

// A call forwarded once is not forwarded again: a follower that receives a
// forwarded write (leadership moved while it travelled) refuses it with
// 503 rather than bouncing it on, and nothing changes.
func TestForwardedCallIsNotForwardedAgain(t *testing.T) {
	c := startCluster(t, 3)
	c.waitRules(1, time.Second)
	f := c.follower()
	put := func(forwarded bool, rate int) (int, string) {
		t.Helper()
		if forwarded {
			return adminCall(t, f, http.MethodPut, "/v1/rules", string(rulesDoc(rate)), admin.ForwardedHeader, "1")
		}
		return adminCall(t, f, http.MethodPut, "/v1/rules", string(rulesDoc(rate)))
	}
	if code, body := put(true, 55); code != http.StatusServiceUnavailable || !strings.Contains(body, "no longer leads") {
		t.Fatalf("forwarded PUT on follower %s: %d %s, want 503 naming the reason", f.id, code, body)
	}
	if doc, _ := c.leader().node.Rules(bg()); doc.Version != 1 {
		t.Fatalf("the refused call changed the rules: version %d", doc.Version)
	}
	if code, body := put(false, 56); code != http.StatusOK {
		t.Fatalf("PUT on follower %s: %d %s, want it forwarded to the leader", f.id, code, body)
	}
}
