package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

// leasedEngine is a global-mode engine whose fallback share comes from a
// cluster node, as `sluice serve` wires it.
type leasedEngine struct {
	*Engine
	node     atomic.Pointer[Node]
	registry *prometheus.Registry
	// admitted counts allowed decisions per mode.
	admitted sync.Map // check.Mode → *atomic.Int64
}

func (e *leasedEngine) count(mode check.Mode) *atomic.Int64 {
	v, _ := e.admitted.LoadOrStore(mode, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// Three nodes see 80/10/10 of 125 requests/s on one key of a 100/s rule.
// When Redis stops, each decides from local buckets at its leased share:
// the busy node's share follows its demand, so the cluster still admits
// about the limit (equal thirds would admit 33 + 12.5 + 12.5 = 58/s), and
// never more than rate·Δ plus one token per node (fallback buckets start
// empty, and each holds at least one token).
func TestFallbackAdmitsLeasedSharesWhileRedisIsDown(t *testing.T) {
	const rate = 100.0 // per-ip: 100/s, burst 100
	srv := redistest.StartServer(t)
	rdb := dialRedis(t, 50*time.Millisecond, srv.Addr())
	engines := map[string]*leasedEngine{}
	for _, id := range []string{"n1", "n2", "n3"} {
		e := &leasedEngine{registry: prometheus.NewRegistry()}
		e.Engine = NewEngine(WithMetrics(NewEngineMetrics(e.registry)), WithGlobal(GlobalConfig{
			Limiter: lua.NewLimiter(rdb), SliceTTL: 100 * time.Millisecond, RedisTimeout: 50 * time.Millisecond,
			Nodes:   func() int { return 3 },
			Share:   func(rule string) float64 { return e.node.Load().Share(rule) },
			Metrics: NewRedisMetrics(e.registry),
		}))
		e.SetRules(1, mustRules(t, testRules))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; e.Close(context.Background()) })
		engines[id] = e
	}
	// Calmer raft and longer leases than the other lease tests: this one
	// measures admission over seconds while Redis reconnects hammer a
	// loaded machine, and a leader election must not outlast the leases.
	c := startTunedCluster(t, 3, func(m *member, cfg *Config) {
		cfg.LeaseTTL, cfg.MaxClockSkew = 2*testLeaseTTL, testLeaseSkew
		cfg.RaftTimeouts = RaftTimeouts{Heartbeat: 250 * time.Millisecond, Election: 250 * time.Millisecond,
			LeaderLease: 250 * time.Millisecond, Commit: 10 * time.Millisecond}
		cfg.Demand = engines[m.id].Demand
	})
	for _, m := range c.members {
		engines[m.id].node.Store(m.node)
	}

	// Traffic: n1 carries 80%, n2 and n3 10% each.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id, every := range map[string]time.Duration{"n1": 10 * time.Millisecond, "n2": 80 * time.Millisecond, "n3": 80 * time.Millisecond} {
		e := engines[id]
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				d, err := e.Decide(context.Background(), check.Request{Attributes: attrs("ip", "203.0.113.7")})
				if err != nil {
					t.Errorf("decision failed: %v", err)
					return
				}
				if d.Allowed {
					e.count(d.Mode).Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	busy := engines["n1"]
	c.waitFor("n1's share to follow its demand", 10*testLeaseTTL, func() bool { return busy.node.Load().Share("per-ip") >= 0.7 })
	if busy.count(check.ModeGlobal).Load() == 0 {
		t.Fatal("nothing admitted in global mode before Redis stopped")
	}

	srv.Kill()
	killed := time.Now()
	c.waitFor("every node in fallback", 5*time.Second, func() bool {
		for _, e := range engines {
			if e.count(check.ModeFallback).Load() == 0 {
				return false
			}
		}
		return true
	})
	const window = 4 * time.Second
	time.Sleep(window - time.Since(killed)) // let traffic run for the window
	elapsed := time.Since(killed).Seconds()

	var fallback int64
	for id, e := range engines {
		n := e.count(check.ModeFallback).Load()
		fallback += n
		t.Logf("%s: share %.3f, admitted %d in fallback", id, e.node.Load().Share("per-ip"), n)
		if got := gaugeValue(t, e.registry, "sluice_fallback_active", ""); got != 1 {
			t.Fatalf("%s: sluice_fallback_active = %v during the outage", id, got)
		}
	}
	t.Logf("cluster admitted %d in fallback over %.2fs: %.0f%% of rate·Δ", fallback, elapsed, 100*float64(fallback)/(rate*elapsed))
	if min := 0.7 * rate * elapsed; float64(fallback) < min {
		t.Fatalf("cluster admitted %d in fallback over %.2fs, want >= 70%% of the limit (%.0f)", fallback, elapsed, min)
	}
	if max := rate*elapsed + 3; float64(fallback) > max {
		t.Fatalf("cluster admitted %d in fallback over %.2fs, want <= rate·Δ + 1 per node = %.0f", fallback, elapsed, max)
	}
}
