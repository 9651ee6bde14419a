// Package testkit holds the test helpers that the engine's tests and the
// raft member's tests share (node/engine and node are separate packages, so
// neither's _test files can serve the other). It imports neither package.
package testkit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/lua"
)

// WaitFor polls cond every 5 ms and fails the test if it is still false
// after limit.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MustRules parses a rules document or fails the test.
func MustRules(t testing.TB, doc string) *rules.Set {
	t.Helper()
	set, err := rules.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return set
}

// Attrs builds request attributes from name, value pairs.
func Attrs(kv ...string) check.Attrs {
	var a check.Attrs
	for i := 0; i < len(kv); i += 2 {
		a = append(a, check.Attr{Name: kv[i], Value: kv[i+1]})
	}
	return a
}

// DialRedis connects to a standalone server (one address) or a cluster
// (several) as `sluice serve --redis` does, with the script already loaded
// so that every later call is exactly one EVALSHA.
func DialRedis(t testing.TB, timeout time.Duration, addrs ...string) redis.UniversalClient {
	t.Helper()
	mode := "single"
	if len(addrs) > 1 {
		mode = "cluster"
	}
	rdb, err := lua.Dial(context.Background(), strings.Join(addrs, ","), mode, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lua.NewLimiter(rdb).Peek(ctx, "warmup", "k", lua.Bucket{Rate: 1, Per: time.Second, Burst: 1}); err != nil {
		t.Fatalf("loading the script: %v", err)
	}
	return rdb
}

// Runner is what RunEngine drives: the engine's background work and its
// shutdown.
type Runner interface {
	Run(ctx context.Context)
	Close(ctx context.Context)
}

// RunEngine runs e's background work until the test ends, then closes it
// (settling what it holds in Redis).
func RunEngine(t testing.TB, e Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		closeCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		e.Close(closeCtx)
	})
}
