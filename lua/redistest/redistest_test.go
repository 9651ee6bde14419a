package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestServerStopStartKill(t *testing.T) {
	s := StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Start()
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after a restart without persistence EXISTS k = %d, %v; want 0, nil", n, err)
	}

	s.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Start()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restarting a killed server: %v", err)
	}
}

func TestClusterFailover(t *testing.T) {
	c := StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const key = "failover-key"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := c.MasterFor(key)
	master := nodeClient(old)
	defer master.Close()
	if acked, err := master.Wait(ctx, 1, time.Second).Result(); err != nil || acked != 1 {
		t.Fatalf("WAIT on %s = %d, %v; want the replica to ack", old, acked, err)
	}
	c.KillNode(old)
	c.WaitFailover(old)

	promoted := c.MasterFor(key)
	if promoted == old {
		t.Fatalf("key still served by the killed master %s", old)
	}
	direct := nodeClient(promoted)
	defer direct.Close()
	if v, err := direct.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("GET %s on the promoted master %s = %q, %v; want the replicated value", key, promoted, v, err)
	}
}
