package systest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/cmd/sluice/systest"
	"github.com/sluicehq/sluice/lua/redistest"
)

// TestRedisClusterMasterKilledUnderLoad kills the Redis Cluster master that
// holds the tenant's bucket while three nodes decide on it; its replica
// takes over. Decisions never stop (fallback covers the failover), and the
// over-admission stays within ε: what the replica had not yet received of
// the dead master's writes plus the end of the fallback episode.
func TestRedisClusterMasterKilledUnderLoad(t *testing.T) {
	rc := redistest.StartCluster(t)
	opts := systest.Options{Rules: faultRules, Redis: strings.Join(rc.Addrs(), ","), RedisMode: "cluster"}
	c := systest.StartCluster(t, opts, opts, opts)
	load, rec := startSteadyLoad(t, c, tenantBucket)

	master := rc.MasterFor(bucketKey(t, rc.Addrs()))
	killedAt := rec.Now()
	rc.KillNode(master)
	rc.WaitFailover(master)
	failedOverAt := rec.Now()
	waitMode(t, load, rec, c.Nodes, "global", failedOverAt, 15*time.Second)
	hold(2 * time.Second)
	load.Stop()

	outcomes, admits := load.Outcomes(), rec.Admits()
	t.Logf("outcomes: %s", counts(outcomes))
	requireAnswers(t, outcomes, c.Nodes...)
	for _, p := range c.Nodes {
		first, last, ok := modeSpan(outcomes, p.ID, "fallback", killedAt, rec.Now())
		if ok {
			t.Logf("%s: fallback %v after the master died; last request answered in fallback sent %v after the failover completed",
				p.ID, (first - killedAt).Round(time.Millisecond), (last - failedOverAt).Round(time.Millisecond))
		} else {
			t.Logf("%s: never in fallback", p.ID)
		}
	}
	got := excess(admits)
	t.Logf("master %s killed; failover took %v; run %v: admitted %d, burst+rate·Δ %.0f, excess %.1f",
		master, (failedOverAt - killedAt).Round(time.Millisecond), rec.Now().Round(time.Millisecond),
		len(admits), faultBurst+faultRate*rec.Now().Seconds(), got)
	// ε for a failover: what the replica missed of the master's last writes
	// (≤ min(b + r·L, slices granted in L), taken as b here), plus the end of
	// the fallback episode that covered it.
	if bound := faultEpsEpisode + faultBurst; got > bound {
		t.Errorf("Redis Cluster failover over-admitted by %.1f, want at most %.0f", got, bound)
	}
}

// bucketKey finds the Redis key of the tenant's bucket on the cluster.
func bucketKey(t *testing.T, addrs []string) string {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex // ForEachMaster asks the masters concurrently
	var found []string
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, "sluice:{tenant:*}").Result()
		mu.Lock()
		found = append(found, keys...)
		mu.Unlock()
		return err
	})
	if err != nil || len(found) != 1 {
		t.Fatalf("looking for the tenant's bucket in Redis: %v %v, want one key", found, err)
	}
	return found[0]
}
