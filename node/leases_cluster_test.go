package node

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
)

// Short leases so that tests see several lease periods in a few seconds.
const (
	testLeaseTTL  = time.Second
	testLeaseSkew = 100 * time.Millisecond
)

// steadyDemand reports rate decisions per second of rule per-ip, as if the
// node's engine had been deciding at that rate since start.
func steadyDemand(rate float64) func() map[string]float64 {
	start := time.Now()
	return func() map[string]float64 {
		return map[string]float64{"per-ip": rate * time.Since(start).Seconds()}
	}
}

// leaseCluster starts n nodes with test lease timings and demand per node
// id (none for ids not in demand).
func leaseCluster(t *testing.T, n int, demand map[string]func() map[string]float64) *cluster {
	t.Helper()
	return startTunedCluster(t, n, func(m *member, cfg *Config) {
		cfg.LeaseTTL, cfg.MaxClockSkew = testLeaseTTL, testLeaseSkew
		cfg.Demand = demand[m.id]
	})
}

// shareSum samples every running node's share of per-ip at one instant.
// Reading the nodes one after another does not: a share released on one
// node reaches another within milliseconds, and a reader descheduled
// between the two reads would add the old share to the new. So it reads
// every share twice (double collect) until both reads agree; then every
// value held at the instant between them.
func shareSum(c *cluster) float64 {
	collect := func() []float64 {
		var shares []float64
		for _, m := range c.running() {
			shares = append(shares, m.node.Share("per-ip"))
		}
		return shares
	}
	prev := collect()
	for {
		cur := collect()
		if slices.Equal(prev, cur) {
			sum := 0.0
			for _, s := range cur {
				sum += s
			}
			return sum
		}
		prev = cur
	}
}

// watchShareSum samples Σ shares every few milliseconds until the test ends
// and fails it if the sum ever exceeds 1. It starts once every node counts
// every member: while a join propagates, floors differ (docs/DESIGN.md,
// Safety §5, the join term of ε), and leases may be allocated meanwhile.
func watchShareSum(t *testing.T, c *cluster) {
	c.waitFor("every node to count every member", 10*time.Second, func() bool {
		for _, m := range c.running() {
			if m.node.fsm.State().MemberCount() != len(c.members) {
				return false
			}
		}
		return true
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if sum := shareSum(c); sum > 1+1e-9 {
				t.Errorf("shares sum to %v > 1", sum)
				return
			}
		}
	})
	t.Cleanup(func() { close(done); wg.Wait() })
}

// shiftingDemand is 80/10/10 demand whose busy node can change: each
// node's cumulative count grows at 80/s while it is the busy one, else 10/s.
type shiftingDemand struct {
	mu     sync.Mutex
	busy   string
	counts map[string]float64
	at     map[string]time.Time
}

func (d *shiftingDemand) setBusy(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for node := range d.at {
		d.advance(node, time.Now())
	}
	d.busy = id
}

func (d *shiftingDemand) advance(node string, now time.Time) {
	rate := 10.0
	if node == d.busy {
		rate = 80
	}
	d.counts[node] += rate * now.Sub(d.at[node]).Seconds()
	d.at[node] = now
}

func (d *shiftingDemand) of(node string) func() map[string]float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at[node] = time.Now()
	return func() map[string]float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.advance(node, time.Now())
		return map[string]float64{"per-ip": d.counts[node]}
	}
}

func TestLeasesFollowDemandSkew(t *testing.T) {
	d := &shiftingDemand{busy: "n1", counts: map[string]float64{}, at: map[string]time.Time{}}
	// A lease TTL longer than the others' so that a release, a report and
	// two commits, measurably beat its expiry even on a loaded machine.
	const ttl = 3 * testLeaseTTL
	demand := map[string]func() map[string]float64{"n1": d.of("n1"), "n2": d.of("n2"), "n3": d.of("n3")}
	c := startTunedCluster(t, 3, func(m *member, cfg *Config) {
		cfg.LeaseTTL, cfg.MaxClockSkew = ttl, testLeaseSkew
		cfg.Demand = demand[m.id]
	})
	watchShareSum(t, c)
	first, second := c.members[0], c.members[1]
	c.waitFor("n1's share to reach 0.7", 10*ttl, func() bool { return first.node.Share("per-ip") >= 0.7 })

	// The traffic moves to n2. n1's share shrinks at its next report; n2
	// may only grow by what n1 no longer uses: n1 releases its large lease
	// (it reports that it moved on to the smaller one) or that lease expires.
	d.setBusy("n2")
	shifted := time.Now()
	var lastLarge int64 // expiry of n1's latest entry with a large extra
	releasedEarly := false
	c.waitFor("n2's share to reach 0.7", 10*ttl, func() bool {
		l := second.node.fsm.State().Leases()["per-ip"]["n1"]
		large := false
		for _, h := range append(l.Holds, fsm.Hold{Extra: l.Extra, Until: l.Expires}) {
			if h.Extra >= 0.5 {
				lastLarge, large = max(lastLarge, h.Until), true
			}
		}
		// n1's large entry left the table before it expired: released.
		releasedEarly = releasedEarly || (lastLarge > 0 && !large && time.Now().UnixNano() < lastLarge)
		if second.node.Share("per-ip") < 0.7 {
			return false
		}
		if n1 := first.node.Share("per-ip"); n1 >= 0.5 {
			t.Fatalf("n2 got %.3f while n1 still uses %.3f", second.node.Share("per-ip"), n1)
		}
		return true
	})
	t.Logf("after the shift n2's share reached %.3f in %v (lease TTL %v); n1's large lease released before its expiry: %v",
		second.node.Share("per-ip"), time.Since(shifted).Round(time.Millisecond), ttl, releasedEarly)
	if lastLarge == 0 {
		t.Fatal("never saw n1's large lease")
	}
	if !releasedEarly {
		t.Errorf("n1's large lease stayed reserved until it expired: n1 did not release it")
	}

	// Every node reports the table over HTTP. The smoothed demand keeps
	// moving n2's share a little around its level, so wait for each node to
	// report it at 0.7 or more; the invariants hold on every read.
	for _, m := range c.members {
		c.waitFor(m.id+" to report n2's share >= 0.7", 10*ttl, func() bool {
			leases := getLeases(t, m)
			var sum float64
			for id, l := range leases["per-ip"] {
				sum += l.Share
				if l.Share < fsm.FloorShare(3)-1e-9 || (l.Share > fsm.FloorShare(3)+1e-9) != (l.ExpiresInMs > 0) {
					t.Fatalf("GET /v1/leases on %s: %s has %+v", m.id, id, l)
				}
			}
			n2 := leases["per-ip"]["n2"]
			if len(leases["per-ip"]) != 3 || n2.ExpiresInMs > ttl.Milliseconds() || sum > 1+1e-9 {
				t.Fatalf("GET /v1/leases on %s = %v", m.id, leases)
			}
			return n2.Share >= 0.7
		})
	}

	reg := prometheus.NewRegistry()
	RegisterLeaseMetrics(reg, second.node)
	if got := gaugeValue(t, reg, "sluice_lease_share", "per-ip"); got < 0.7 || got > 1 {
		t.Fatalf("sluice_lease_share{rule=per-ip} on n2 = %v, want its share >= 0.7", got)
	}
}

