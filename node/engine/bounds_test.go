package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// boundsRules has a rule keyed on three attributes, whose key can pass
// check.MaxKeyBytes although each value is within check.MaxValueBytes.
const boundsRules = `{"rules": [
	{"name": "q", "key": ["tenant"], "quota": {"limit": 100, "per": "month"}},
	{"name": "triple", "match": {"route": "/t"}, "key": ["a", "b", "c"], "limit": {"rate": 10, "per": "1s"}}]}`

func wantFieldError(t *testing.T, err error, field, msg string) {
	t.Helper()
	var fe *check.FieldError
	if !errors.As(err, &fe) || fe.Field != field || !strings.Contains(fe.Msg, msg) {
		t.Fatalf("err %v, want a FieldError on %q containing %q", err, field, msg)
	}
}

// The engine refuses what the HTTP decoders refuse, for in-process callers
// (the gin middleware on an engine) and as a second line behind them, and
// it refuses before anything is counted.
func TestEngineRefusesOutOfBoundsRequests(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, boundsRules))
	ctx := context.Background()
	huge := strings.Repeat("x", 40<<10)
	_, err := e.Decide(ctx, check.Request{Attributes: attrs("tenant", huge)})
	wantFieldError(t, err, "attributes.tenant", "longer than 4096")

	many := make(check.Attrs, check.MaxAttributes+1)
	for i := range many {
		many[i] = check.Attr{Name: strings.Repeat("n", i+1), Value: "v"}
	}
	_, err = e.Decide(ctx, check.Request{Attributes: append(many, check.Attr{Name: "tenant", Value: "acme"})})
	wantFieldError(t, err, "attributes", "more than 64 attributes")

	v := strings.Repeat("v", check.MaxValueBytes)
	_, err = e.Decide(ctx, check.Request{Attributes: attrs("route", "/t", "a", v, "b", v, "c", "x")})
	wantFieldError(t, err, "attributes", "rule triple's key (a, b, c) would be 8193 bytes, longer than 8192")
	// The same values where the rule does not apply are fine.
	decide(t, e, 1, "route", "/elsewhere", "a", v, "b", v, "c", "x")
	// At the bound exactly, the rule applies.
	if d := decide(t, e, 1, "route", "/t", "a", v, "b", v[:check.MaxKeyBytes-2*check.MaxValueBytes], "c", ""); len(d.Results) != 1 {
		t.Fatalf("key of exactly %d bytes: %+v, want the rule to apply", check.MaxKeyBytes, d)
	}
	if n := e.quotas.local.counters.len(); n != 0 {
		t.Fatalf("%d quota counters after refused requests, want none", n)
	}
}

// A batch (and DecideAll) is checked whole before any request is decided:
// a bad request at the end leaves the earlier ones' tokens alone.
func TestBatchOutOfBoundsChangesNothing(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, boundsRules))
	reqs := []check.Request{
		{Attributes: attrs("tenant", "acme"), Cost: 5},
		{Attributes: attrs("tenant", strings.Repeat("x", check.MaxValueBytes+1))},
	}
	err := e.DecideBatch(context.Background(), reqs, make([]check.Decision, 2))
	wantFieldError(t, err, "requests[1].attributes.tenant", "longer than 4096")
	_, err = e.DecideAll(context.Background(), reqs, make([]check.Decision, 2))
	wantFieldError(t, err, "requests[1].attributes.tenant", "longer than 4096")
	if n := e.quotas.local.counters.len(); n != 0 {
		t.Fatalf("%d quota counters after a refused batch, want none", n)
	}
}

// Every key the engine accepts fits in bbolt, so a quota key storage cannot
// hold is refused when it is decided, not when it is written.
func TestLongestKeyFitsTheQuotaStore(t *testing.T) {
	name := strings.Repeat("r", 64)
	keys := make([]string, check.MaxAttributes)
	for i := range keys {
		keys[i] = strings.Repeat("k", i+1)
	}
	r := rules.Rule{Name: name, Key: keys, Quota: &rules.Quota{Limit: 1, Per: rules.Month}}
	set := &rules.Set{Rules: []rules.Rule{r}}
	c := rules.Compile(set)
	// Worst case: values of escape bytes only, MaxKeyBytes in total.
	var in check.Attrs
	left := check.MaxKeyBytes
	for _, k := range keys {
		n := min(left, check.MaxValueBytes)
		left -= n
		in = append(in, check.Attr{Name: k, Value: strings.Repeat("\x1f", n)})
	}
	if got := c.Rule(0).KeyValueBytes(in); got != check.MaxKeyBytes {
		t.Fatalf("test key is %d bytes, want %d", got, check.MaxKeyBytes)
	}
	if key := c.Rule(0).AppendKey(nil, in); len(key) > bolt.MaxKeySize {
		t.Fatalf("stored key of %d bytes exceeds bbolt's %d", len(key), bolt.MaxKeySize)
	}
}

// One counter bbolt cannot store must not stop the write-behind of the
// others, and a graceful restart keeps their use.
func TestQuotaFlushWritesAroundAnUnstorableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quotas.db")
	store, err := OpenQuotaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	wall := &fakeWall{t: utc(2027, time.March, 10, 12, 0, 0)}
	e := New(WithWallClock(wall.now), WithQuotaStore(store))
	e.SetRules(1, mustRules(t, quotaRules("month", 100)))
	decide(t, e, 7, "tenant", "acme")
	// Below the engine's bounds, straight into the counters: a key only a
	// bug (or an older node) could have made.
	q := &rules.Quota{Limit: 100, Per: rules.Month}
	e.quotas.local.take([]byte(strings.Repeat("k", bolt.MaxKeySize+1)), q, 3, wall.now())
	decide(t, e, 4, "tenant", "globex")

	err = e.quotas.local.flush()
	if err == nil || !strings.Contains(err.Error(), "key too large") {
		t.Fatalf("flush: %v, want the refused key reported", err)
	}
	e.quotas.local.mu.Lock()
	pending := len(e.quotas.local.dirty)
	e.quotas.local.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d counters still queued after the flush, want 0 (the refused one is not retried)", pending)
	}
	decide(t, e, 1, "tenant", "acme") // dirty again after the flush
	e.Close(context.Background())

	store, err = OpenQuotaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	e = New(WithWallClock(wall.now), WithQuotaStore(store))
	defer e.Close(context.Background())
	e.SetRules(1, mustRules(t, quotaRules("month", 100)))
	for key, want := range map[string]int64{"acme": 8, "globex": 4} {
		if u, err := e.Usage(context.Background(), "q", key); err != nil || *u.Used != want {
			t.Fatalf("%s after a graceful restart: %+v, %v; want %d used", key, u, err, want)
		}
	}
}
