package lua_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/lua"
)

// commandCalls reads how many times Redis ran each command (INFO commandstats), counting
// the commands scripts call.
func commandCalls(t *testing.T, rdb redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int64{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		calls[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return calls
}

// testBookkeeping checks that a renewal costs Redis a fixed handful of commands: the grants
// are read only when one may have expired, and the key's expiry moves only when it must.
// It needs the server to itself, as INFO commandstats counts every client's commands.
func testBookkeeping(t *testing.T, e *env) {
	b := lua.Bucket{Rate: 1e6, Per: time.Second, Burst: 1e6}
	prev := e.acquire("k", b, 10, 1, time.Minute)
	const renewals = 200
	before := commandCalls(t, e.rdb)
	for range renewals {
		g, err := e.lim.Renew(t.Context(), e.rule, "k", b, lua.Settlement{ID: prev.ID, Granted: prev.Granted, Unused: 2}, 10, 1, time.Minute)
		if err != nil || g.Granted != 10 {
			t.Fatalf("renew: %+v, %v", g, err)
		}
		prev = g
	}
	after := commandCalls(t, e.rdb)
	ran := func(cmd string) int64 { return after[cmd] - before[cmd] }
	t.Logf("per %d renewals: %v", renewals, map[string]int64{"hmget": ran("hmget"), "hset": ran("hset"),
		"hdel": ran("hdel"), "pexpire": ran("pexpire"), "hgetall": ran("hgetall"), "time": ran("time")})
	for cmd, most := range map[string]int64{
		"time": renewals, "hmget": renewals, "hset": renewals, "hdel": renewals,
		"pexpire": renewals / 10, "hgetall": 0, "zrangebyscore": 0, "zrange": 0, "zadd": 0, "zrem": 0,
	} {
		if ran(cmd) > most {
			t.Errorf("%d renewals ran %s %d times, want at most %d", renewals, cmd, ran(cmd), most)
		}
	}
	if s := e.state("k"); s.o != 10 || s.grantSum != 10 {
		t.Errorf("after the renewals: %+v, want only the last grant of 10 outstanding", s)
	}
}

// testAdoptsLegacyGrants: a bucket written by an earlier version keeps its grants in a
// sorted set beside the hash. The first call moves them into the hash, so they still cap
// the bucket, expire and settle as before.
func testAdoptsLegacyGrants(t *testing.T, e *env) {
	ctx := context.Background()
	b := lua.Bucket{Rate: 1, Per: time.Hour, Burst: 10}
	key := lua.RedisKey(e.rule, "k")
	now := e.redisNow().UnixMicro()
	if err := e.rdb.HSet(ctx, key, "tk", "2", "ts", now, "o", 8, "n", 41).Err(); err != nil {
		t.Fatal(err)
	}
	expiry := float64(now + time.Minute.Microseconds())
	if err := e.rdb.ZAdd(ctx, key+":g", redis.Z{Score: expiry, Member: "40:5"}, redis.Z{Score: expiry, Member: "41:3"}).Err(); err != nil {
		t.Fatal(err)
	}
	if remaining, _ := e.peek("k", b); remaining != 2 {
		t.Fatalf("legacy bucket with 8 of 10 out: remaining %d, want 2", remaining)
	}
	g, err := e.lim.Renew(t.Context(), e.rule, "k", b, lua.Settlement{ID: 40, Granted: 5, Unused: 5}, 10, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if g.Granted != 7 || g.ID != 42 {
		t.Fatalf("renew settling legacy grant 40: %+v, want 7 tokens as grant 42", g)
	}
	if s := e.state("k"); s.o != 10 || s.grantSum != 10 {
		t.Fatalf("after adopting: %+v, want grants 41 (3) and 42 (7) outstanding", s)
	}
	if n, err := e.rdb.Exists(ctx, key+":g").Result(); err != nil || n != 0 {
		t.Errorf("legacy grant set still exists (%d, %v)", n, err)
	}
	if !e.settle("k", b, lua.Grant{ID: 41, Granted: 3}, 3) {
		t.Error("adopted legacy grant 41 did not settle")
	}
}
