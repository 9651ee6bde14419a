package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node/engine"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/node/accuracy"
)

// leasedEngine is a global-mode engine whose fallback share comes from a
// cluster node, as `sluice serve` wires it.
type leasedEngine struct {
	*engine.Engine
	node     atomic.Pointer[Node]
	registry *prometheus.Registry
	// admitted counts allowed decisions per mode.
	admitted sync.Map // check.Mode → *atomic.Int64
}

func (e *leasedEngine) count(mode check.Mode) *atomic.Int64 {
	v, _ := e.admitted.LoadOrStore(mode, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// newLeasedEngine starts a global-mode engine on rdb wired to its node as
// `sluice serve` wires them: fallback share and withheld share come from
// the node (stored in node once the cluster is up). Closed at test end.
func newLeasedEngine(t *testing.T, rdb redis.UniversalClient) *leasedEngine {
	t.Helper()
	e := &leasedEngine{registry: prometheus.NewRegistry()}
	e.Engine = engine.New(engine.WithMetrics(engine.NewMetrics(e.registry)), engine.WithGlobal(engine.GlobalConfig{
		Limiter: lua.NewLimiter(rdb), SliceTTL: 100 * time.Millisecond, RedisTimeout: 50 * time.Millisecond,
		Nodes: func() int { return 3 },
		Share: func(rule string) float64 {
			if n := e.node.Load(); n != nil {
				return n.Share(rule)
			}
			return 1.0 / 3
		},
		Withheld: func(rule string) float64 {
			if n := e.node.Load(); n != nil {
				return n.Withheld(rule)
			}
			return 0
		},
		Metrics: engine.NewRedisMetrics(e.registry),
	}))
	e.SetRules(1, mustRules(t, testRules))
	runEngine(t, e.Engine)
	return e
}

// leasedCluster starts three nodes for engines, with calmer raft and
// longer leases than the other lease tests: these tests measure admission
// over seconds while Redis reconnects hammer a loaded machine, and a
// leader election must not outlast the leases.
func leasedCluster(t *testing.T, engines map[string]*leasedEngine) *cluster {
	t.Helper()
	c := startTunedCluster(t, 3, func(m *member, cfg *Config) {
		cfg.LeaseTTL, cfg.MaxClockSkew = 2*testLeaseTTL, testLeaseSkew
		cfg.RaftTimeouts = RaftTimeouts{Heartbeat: 250 * time.Millisecond, Election: 250 * time.Millisecond,
			LeaderLease: 250 * time.Millisecond, Commit: 10 * time.Millisecond}
		cfg.Demand = engines[m.id].Demand
		cfg.Fallback = engines[m.id].InFallback
	})
	for _, m := range c.members {
		engines[m.id].node.Store(m.node)
	}
	return c
}

// driveLeased makes every engine decide on one key every[id], counting what
// each admits per mode and recording the admits in rec (if not nil), until
// the returned stop is called.
func driveLeased(t *testing.T, engines map[string]*leasedEngine, every map[string]time.Duration, rec *accuracy.Recorder) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for id, e := range engines {
		wg.Go(func() {
			tick := time.NewTicker(every[id])
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				var sent time.Duration
				if rec != nil {
					sent = rec.Now()
				}
				d, err := e.Decide(context.Background(), check.Request{Attributes: attrs("ip", "203.0.113.7")})
				if err != nil {
					t.Errorf("decision failed: %v", err)
					return
				}
				if d.Allowed {
					e.count(d.Mode).Add(1)
					if rec != nil {
						rec.Record("k", 1, sent, rec.Now())
					}
				}
			}
		})
	}
	return func() { close(done); wg.Wait() }
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
		engines[id] = newLeasedEngine(t, rdb)
	}
	c := leasedCluster(t, engines)

	// Traffic: n1 carries 80%, n2 and n3 10% each.
	defer driveLeased(t, engines, map[string]time.Duration{"n1": 10 * time.Millisecond, "n2": 80 * time.Millisecond, "n3": 80 * time.Millisecond}, nil)()

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
