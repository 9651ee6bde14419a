package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
)

// fakeWall is a settable wall clock for quota windows.
type fakeWall struct {
	mu sync.Mutex
	t  time.Time
}

func (w *fakeWall) now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.t
}

func (w *fakeWall) set(t time.Time) {
	w.mu.Lock()
	w.t = t
	w.mu.Unlock()
}

func utc(year int, month time.Month, day, hour, minute, sec int) time.Time {
	return time.Date(year, month, day, hour, minute, sec, 0, time.UTC)
}

func quotaRules(per string, limit int) string {
	return fmt.Sprintf(`{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": %d, "per": %q}}]}`, limit, per)
}

func usedOf(t *testing.T, r check.Result) int64 {
	t.Helper()
	if r.Used == nil {
		t.Fatalf("quota result %+v has no used", r)
	}
	return *r.Used
}

// TestQuotaWindowBoundaries fills a quota one second before its window ends
// and checks that the next window starts from zero exactly at the boundary,
// for the calendar's awkward edges.
func TestQuotaWindowBoundaries(t *testing.T) {
	for _, c := range []struct {
		name     string
		per      string
		lastSec  time.Time // one second before the window ends
		next     time.Duration
		nextName string
	}{
		{"end of a 31-day month", "month", utc(2027, time.January, 31, 23, 59, 59), 28 * 24 * time.Hour, "February 2027"},
		{"end of a leap February", "month", utc(2028, time.February, 29, 23, 59, 59), 31 * 24 * time.Hour, "March 2028"},
		{"into a leap February", "month", utc(2028, time.January, 31, 23, 59, 59), 29 * 24 * time.Hour, "February 2028"},
		{"leap day itself", "day", utc(2028, time.February, 29, 23, 59, 59), 24 * time.Hour, "1 March 2028"},
		{"year end, by the day", "day", utc(2027, time.December, 31, 23, 59, 59), 24 * time.Hour, "1 January 2028"},
		{"year end, by the month", "month", utc(2027, time.December, 31, 23, 59, 59), 31 * 24 * time.Hour, "January 2028"},
		{"year end, by the week", "week", utc(2028, time.January, 2, 23, 59, 59), 7 * 24 * time.Hour, "the week of Monday 3 January 2028"},
		{"year end, by the hour", "hour", utc(2027, time.December, 31, 23, 59, 59), time.Hour, "00:00 1 January 2028"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wall := &fakeWall{t: c.lastSec}
			e := New(WithWallClock(wall.now))
			defer e.Close(context.Background())
			e.SetRules(1, mustRules(t, quotaRules(c.per, 3)))
			for i := int64(1); i <= 3; i++ {
				d := decide(t, e, 1, "tenant", "acme")
				if !d.Allowed || d.Remaining != 3-i || usedOf(t, d.Results[0]) != i || d.ResetMs != 1000 || d.Limit != 3 {
					t.Fatalf("take %d a second before the end: %+v %+v", i, d, d.Results)
				}
			}
			d := decide(t, e, 1, "tenant", "acme")
			if d.Allowed || d.Rule != "q" || d.RetryAfterMs != 1000 || d.ResetMs != 1000 || usedOf(t, d.Results[0]) != 3 {
				t.Fatalf("over the quota: %+v, want denied until the window ends in 1 s", d)
			}
			wall.set(c.lastSec.Add(time.Second - time.Nanosecond))
			if d := decide(t, e, 1, "tenant", "acme"); d.Allowed {
				t.Fatalf("allowed a nanosecond before the window's end: %+v", d)
			}
			wall.set(c.lastSec.Add(time.Second))
			d = decide(t, e, 1, "tenant", "acme")
			if !d.Allowed || d.Remaining != 2 || usedOf(t, d.Results[0]) != 1 || d.ResetMs != c.next.Milliseconds() {
				t.Fatalf("first take of %s: %+v, want allowed, 2 left, reset in %v", c.nextName, d, c.next)
			}
		})
	}
}