// A node cut off from the majority keeps deciding, but its lease runs out
// and it falls back to its floor; the others cannot hand its share on
// before then.
func TestLeaseLapsesToFloorWithoutQuorum(t *testing.T) {
	c := leaseCluster(t, 3, map[string]func() map[string]float64{
		"n1": steadyDemand(80), "n2": steadyDemand(10), "n3": steadyDemand(10),
	})
	watchShareSum(t, c)
	busy := c.members[0]
	c.waitFor("n1's share to reach 0.7", 10*testLeaseTTL, func() bool { return busy.node.Share("per-ip") >= 0.7 })
	c.stop(c.members[1])
	c.stop(c.members[2])
	lapsed := time.Now()
	c.waitFor("n1's lease to lapse", 3*testLeaseTTL, func() bool { return busy.node.Share("per-ip") == fsm.FloorShare(3) })
	if took := time.Since(lapsed); took > testLeaseTTL+500*time.Millisecond {
		t.Fatalf("lease outlived its TTL: lapsed %v after the last renewal could have been made", took)
	}
	leases := getLeases(t, busy)
	if l := leases["per-ip"]["n1"]; l.Share != fsm.FloorShare(3) || l.ExpiresInMs != 0 {
		t.Fatalf("GET /v1/leases after the lapse: n1 = %+v, want the floor without expiry", l)
	}
}

// A restarted node replays lease entries from its log; they were issued
// long ago and must not grant anything.
func TestReplayedLeasesIgnoredAfterRestart(t *testing.T) {
	c := leaseCluster(t, 1, map[string]func() map[string]float64{"n1": steadyDemand(10)})
	m := c.members[0]
	floor := fsm.FloorShare(1)
	c.waitFor("a lease", 10*testLeaseTTL, func() bool { return m.node.Share("per-ip") > floor })
	lastIssued := m.node.fsm.State().Leases()["per-ip"]["n1"].IssuedAt
	c.stop(m)
	time.Sleep(testLeaseTTL) // let the entries in the log age past trust
	c.start(m, string(m.node.raftAddr), nil)
	checked := false
	c.waitFor("the old lease table to be replayed", 5*time.Second, func() bool {
		before := m.node.fsm.State().Leases()["per-ip"]["n1"]
		own := *m.node.own.Load()
		after := m.node.fsm.State().Leases()["per-ip"]["n1"]
		if before.IssuedAt == 0 || before.IssuedAt > lastIssued || after.IssuedAt != before.IssuedAt {
			return before.IssuedAt > lastIssued // a fresh allocation came first: the replay was missed
		}
		if len(own) != 0 || m.node.Share("per-ip") != floor {
			t.Fatalf("replayed entry issued %v ago is in use: %v", time.Since(time.Unix(0, before.IssuedAt)), own)
		}
		checked = true
		return true
	})
	if !checked {
		t.Fatal("the node allocated fresh leases before the replayed ones could be checked")
	}
	c.waitFor("a fresh lease after restart", 10*testLeaseTTL, func() bool { return m.node.Share("per-ip") > floor })
}

func getLeases(t *testing.T, m *member) admin.Leases {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, m.http.URL+"/v1/leases", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admin.Leases
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("GET /v1/leases on %s: %s", m.id, resp.Status)
	}
	return out
}

// gaugeValue gathers reg and returns the gauge name{rule} (rule "" for a
// gauge without labels).
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if rule == "" && len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" && l.GetValue() == rule {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{rule=%q}", name, rule)
	return math.NaN()
}
