package lua_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/transport"
	"github.com/sluicehq/sluice/transport/tlstest"
)

// startTLSRedis starts a TLS-only redis-server with a certificate from a CA
// made for the test, and returns it with that CA as a pool.
func startTLSRedis(t *testing.T) (*redistest.Server, *x509.CertPool) {
	t.Helper()
	ca := tlstest.NewCA(t, "redis")
	pair := ca.Issue(t, "redis")
	srv := redistest.StartTLSServer(t, pair.CertFile, pair.KeyFile, ca.CertFile)
	roots, _, err := transport.LoadCertPool(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	return srv, roots
}

// TestDialRedisOverTLS runs the token bucket against a real redis-server
// that speaks only TLS, with a certificate from a CA the test makes.
func TestDialRedisOverTLS(t *testing.T) {
	srv, roots := startTLSRedis(t)
	acquire := func(spec, mode string, opts ...lua.DialOption) error {
		rdb, err := lua.Dial(t.Context(), spec, mode, 2*time.Second, opts...)
		if err != nil {
			return err
		}
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = lua.NewLimiter(rdb).Acquire(ctx, "r", "k", lua.Bucket{Rate: 1, Per: time.Second, Burst: 5}, 1, 1, time.Second)
		return err
	}
	for _, mode := range []string{"single", "auto"} {
		if err := acquire("rediss://"+srv.Addr(), mode, lua.WithRootCAs(roots)); err != nil {
			t.Fatalf("%s mode over TLS with --redis-ca-cert: %v", mode, err)
		}
	}
	if err := acquire("rediss://"+srv.Addr(), "single"); err == nil {
		t.Fatal("a server certificate from an unknown CA was trusted without --redis-ca-cert")
	}
	if err := acquire("redis://"+srv.Addr(), "single"); err == nil {
		t.Fatal("plain redis:// reached a TLS-only server")
	}
	if _, err := lua.Dial(t.Context(), "redis://"+srv.Addr(), "single", time.Second, lua.WithRootCAs(roots)); err == nil {
		t.Fatal("a CA for a plain redis:// address was accepted silently")
	}
}

// TestTLSClientServesAfterIdleWithProductionTimeout uses the default 50 ms
// budget, as a node does, after the client sat idle: a pool that pre-dials
// TLS connections failed every call here.
func TestTLSClientServesAfterIdleWithProductionTimeout(t *testing.T) {
	srv, roots := startTLSRedis(t)
	const budget = 50 * time.Millisecond
	rdb, err := lua.Dial(t.Context(), "rediss://"+srv.Addr(), "single", budget, lua.WithRootCAs(roots))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	limiter := lua.NewLimiter(rdb)
	call := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), budget)
		defer cancel()
		_, err := limiter.Acquire(ctx, "r", "k", lua.Bucket{Rate: 1000, Per: time.Second, Burst: 1000}, 1, 1, time.Second)
		return err
	}
	time.Sleep(500 * time.Millisecond) // idle, as a node between its start and its first check
	// The very first call pays the process's first handshake and may miss
	// the budget (a node then decides in fallback until its probe succeeds);
	// after that, calls must succeed.
	deadline := time.Now().Add(5 * time.Second)
	for call() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no call within the 50 ms budget succeeded over TLS in 5 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	failed := 0
	for range 10 {
		time.Sleep(200 * time.Millisecond)
		if err := call(); err != nil {
			failed++
			t.Log(err)
		}
	}
	if failed > 1 {
		t.Fatalf("%d of 10 calls after the first success failed", failed)
	}
}

// TestClusterTLSVerifiesEachNodeByItsOwnName: the cluster client meets nodes
// beyond its seeds, so it must not pin the first seed's host as the name.
func TestClusterTLSVerifiesEachNodeByItsOwnName(t *testing.T) {
	ca := tlstest.NewCA(t, "redis")
	roots, _, err := transport.LoadCertPool(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := lua.Dial(t.Context(), "rediss://a.example:1,rediss://b.example:2", "cluster", time.Second, lua.WithRootCAs(roots))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cfg := rdb.(*redis.ClusterClient).Options().TLSConfig
	if cfg == nil || cfg.RootCAs != roots || cfg.ServerName != "" {
		t.Fatalf("cluster TLS config = %+v", cfg)
	}
}