// TestQuotaRejectedConsumesNothing: a request denied by any rule takes
// nothing from any other, quota or bucket.
func TestQuotaRejectedConsumesNothing(t *testing.T) {
	e := New()
	defer e.Close(context.Background())
	e.SetRules(1, mustRules(t, `{"rules": [
		{"name": "monthly", "key": ["tenant"], "quota": {"limit": 5, "per": "month"}},
		{"name": "strict", "match": {"route": "/strict"}, "key": ["tenant"], "limit": {"rate": 1, "per": "1h", "burst": 1}}]}`))
	if d := decide(t, e, 1, "tenant", "acme", "route", "/strict"); !d.Allowed {
		t.Fatalf("first: %+v", d)
	}
	for range 3 {
		d := decide(t, e, 1, "tenant", "acme", "route", "/strict")
		if d.Allowed || d.Rule != "strict" {
			t.Fatalf("%+v, want denied by the rate limit", d)
		}
		if q := d.Results[0]; q.Rule != "monthly" || q.Remaining != 4 || usedOf(t, q) != 1 {
			t.Fatalf("quota result after the refund: %+v, want 1 used, 4 left", q)
		}
	}
	u, err := e.Usage(context.Background(), "monthly", "acme")
	if err != nil || *u.Used != 1 || u.Remaining != 4 {
		t.Fatalf("usage %+v, %v: the denied requests were counted", u, err)
	}
	// The other way round: a quota denial leaves the bucket alone.
	e.SetRules(2, mustRules(t, `{"rules": [
		{"name": "monthly", "key": ["tenant"], "quota": {"limit": 2, "per": "month"}},
		{"name": "loose", "key": ["tenant"], "limit": {"rate": 1, "per": "1h", "burst": 10}}]}`))
	d := decide(t, e, 2, "tenant", "b")
	if !d.Allowed {
		t.Fatalf("cost 2 of a quota of 2: %+v", d)
	}
	d = decide(t, e, 1, "tenant", "b")
	if d.Allowed || d.Rule != "monthly" || d.Results[1].Remaining != 8 {
		t.Fatalf("%+v, want denied by the quota with the bucket at 8", d)
	}
	if u, _ := e.Usage(context.Background(), "loose", "b"); u.Remaining != 8 || u.Used != nil {
		t.Fatalf("bucket usage %+v, want 8 left and no used", u)
	}
}

// TestQuotaCost: a quota counts cost, so it can be in tokens or bytes.
func TestQuotaCost(t *testing.T) {
	e := New()
	defer e.Close(context.Background())
	e.SetRules(1, mustRules(t, quotaRules("day", 100)))
	if d := decide(t, e, 40, "tenant", "acme"); !d.Allowed || d.Remaining != 60 || usedOf(t, d.Results[0]) != 40 {
		t.Fatalf("cost 40: %+v", d)
	}
	if d := decide(t, e, 70, "tenant", "acme"); d.Allowed || d.Remaining != 60 || d.RetryAfterMs <= 0 {
		t.Fatalf("cost 70 with 60 left: %+v, want denied", d)
	}
	d := decide(t, e, 101, "tenant", "acme")
	if d.Allowed || d.Reason == "" || d.RetryAfterMs != 0 {
		t.Fatalf("cost above the quota: %+v, want denied with a reason and no retry", d)
	}
	if d := decide(t, e, 60, "tenant", "acme"); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("cost 60 with 60 left: %+v", d)
	}
}

// TestQuotaMostRestrictiveSpeaks: the decision's summary (and so the
// X-RateLimit-* headers) is the rule with the fewest remaining.
func TestQuotaMostRestrictiveSpeaks(t *testing.T) {
	e := New()
	defer e.Close(context.Background())
	e.SetRules(1, mustRules(t, `{"rules": [
		{"name": "monthly", "key": ["tenant"], "quota": {"limit": 3, "per": "month"}},
		{"name": "rate", "key": ["tenant"], "limit": {"rate": 100, "per": "1s"}}]}`))
	d := decide(t, e, 1, "tenant", "acme")
	if d.Rule != "monthly" || d.Limit != 3 || d.Remaining != 2 {
		t.Fatalf("%+v, want the quota (2 left) to speak", d)
	}
	e.SetRules(2, mustRules(t, `{"rules": [
		{"name": "monthly", "key": ["tenant"], "quota": {"limit": 1000, "per": "month"}},
		{"name": "rate", "key": ["tenant"], "limit": {"rate": 1, "per": "1h", "burst": 5}}]}`))
	d = decide(t, e, 1, "tenant", "b")
	if d.Rule != "rate" || d.Limit != 1 || d.Remaining != 4 {
		t.Fatalf("%+v, want the bucket (4 left) to speak", d)
	}
}

