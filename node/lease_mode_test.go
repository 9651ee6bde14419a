package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/fsm"
)

// modeLog records what a node told its engine through OnClustered.
type modeLog struct {
	mu        sync.Mutex
	clustered bool
	localAt   time.Time // when it last went from clustered to alone
}

func (l *modeLog) set(clustered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clustered && !clustered {
		l.localAt = time.Now()
	}
	l.clustered = clustered
}

func (l *modeLog) get() (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.clustered, l.localAt
}

// A node decides alone only while it is the only member, and a cluster that
// shrinks back to one node returns to local mode only once the departed
// node's lease has expired: until then it may still be deciding at it.
func TestModeFollowsMembershipAndDepartedLeases(t *testing.T) {
	logs := map[string]*modeLog{"n1": {clustered: true}, "n2": {clustered: true}}
	c := startTunedCluster(t, 1, func(m *member, cfg *Config) {
		cfg.LeaseTTL, cfg.MaxClockSkew = testLeaseTTL, testLeaseSkew
		cfg.OnClustered = logs[m.id].set
	})
	first := c.members[0]
	if clustered, _ := logs["n1"].get(); clustered {
		t.Fatal("a bootstrapped single node is not told it is alone once it is open")
	}
	second := c.addMember("n2")
	c.start(second, "127.0.0.1:0", []string{first.httpAddr()})
	if clustered, _ := logs["n1"].get(); !clustered {
		t.Fatal("n1 still decides alone after n2 joined")
	}
	c.waitFor("n2 to hold a lease", 10*testLeaseTTL, func() bool {
		l, ok := first.node.fsm.State().Leases()["per-ip"]["n2"]
		return ok && l.Extra > 0
	})
	for range 20 { // n2 stays clustered: it is never alone
		if clustered, _ := logs["n2"].get(); !clustered {
			t.Fatal("n2 was told it is alone")
		}
		time.Sleep(fallbackPoll)
	}

	// Removed while it runs (a cluster of two needs both to commit), then
	// stopped: its last lease stays reserved until it expires.
	if err := first.node.RemoveNode(context.Background(), "n2"); err != nil {
		t.Fatal(err)
	}
	c.stop(second)
	removed := time.Now()
	var last fsm.Lease // n2's last entry as n1 saw it while clustered
	c.waitFor("n1 to decide alone again", 20*testLeaseTTL, func() bool {
		clustered, _ := logs["n1"].get()
		if l, ok := first.node.fsm.State().Leases()["per-ip"]["n2"]; ok {
			last = l
		}
		return !clustered
	})
	_, localAt := logs["n1"].get()
	if last.Reserved(removed.UnixNano(), int64(testLeaseSkew)) == 0 {
		t.Fatal("n2's lease was not reserved after its removal: the test proves nothing")
	}
	if r := last.Reserved(localAt.UnixNano(), int64(testLeaseSkew)); r > 0 {
		t.Fatalf("n1 went back to local mode while n2's lease of %.3f may still be in use", r)
	}
	t.Logf("n1 decides alone %v after n2's removal", localAt.Sub(removed).Round(time.Millisecond))
}
