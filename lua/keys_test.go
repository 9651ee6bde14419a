package lua_test

import (
	"crypto/sha1"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
)

func testKeysExpire(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 50, Per: time.Second, Burst: 5} // full again 100ms after emptying
	e.acquire("k", b, 5, 5, 20*time.Millisecond)
	start := e.redisNow()
	key := lua.RedisKey(e.rule, "k")
	ttl, err := e.rdb.PTTL(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// 100ms to refill plus the 1s margin, less the time since.
	if ttl <= 900*time.Millisecond || ttl > 1100*time.Millisecond {
		t.Errorf("PTTL %s = %v, want about 1.1s", key, ttl)
	}
	if n, err := e.rdb.Exists(t.Context(), key+":g").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS %s:g = %d, %v: grants live in the bucket's hash", key, n, err)
	}
	waitUntil(t, 5*time.Second, "the key to expire", func() bool {
		n, err := e.rdb.Exists(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if gone := e.redisNow().Sub(start); gone < 900*time.Millisecond {
		t.Errorf("key gone after %v, before the bucket was full plus the margin", gone)
	}
	if remaining, _ := e.peek("k", b); remaining != b.Burst {
		t.Errorf("after expiry remaining %d, want a full bucket of %d", remaining, b.Burst)
	}
}

func testLongKey(t *testing.T, e *env) {
	if got, want := lua.RedisKey("per-ip", "203.0.113.7"), "sluice:{per-ip:203.0.113.7}"; got != want {
		t.Errorf("RedisKey = %q, want %q", got, want)
	}
	fits := strings.Repeat("x", 128-len("r:"))
	if got := lua.RedisKey("r", fits); got != "sluice:{r:"+fits+"}" {
		t.Errorf("a key filling 128 bytes was hashed: %q", got)
	}
	long := fits + "y"
	hashed := lua.RedisKey("r", long)
	if !strings.HasPrefix(hashed, "sluice:{r:h:") || len(hashed) != len("sluice:{r:h:}")+64 {
		t.Errorf("a key past 128 bytes: %q, want sluice:{r:h:<sha256 hex>}", hashed)
	}
	if lua.RedisKey("r", long+"z") == hashed {
		t.Error("two long keys share a bucket")
	}
	// A client must not be able to name a long key's bucket by sending its hash.
	forged := strings.TrimSuffix(strings.TrimPrefix(hashed, "sluice:{r:"), "}")
	if lua.RedisKey("r", forged) == hashed {
		t.Errorf("key %q names the bucket of a long key", forged)
	}

	b := lua.Bucket{Rate: 10, Per: time.Second, Burst: 10}
	if g := e.acquire(long, b, 3, 3, time.Minute); g.Granted != 3 {
		t.Fatalf("long key grant %+v", g)
	}
	key := lua.RedisKey(e.rule, long)
	if n, err := e.rdb.Exists(t.Context(), key).Result(); err != nil || n != 1 {
		t.Errorf("EXISTS %s = %d, %v; want 1", key, n, err)
	}
	// The legacy grant set, read when adopting an earlier version's bucket, shares the slot.
	if cc, ok := e.rdb.(*redis.ClusterClient); ok {
		s1, err1 := cc.ClusterKeySlot(t.Context(), key).Result()
		s2, err2 := cc.ClusterKeySlot(t.Context(), key+":g").Result()
		if err1 != nil || err2 != nil || s1 != s2 {
			t.Errorf("bucket and grant keys in slots %d and %d (%v, %v), want one", s1, s2, err1, err2)
		}
	}
}

func testNoscriptReload(t *testing.T, e *env) {
	// The script Redis runs is common.lua's helpers followed by token_bucket.lua.
	common, err := os.ReadFile("common.lua")
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("token_bucket.lua")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(string(common) + "\n" + string(body)))
	sha := hex.EncodeToString(sum[:])
	b := lua.Bucket{Rate: 10, Per: time.Second, Burst: 10}
	e.acquire("k", b, 1, 1, time.Second)
	if !scriptLoaded(t, e, "k", sha) {
		t.Fatal("script not loaded after a call")
	}
	if err := e.rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if scriptLoaded(t, e, "k", sha) {
		t.Fatal("script still loaded after SCRIPT FLUSH")
	}
	if g := e.acquire("k", b, 1, 1, time.Second); g.Granted != 1 {
		t.Fatalf("after SCRIPT FLUSH: %+v, want a grant", g)
	}
	if !scriptLoaded(t, e, "k", sha) {
		t.Fatal("script not reloaded after NOSCRIPT")
	}
}

// scriptLoaded asks the server holding key's bucket whether it has the script.
func scriptLoaded(t *testing.T, e *env, key, sha string) bool {
	t.Helper()
	var node redis.Scripter = e.rdb
	if cc, ok := e.rdb.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(t.Context(), lua.RedisKey(e.rule, key))
		if err != nil {
			t.Fatal(err)
		}
		node = master
	}
	exists, err := node.ScriptExists(t.Context(), sha).Result()
	if err != nil {
		t.Fatal(err)
	}
	return exists[0]
}
