package lua_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
)

// scriptRuns is how many renew_many or settle_many runs a batch over these bucket keys
// needs: one per 128 buckets, and on Redis Cluster one per hash slot.
func (e *env) scriptRuns(keys []string) int {
	_, cluster := e.rdb.(*redis.ClusterClient)
	perSlot := map[int]int{}
	for _, k := range keys {
		slot := 0
		if cluster {
			slot = lua.KeySlot(k)
		}
		perSlot[slot]++
	}
	runs := 0
	for _, n := range perSlot {
		runs += (n + 127) / 128
	}
	return runs
}

func keysOf(rule string, calls []lua.SettleCall) []string {
	keys := make([]string, len(calls))
	for i, c := range calls {
		keys[i] = lua.RedisKey(rule, c.Key)
	}
	return keys
}

func (e *env) renewAll(calls []lua.RenewCall) ([]lua.Grant, int) {
	e.t.Helper()
	grants, errs, scripts := e.lim.RenewAll(e.t.Context(), calls)
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("RenewAll call %d (%s): %v", i, calls[i].Key, err)
		}
	}
	return grants, scripts
}

// testRenewAll renews 300 buckets in one batch, more than one script run holds: each
// behaves as its own Renew, in order, so a key named twice sees the first renewal.
func testRenewAll(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	const n = 300
	calls := make([]lua.RenewCall, n)
	keys := make([]string, n)
	for i := range calls {
		calls[i] = lua.RenewCall{Rule: e.rule, Key: "k" + strconv.Itoa(i), Bucket: b, Want: 6, Min: 1, TTL: time.Minute}
		keys[i] = lua.RedisKey(e.rule, calls[i].Key)
	}
	first, scripts := e.renewAll(calls)
	if want := e.scriptRuns(keys); scripts != want {
		t.Errorf("%d renewals made %d script runs, want %d", n, scripts, want)
	}
	for i, g := range first {
		if g.Granted != 6 || g.Remaining != 4 || g.ID == 0 || g.TTL != time.Minute {
			t.Fatalf("first grant of key %d: %+v, want 6 tokens for a minute, 4 left", i, g)
		}
	}
	for i := range calls {
		calls[i].Prev = lua.Settlement{ID: first[i].ID, Granted: 6, Unused: int64(i % 7)}
		calls[i].Want = 10
	}
	// k0 again, after its renewal above emptied it; and a roomy ask on a key of its own.
	calls = append(calls, lua.RenewCall{Rule: e.rule, Key: "k0", Bucket: b, Want: 1, Min: 1, TTL: time.Minute},
		lua.RenewCall{Rule: e.rule, Key: "roomy", Bucket: lua.Bucket{Rate: 1, Per: time.Hour, Burst: 100},
			Want: 5, Min: 1, TTL: time.Second, Roomy: lua.Roomy{Want: 30, TTL: time.Minute}})
	second, _ := e.renewAll(calls)
	for i := range n {
		g, want := second[i], 4+int64(i%7)
		if g.Granted != want || g.Remaining != 0 || g.ID != first[i].ID+1 {
			t.Fatalf("renewal of key %d handing back %d of 6: %+v, want %d tokens as grant %d", i, i%7, g, want, first[i].ID+1)
		}
		if s := e.state(calls[i].Key); s.o != want || s.grantSum != want {
			t.Fatalf("key %d after its renewal: %+v, want only the new grant of %d outstanding", i, s, want)
		}
	}
	if g := second[n]; g.Granted != 0 || g.RetryAfter < 59*time.Minute || g.RetryAfter > time.Hour {
		t.Errorf("k0 named again after its renewal emptied it: %+v, want a denial for about an hour", g)
	}
	if g := second[n+1]; g.Granted != 30 || g.TTL != time.Minute || g.Remaining != 70 {
		t.Errorf("roomy ask in a batch: %+v, want the roomy 30 tokens for a minute", g)
	}
}

// testSlotGroups: renewals of keys sharing a hash slot travel in one script run, the
// others in runs of their own slot (on a standalone server, all in one), and the client's
// idea of a key's slot is the server's.
func testSlotGroups(t *testing.T, e *env) {
	same := sameSlotKeys(e.rule, 20)
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	var calls []lua.RenewCall
	var keys []string
	for i, k := range append(same, "x1", "x2", "x3", "x4", "x5") {
		calls = append(calls, lua.RenewCall{Rule: e.rule, Key: k, Bucket: b, Want: 1 + int64(i%10), Min: 1, TTL: time.Minute})
		keys = append(keys, lua.RedisKey(e.rule, k))
	}
	grants, scripts := e.renewAll(calls)
	if want := e.scriptRuns(keys); scripts != want {
		t.Errorf("%d renewals, 20 of one slot: %d script runs, want %d", len(calls), scripts, want)
	}
	if _, cluster := e.rdb.(*redis.ClusterClient); cluster && scripts > 6 {
		t.Errorf("20 keys of one slot and 5 others took %d script runs, want at most 6", scripts)
	}
	for i, g := range grants {
		if g.Granted != calls[i].Want {
			t.Errorf("%s: granted %d, want %d", calls[i].Key, g.Granted, calls[i].Want)
		}
	}
	cluster, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		return
	}
	for _, k := range append(keys, "plain", "{}x", "a{b}c{d}", "{", lua.RedisKey(e.rule, string(make([]byte, 300)))) {
		slot, err := cluster.ClusterKeySlot(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if int(slot) != lua.KeySlot(k) {
			t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, lua.KeySlot(k), slot)
		}
	}
}

