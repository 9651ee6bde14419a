package node

import (
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/fsm"
)

func TestAllocateExtrasProportionalToDemand(t *testing.T) {
	pool := 1 - fsm.LeaseFloorFraction
	got := allocateExtras([]string{"r", "idle"}, []string{"a", "b", "c"}, map[string]map[string]float64{
		"a": {"r": 80}, "b": {"r": 10}, "c": {"r": 10},
	})
	want := map[string]float64{"a": 0.8 * pool, "b": 0.1 * pool, "c": 0.1 * pool}
	sum := 0.0
	for node, w := range want {
		if math.Abs(got["r"][node]-w) > 1e-9 {
			t.Fatalf("extra of %s = %v, want %v", node, got["r"][node], w)
		}
		sum += got["r"][node]
	}
	if math.Abs(sum-pool) > 1e-9 {
		t.Fatalf("extras sum to %v, want the whole pool %v", sum, pool)
	}
	// A rule nobody asks for is split equally, ready for whoever starts.
	for _, node := range []string{"a", "b", "c"} {
		if math.Abs(got["idle"][node]-pool/3) > 1e-9 {
			t.Fatalf("idle rule extra of %s = %v, want %v", node, got["idle"][node], pool/3)
		}
	}
	// A busy node's share, with the floor it always has, reaches 0.75.
	if share := fsm.FloorShare(3) + got["r"]["a"]; share < 0.75 {
		t.Fatalf("busy node's share = %v, want >= 0.75", share)
	}
}

// A new leader that sees the opposite demand, with a clock ahead by the
// skew, still cannot hand the old busy node's share to another node before
// the old lease has expired: the FSM keeps the reservation.
func TestLeaseHandOverWaitsForExpiryAcrossLeaderChange(t *testing.T) {
	const ttl, skew = 3 * time.Second, 200 * time.Millisecond
	f := fsm.New(nil)
	members := []string{"a", "b", "c"}
	applyAt := func(at time.Time, demand map[string]map[string]float64) {
		p := fsm.LeaseProposal{IssuedAt: at.UnixNano(), TTL: int64(ttl), Skew: int64(skew),
			Extras: allocateExtras([]string{"r"}, members, demand)}
		f.Apply(&raft.Log{Data: fsm.EncodeSetLeases(p)})
	}
	aBusy := map[string]map[string]float64{"a": {"r": 90}, "b": {"r": 5}, "c": {"r": 5}}
	bBusy := map[string]map[string]float64{"a": {"r": 5}, "b": {"r": 90}, "c": {"r": 5}}
	start := time.Unix(1_700_000_000, 0)
	// Leader 1 gives a most of the pool, renewing twice.
	for i := range 3 {
		applyAt(start.Add(time.Duration(i)*ttl/3), aBusy)
	}
	lastOld := start.Add(2 * ttl / 3)
	aOld := f.State().Leases()["r"]["a"].Extra
	// Leader 2 takes over and sees b busy; its clock runs ahead by skew.
	clock2 := func(real time.Time) time.Time { return real.Add(skew) }
	for real := lastOld.Add(100 * time.Millisecond); real.Before(lastOld.Add(3 * ttl)); real = real.Add(ttl / 3) {
		applyAt(clock2(real), bBusy)
		b := f.State().Leases()["r"]["b"].Extra
		// a may use its old extra until its old expiry by its own clock,
		// which reads at least real−skew: so until real = expiry.
		aMayUseOld := real.Before(lastOld.Add(ttl))
		if aMayUseOld && b+aOld > 1-fsm.LeaseFloorFraction+1e-9 {
			t.Fatalf("at %v after the last old lease b got %v while a may still use %v", real.Sub(lastOld), b, aOld)
		}
	}
	if b := f.State().Leases()["r"]["b"].Extra; b < 0.8 {
		t.Fatalf("b's extra long after a's lease expired = %v, want its proportional 0.81", b)
	}
}

// leaseTestNode is a node without raft: just the FSM and the lease hook.
func leaseTestNode(skew time.Duration) *Node {
	n := &Node{cfg: Config{ID: "a", MaxClockSkew: skew}, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	n.fsm = fsm.New(nil, fsm.WithLeasesHook(n.leasesApplied))
	n.own.Store(&ownLeases{})
	for _, id := range []string{"a", "b", "c"} {
		n.fsm.Apply(&raft.Log{Data: fsm.EncodeUpsertMember(fsm.Member{ID: id})})
	}
	return n
}

func issueLease(n *Node, issued time.Time, ttl time.Duration, extra float64) {
	p := fsm.LeaseProposal{IssuedAt: issued.UnixNano(), TTL: int64(ttl), Skew: int64(n.cfg.MaxClockSkew),
		Extras: map[string]map[string]float64{"r": {"a": extra}}}
	n.fsm.Apply(&raft.Log{Data: fsm.EncodeSetLeases(p)})
}

func TestLeaseEntriesTrustedOnlyWhenFresh(t *testing.T) {
	const skew = 50 * time.Millisecond
	floor := fsm.FloorShare(3)
	cases := map[string]struct {
		issuedAgo time.Duration
		ttl       time.Duration
		want      float64
	}{
		"fresh":                        {issuedAgo: 0, ttl: time.Minute, want: floor + 0.5},
		"replayed long after issue":    {issuedAgo: 31 * time.Second, ttl: time.Minute, want: floor},
		"expired":                      {issuedAgo: 2 * time.Second, ttl: time.Second, want: floor},
		"issued beyond skew ahead":     {issuedAgo: -2 * skew, ttl: time.Minute, want: floor},
		"issued within skew ahead":     {issuedAgo: -skew / 2, ttl: time.Minute, want: floor + 0.5},
		"valid but within skew of end": {issuedAgo: 0, ttl: skew, want: floor},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			n := leaseTestNode(skew)
			issueLease(n, time.Now().Add(-tc.issuedAgo), tc.ttl, 0.5)
			if got := n.Share("r"); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("share = %v, want %v", got, tc.want)
			}
			if got := n.Share("other"); got != floor {
				t.Fatalf("share of a rule without lease = %v, want the floor %v", got, floor)
			}
		})
	}
}

// A stale renewal does not cancel the fresh lease the node already holds
// (the FSM still reserves it), and a fresh one replaces it.
func TestStaleRenewalKeepsEarlierLease(t *testing.T) {
	n := leaseTestNode(10 * time.Millisecond)
	floor := fsm.FloorShare(3)
	issueLease(n, time.Now(), time.Minute, 0.4)
	issueLease(n, time.Now().Add(-40*time.Second), time.Minute, 0.7)
	if got := n.Share("r"); math.Abs(got-(floor+0.4)) > 1e-9 {
		t.Fatalf("share after a stale renewal = %v, want the earlier lease's %v", got, floor+0.4)
	}
	issueLease(n, time.Now(), time.Minute, 0.2)
	if got := n.Share("r"); math.Abs(got-(floor+0.2)) > 1e-9 {
		t.Fatalf("share after a fresh renewal = %v, want %v", got, floor+0.2)
	}
}

func TestLeaseExpiresToFloor(t *testing.T) {
	n := leaseTestNode(10 * time.Millisecond)
	issueLease(n, time.Now(), 200*time.Millisecond, 0.6)
	if n.Share("r") <= fsm.FloorShare(3) {
		t.Fatal("fresh lease not used")
	}
	waitFor(t, 2*time.Second, "the lease to expire", func() bool { return n.Share("r") == fsm.FloorShare(3) })
}