// TestQuotaSurvivesRestart: local mode's counters persist in the data dir;
// a window that ended while the node was down starts from zero.
func TestQuotaSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quotas.db")
	wall := &fakeWall{t: utc(2027, time.March, 10, 12, 0, 0)}
	open := func() *Engine {
		t.Helper()
		store, err := OpenQuotaStore(path)
		if err != nil {
			t.Fatal(err)
		}
		e := New(WithWallClock(wall.now), WithQuotaStore(store))
		e.SetRules(1, mustRules(t, `{"rules": [
			{"name": "monthly", "key": ["tenant"], "quota": {"limit": 100, "per": "month"}},
			{"name": "daily", "key": ["tenant"], "quota": {"limit": 100, "per": "day"}}]}`))
		return e
	}
	e := open()
	decide(t, e, 30, "tenant", "acme")
	decide(t, e, 7, "tenant", "other")
	e.Close(context.Background())

	e = open()
	for _, c := range []struct {
		rule, key string
		used      int64
	}{{"monthly", "acme", 30}, {"daily", "acme", 30}, {"monthly", "other", 7}} {
		if u, err := e.Usage(context.Background(), c.rule, c.key); err != nil || *u.Used != c.used {
			t.Fatalf("%s/%s after a restart: %+v, %v; want %d used", c.rule, c.key, u, err, c.used)
		}
	}
	if d := decide(t, e, 71, "tenant", "acme"); d.Allowed {
		t.Fatalf("restarted node forgot the quota: %+v", d)
	}
	e.Close(context.Background())

	wall.set(utc(2027, time.March, 11, 0, 0, 0)) // the next day, same month
	e = open()
	defer e.Close(context.Background())
	if u, _ := e.Usage(context.Background(), "daily", "acme"); *u.Used != 0 {
		t.Fatalf("daily quota carried into the next day: %+v", u)
	}
	if u, _ := e.Usage(context.Background(), "monthly", "acme"); *u.Used != 30 {
		t.Fatalf("monthly quota after the day changed: %+v, want 30 used", u)
	}
	if n := e.quotas.local.counters.len(); n != 2 {
		t.Fatalf("%d counters restored, want 2 (the ended day's are dropped)", n)
	}
}

// TestQuotaFlushWritesBehind: Run writes changed counters without a Close,
// so a crash loses at most about a second of use.
func TestQuotaFlushWritesBehind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quotas.db")
	store, err := OpenQuotaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	e := New(WithQuotaStore(store))
	e.SetRules(1, mustRules(t, quotaRules("month", 100)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	decide(t, e, 9, "tenant", "acme")
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.quotas.local.mu.Lock()
		pending := len(e.quotas.local.dirty)
		e.quotas.local.mu.Unlock()
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("counter not written within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The flush empties the dirty list before it writes: wait for the write.
	e.quotas.local.writeMu.Lock()
	e.quotas.local.writeMu.Unlock()
	cancel()
	<-done
	// Read the file as a crashed node's successor would: without Close.
	snapshot := filepath.Join(t.TempDir(), "copy.db")
	if err := store.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(snapshot, 0o600) }); err != nil {
		t.Fatal(err)
	}
	e.Close(context.Background())
	copied, err := OpenQuotaStore(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	if len(copied.loaded) != 1 || copied.loaded[0].used != 9 {
		t.Fatalf("written behind: %+v, want one counter at 9", copied.loaded)
	}
}

func TestQuotaResetLocal(t *testing.T) {
	e := New()
	defer e.Close(context.Background())
	e.SetRules(1, mustRules(t, `{"rules": [
		{"name": "q", "key": ["tenant", "app"], "quota": {"limit": 2, "per": "week"}},
		{"name": "rate", "key": ["tenant"], "limit": {"rate": 100, "per": "1s"}}]}`))
	decide(t, e, 2, "tenant", "acme", "app", "x")
	if d := decide(t, e, 1, "tenant", "acme", "app", "x"); d.Allowed || d.Results[0].Key != "acme|x" {
		t.Fatalf("%+v, want denied by q for key acme|x", d)
	}
	if err := e.ResetUsage(context.Background(), "q", "acme|x"); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.Usage(context.Background(), "q", "acme|x"); *u.Used != 0 || u.Remaining != 2 || u.Mode != check.ModeLocal {
		t.Fatalf("after reset: %+v", u)
	}
	if d := decide(t, e, 2, "tenant", "acme", "app", "y"); !d.Allowed {
		t.Fatalf("after reset: %+v", d)
	}
	for _, c := range []struct {
		rule, key string
		want      error
	}{{"nope", "acme", admin.ErrUnknownRule}, {"rate", "acme", admin.ErrInvalid}} {
		if err := e.ResetUsage(context.Background(), c.rule, c.key); !errors.Is(err, c.want) {
			t.Errorf("reset %s/%s: %v, want %v", c.rule, c.key, err, c.want)
		}
	}
	var fe *check.FieldError
	if _, err := e.Usage(context.Background(), "q", "acme"); !errors.As(err, &fe) || fe.Field != "key" {
		t.Fatalf("usage with a one-value key for a two-attribute rule: %v, want a key field error", err)
	}
}

// BenchmarkEngineDecideQuota is a local quota decision next to a bucket.
func BenchmarkEngineDecideQuota(b *testing.B) {
	e := New()
	e.SetRules(1, mustRules(b, `{"rules": [
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}},
		{"name": "monthly", "key": ["tenant"], "quota": {"limit": 9000000000000000, "per": "month"}}]}`))
	req := check.Request{Attributes: attrs("ip", "203.0.113.7", "tenant", "acme")}
	var d check.Decision
	b.ReportAllocs()
	for b.Loop() {
		if err := e.DecideInto(context.Background(), &req, &d); err != nil || !d.Allowed {
			b.Fatal(err, d)
		}
	}
}