// sameSlotKeys returns n keys whose buckets of rule share one Redis Cluster hash slot.
func sameSlotKeys(rule string, n int) []string {
	target := lua.KeySlot(lua.RedisKey(rule, "s0"))
	keys := []string{"s0"}
	for i := 1; len(keys) < n; i++ {
		if k := "s" + strconv.Itoa(i); lua.KeySlot(lua.RedisKey(rule, k)) == target {
			keys = append(keys, k)
		}
	}
	return keys
}

// testManyInvariant checks tk + o <= burst and o against the grants of every key after
// each batch of a random mix of renewals (some settling a grant) and settles (some wrong,
// some of a grant already settled), over three keys named many times per batch.
func testManyInvariant(t *testing.T, e *env) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	b := lua.Bucket{Rate: 200, Per: time.Second, Burst: 20}
	keys := []string{"a", "b", "c"}
	live := map[string][]lua.Settlement{}
	pop := func(k string) lua.Settlement {
		l := live[k]
		if len(l) == 0 {
			return lua.Settlement{}
		}
		i := rng.IntN(len(l))
		s := l[i]
		live[k] = append(l[:i], l[i+1:]...)
		s.Unused = rng.Int64N(s.Granted + 1)
		if rng.IntN(10) == 0 {
			s.Granted++ // names the wrong amount: must change nothing
		}
		return s
	}
	for step := range 60 {
		var renews []lua.RenewCall
		var settles []lua.SettleCall
		for range 1 + rng.IntN(8) {
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(3) == 0 {
				if s := pop(k); s.ID != 0 {
					settles = append(settles, lua.SettleCall{Rule: e.rule, Key: k, Bucket: b, Settlement: s})
				}
				continue
			}
			want := 1 + rng.Int64N(15)
			c := lua.RenewCall{Rule: e.rule, Key: k, Bucket: b, Want: want, Min: 1 + rng.Int64N(want),
				TTL: time.Duration(5+rng.IntN(40)) * time.Millisecond}
			if rng.IntN(2) == 0 {
				c.Prev = pop(k)
			}
			if rng.IntN(4) == 0 {
				c.Roomy = lua.Roomy{Want: want + 1 + rng.Int64N(10), TTL: time.Duration(10+rng.IntN(90)) * time.Millisecond}
			}
			renews = append(renews, c)
		}
		if len(settles) > 0 {
			if _, _, err := e.lim.SettleAll(t.Context(), settles); err != nil {
				t.Fatal(err)
			}
		}
		grants, _ := e.renewAll(renews)
		for i, g := range grants {
			c := renews[i]
			if g.Granted != 0 && (g.Granted < c.Min || g.Granted > max(c.Want, c.Roomy.Want)) {
				t.Fatalf("step %d: granted %d for want %d, min %d, roomy %d", step, g.Granted, c.Want, c.Min, c.Roomy.Want)
			}
			if g.Granted > 0 {
				live[c.Key] = append(live[c.Key], lua.Settlement{ID: g.ID, Granted: g.Granted})
			}
		}
		for _, k := range keys {
			s := e.state(k)
			if s.tk < 0 || s.tk+float64(s.o) > float64(b.Burst)+1e-9 || s.o != s.grantSum {
				t.Fatalf("step %d, key %s: tk %v, o %d, grants %d: want tk >= 0, tk + o <= %d, o = grants",
					step, k, s.tk, s.o, s.grantSum, b.Burst)
			}
		}
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // let some grants expire
		}
	}
}

// testManyBadArguments: one bad bucket fails its whole run before anything is written
// (its keys share a slot, so on a cluster too they travel in one run).
func testManyBadArguments(t *testing.T, e *env) {
	ok := lua.Bucket{Rate: 10, Per: time.Second, Burst: 10}
	k := sameSlotKeys(e.rule, 4)
	_, errs, _ := e.lim.RenewAll(t.Context(), []lua.RenewCall{
		{Rule: e.rule, Key: k[0], Bucket: ok, Want: 1, Min: 1, TTL: time.Second},
		{Rule: e.rule, Key: k[1], Bucket: ok, Want: 1, Min: 2, TTL: time.Second},
	})
	_, _, serr := e.lim.SettleAll(t.Context(), []lua.SettleCall{
		{Rule: e.rule, Key: k[2], Bucket: ok, Settlement: lua.Settlement{ID: 1, Granted: 1}},
		{Rule: e.rule, Key: k[3], Bucket: lua.Bucket{Per: time.Second, Burst: 1}, Settlement: lua.Settlement{ID: 1, Granted: 1}},
	})
	for name, err := range map[string]error{"renew": errs[0], "renew (min above want)": errs[1], "settle (rate 0)": serr} {
		if err == nil || !strings.Contains(err.Error(), "sluice:") {
			t.Errorf("%s: error %v, want the script to refuse the run", name, err)
		}
	}
	for _, key := range k {
		if n, err := e.rdb.Exists(t.Context(), lua.RedisKey(e.rule, key)).Result(); err != nil || n != 0 {
			t.Errorf("refused run left %s behind: EXISTS = %d, %v", key, n, err)
		}
	}
}
