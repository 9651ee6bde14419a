package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
)

// A node restarted alone (its peers are down, so no leader and no commit
// index) has its last rules from inside New, before it could serve a
// request, says it decides on them without a leader, and refuses writes.
func TestLoneRestartDecidesOnItsLastRules(t *testing.T) {
	c := startCluster(t, 3)
	v := c.setRules(c.follower(), 9)
	c.waitRules(v, 3*time.Second)
	lone := c.members[2]
	addr := string(lone.node.raftAddr)
	for _, m := range c.members {
		c.stop(m)
	}
	n, err := c.newNode(lone, addr, nil, testToken)
	if err != nil {
		t.Fatal(err)
	}
	// No Open, no waiting: New itself installed the rules.
	if got := lone.rules.all(); !slices.Equal(got, []uint64{v}) {
		t.Fatalf("rules installed by New = %v, want [%d]", got, v)
	}
	doc, err := n.Rules(bg())
	if err != nil || doc.Version != v || !strings.Contains(string(doc.Rules), `"rate":9`) {
		t.Fatalf("Rules() = %+v, %v; want version %d with rate 9", doc, err, v)
	}
	if err := n.Open(bg()); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("no leader; deciding on rules version %d", v)
	if err := n.Ready(); err == nil || err.Error() != want {
		t.Fatalf("Ready() = %v, want %q", err, want)
	}
	st, err := n.ClusterStatus(bg())
	if err != nil || st.Leader != "" || st.RulesVersion != v || st.Warning != want {
		t.Fatalf("ClusterStatus() = %+v, %v; want no leader, rules_version %d, warning %q", st, err, v, want)
	}
	if s := n.Stats(); s.HasLeader {
		t.Fatalf("Stats() = %+v without a leader", s)
	}
	if _, err := n.SetRules(bg(), rulesDoc(5)); !errors.Is(err, admin.ErrNoLeader) {
		t.Fatalf("SetRules without a leader = %v, want ErrNoLeader", err)
	}
}

// A node restarted into a live cluster replays the log after its snapshot;
// the versions it already installed from its data dir must not send its
// rules back to older ones meanwhile.
func TestRestartNeverStepsBackToOlderRules(t *testing.T) {
	c := startCluster(t, 3)
	var v uint64
	for rate := 2; rate <= 4; rate++ {
		v = c.setRules(c.leader(), rate)
	}
	c.waitRules(v, 3*time.Second)
	f := c.follower()
	c.restart(f, nil)
	if got := f.rules.all(); len(got) == 0 || got[0] != v {
		t.Fatalf("restarted node installed rules %v, want version %d first", got, v)
	}
	next := c.setRules(c.leader(), 5)
	c.waitRules(next, 3*time.Second)
	if got := f.rules.all(); !slices.Equal(got, []uint64{v, next}) {
		t.Fatalf("restarted node installed rules %v, want [%d %d]", got, v, next)
	}
}

// Saved rules without raft state beside them are from a cluster the data
// dir no longer holds: a node bootstrapping there starts from version 1 and
// overwrites them.
func TestSavedRulesWithoutRaftStateAreDropped(t *testing.T) {
	c := startCluster(t, 1)
	m := c.members[0]
	v := c.setRules(m, 7)
	c.waitRules(v, 3*time.Second)
	c.stop(m)
	if err := os.Remove(filepath.Join(m.dataDir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	c.start(m, "127.0.0.1:0", nil)
	c.waitRules(1, 3*time.Second)
	if got := m.rules.all(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("fresh cluster installed rules %v, want [1]", got)
	}
	saved, err := loadLastRules(m.dataDir, true)
	if err != nil || saved == nil || saved.Version != 1 {
		t.Fatalf("saved rules = %+v, %v; want version 1", saved, err)
	}
}
