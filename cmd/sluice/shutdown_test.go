package main

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/lua/redistest"
)

// A node told to stop (SIGTERM in production) stops accepting, and hands its
// slices back to Redis: the bucket has no tokens out in grants afterwards,
// long before those grants would have expired by themselves.
func TestServeShutdownSettlesSlices(t *testing.T) {
	srv := redistest.StartServer(t)
	n := startLiveNode(t, "--redis", srv.Addr(), "--slice-ttl", "30s", "--redis-timeout", slowBoxRedisTimeout)
	req := check.Request{Attributes: check.Attrs{{Name: "route", Value: "/api/x"}, {Name: "ip", Value: "198.51.100.7"}}}
	for range 5 {
		if d, err := client.New(n.url).Decide(context.Background(), req); err != nil || !d.Allowed || d.Mode != check.ModeGlobal {
			t.Fatalf("decision %+v, %v; want allowed in global mode", d, err)
		}
	}

	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "sluice:{per-ip:*}").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("bucket keys %v, %v; want exactly one", keys, err)
	}
	outstanding := func() int64 {
		o, err := rdb.HGet(ctx, keys[0], "o").Int64()
		if err != nil {
			t.Fatalf("HGET %s o: %v", keys[0], err)
		}
		return o
	}
	if o := outstanding(); o <= 0 {
		t.Fatalf("no tokens out in grants while serving (o=%d): the test would prove nothing", o)
	}

	if err := n.stop(); err != nil {
		t.Fatalf("serve after its context ended: %v", err)
	}
	if o := outstanding(); o != 0 {
		t.Errorf("after shutdown %d tokens are still out in grants; want 0 (slices settled)", o)
	}
	if code := httpStatus(n.url + "/healthz"); code != 0 {
		t.Errorf("GET /healthz after shutdown answered %d; want the listener closed", code)
	}
	if !strings.Contains(n.logs.String(), "shutting down") {
		t.Errorf("no shutdown log line")
	}
}
