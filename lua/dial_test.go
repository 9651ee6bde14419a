package lua_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
)

func TestDialRefusesBadSpecs(t *testing.T) {
	for _, tc := range []struct{ spec, mode string }{
		{"127.0.0.1:6379", "sentinel"},
		{"127.0.0.1:6379,127.0.0.1:6380", "single"},
		{"127.0.0.1:6379,,127.0.0.1:6380", "cluster"},
		{"redis://127.0.0.1:6379/a/b", "single"},
		{"redis://127.0.0.1:6379/1", "cluster"},
		{"http://127.0.0.1:6379", "single"},
		// auto asks the one address, which here refuses connections
		{"127.0.0.1:1", "auto"},
	} {
		if rdb, err := lua.Dial(t.Context(), tc.spec, tc.mode, time.Second); err == nil {
			rdb.Close()
			t.Errorf("Dial(%q, %q) succeeded, want an error", tc.spec, tc.mode)
		}
	}
	if _, err := lua.Dial(t.Context(), "127.0.0.1:1", "single", 0); err == nil {
		t.Error("Dial with a zero timeout succeeded")
	}
}

// An auto probe that fails tells the operator which flag values avoid it.
func TestDialAutoErrorNamesTheModes(t *testing.T) {
	_, err := lua.Dial(t.Context(), "127.0.0.1:1", "auto", 50*time.Millisecond)
	if !errors.Is(err, lua.ErrModeUnknown) {
		t.Errorf("Dial auto against a closed port: %v; want ErrModeUnknown (serve starts a pending limiter on it)", err)
	}
	if err == nil || !strings.Contains(err.Error(), "--redis-mode single") || !strings.Contains(err.Error(), "--redis-mode cluster") {
		t.Fatalf("Dial auto against a closed port: %v; want an error naming --redis-mode single and cluster", err)
	}
}

// In the explicit modes, and for a list in auto mode, Dial must not need Redis up: a node
// starts in fallback and connects later.
func TestDialWithoutRedis(t *testing.T) {
	const timeout = 50 * time.Millisecond
	rdb := dialNoError(t, "redis://user:secret@127.0.0.1:1/3", "single", timeout)
	single, ok := rdb.(*redis.Client)
	if !ok {
		t.Fatalf("single mode made a %T", rdb)
	}
	opt := single.Options()
	if opt.Addr != "127.0.0.1:1" || opt.Username != "user" || opt.Password != "secret" || opt.DB != 3 {
		t.Errorf("URL parts lost: addr %q user %q password %q db %d", opt.Addr, opt.Username, opt.Password, opt.DB)
	}
	if opt.MaxRetries != 0 || opt.ReadTimeout != timeout || opt.PoolTimeout != timeout || opt.DialTimeout != timeout {
		t.Errorf("retries %d, read %v, pool %v, dial %v; want no retries and every wait bounded by %v",
			opt.MaxRetries, opt.ReadTimeout, opt.PoolTimeout, opt.DialTimeout, timeout)
	}

	for _, mode := range []string{"cluster", "auto"} {
		rdb := dialNoError(t, "127.0.0.1:1, redis://127.0.0.1:2", mode, timeout)
		cluster, ok := rdb.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("%s mode with a list made a %T", mode, rdb)
		}
		if got := cluster.Options().Addrs; len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:2" {
			t.Errorf("%s mode seeds %q", mode, got)
		}
		if m := lua.NewLimiter(rdb).Mode(); m != "cluster" {
			t.Errorf("%s mode limiter says %q, want cluster", mode, m)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := lua.NewLimiter(single).Acquire(ctx, "r", "k", lua.Bucket{Rate: 1, Per: time.Second, Burst: 1}, 1, 1, time.Second); err == nil {
		t.Error("Acquire against no Redis succeeded")
	}
}

func dialNoError(t *testing.T, spec, mode string, timeout time.Duration) redis.UniversalClient {
	t.Helper()
	rdb, err := lua.Dial(t.Context(), spec, mode, timeout)
	if err != nil {
		t.Fatalf("Dial(%q, %q): %v", spec, mode, err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// A pending limiter (auto mode with Redis down at start) fails every call at
// once until its Ping reaches Redis, then works like any other.
func TestPendingLimiterConnectsOnceRedisAnswers(t *testing.T) {
	srv := redistest.StartServer(t)
	srv.Stop()
	l := lua.NewPendingLimiter(func(ctx context.Context) (redis.UniversalClient, error) {
		return lua.Dial(ctx, srv.Addr(), "auto", 500*time.Millisecond)
	})
	defer l.Close()
	b := lua.Bucket{Rate: 1, Per: time.Second, Burst: 3}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := l.Acquire(ctx, "r", "k", b, 1, 1, time.Second); !errors.Is(err, lua.ErrNoClient) {
		t.Fatalf("Acquire before Redis is up = %v, want ErrNoClient", err)
	}
	if m := l.Mode(); m != "unknown" {
		t.Errorf("Mode before Redis is up = %q, want unknown", m)
	}
	if err := l.Ping(ctx); !errors.Is(err, lua.ErrModeUnknown) {
		t.Fatalf("Ping before Redis is up = %v, want ErrModeUnknown", err)
	}
	srv.Start()
	if err := l.Ping(ctx); err != nil {
		t.Fatalf("Ping once Redis is up = %v", err)
	}
	if m := l.Mode(); m != "single" {
		t.Errorf("Mode once Redis answered = %q, want single", m)
	}
	g, err := l.Acquire(ctx, "r", "k", b, 2, 1, time.Second)
	if err != nil || g.Granted != 2 {
		t.Fatalf("Acquire once connected = %+v, %v; want 2 granted", g, err)
	}
}
