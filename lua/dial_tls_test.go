package lua_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
	"github.com/sluicehq/sluice/lua/redistest"
	"github.com/sluicehq/sluice/transport"
	"github.com/sluicehq/sluice/transport/tlstest"
)

// TestDialRedisOverTLS runs the token bucket against a real redis-server
// that speaks only TLS, with a certificate from a CA the test makes.
func TestDialRedisOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "redis")
	pair := ca.Issue(t, "redis")
	srv := redistest.StartTLSServer(t, pair.CertFile, pair.KeyFile, ca.CertFile)
	roots, _, err := transport.LoadCertPool(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
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
