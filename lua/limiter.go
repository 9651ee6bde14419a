// Package lua holds the authoritative token bucket that keeps a Sluice cluster within its
// limits while Redis is healthy (SPEC §8): the Lua script that grants, settles and reads
// slices atomically by Redis time, and the thin go-redis adapter that calls it. It knows
// nothing about rules; callers pass a bucket's parameters with every call.
package lua

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed token_bucket.lua
var tokenBucketSource string

// tokenBucket is the token bucket script (see newScript).
var tokenBucket = newScript(tokenBucketSource)

// Bucket is a token bucket's parameters: Rate tokens per Per (whole microseconds), holding
// at most Burst.
type Bucket struct {
	Rate  int64
	Per   time.Duration
	Burst int64
}

// Grant is the answer to Acquire.
type Grant struct {
	ID        int64 // names the grant for Settle; 0 when nothing was granted
	Granted   int64 // tokens handed out, between min and want, or 0
	Remaining int64 // whole tokens left in the bucket after this grant
	// RetryAfter is how long until min tokens can be granted: with nothing granted, the
	// real wait (grants that must end first included); after a grant, until refill brings
	// min more (were nothing else taken). It is what a denial reports (SPEC §4).
	RetryAfter time.Duration
	Reset      time.Duration // time until the bucket would be full
	Never      bool          // min exceeds the burst: no wait will ever do
	// TTL is the grant's lifetime in Redis: the ttl asked for, or Roomy.TTL when the
	// roomy slice was granted.
	TTL time.Duration
}

// Roomy asks for a larger, longer-lived grant while the bucket is far from empty: Want
// tokens for TTL, granted only if the bucket still holds at least half its burst after
// them. The zero Roomy asks for nothing more.
type Roomy struct {
	Want int64
	TTL  time.Duration
}

// Limiter runs the token bucket script against Redis, standalone or cluster. Its methods
// are safe for concurrent use; the deadline of ctx bounds each call.
type Limiter struct {
	// rdb is the client; nil while a pending Limiter waits for Redis (pending.go).
	rdb atomic.Pointer[redis.UniversalClient]
	// dial makes the client of a pending Limiter; nil otherwise.
	dial    func(context.Context) (redis.UniversalClient, error)
	dialing sync.Mutex // guards making the client and closed
	closed  bool
}

// NewLimiter returns a Limiter using rdb, typically made by Dial.
func NewLimiter(rdb redis.UniversalClient) *Limiter {
	l := &Limiter{}
	l.rdb.Store(&rdb)
	return l
}

// Acquire asks for want tokens and accepts any amount from min up. A grant counts as
// spent once ttl has passed by Redis time unless settled earlier, so ttl must cover the
// whole time the caller may use it (the slice TTL plus a margin for clock drift).
func (l *Limiter) Acquire(ctx context.Context, rule, key string, b Bucket, want, min int64, ttl time.Duration) (Grant, error) {
	return l.Renew(ctx, rule, key, b, Settlement{}, want, min, ttl)
}

// Settlement ends an earlier grant: Unused of its Granted tokens go back to the bucket.
// The zero Settlement settles nothing.
type Settlement struct {
	ID, Granted, Unused int64
}

// Renew settles prev (as Settle does) and then acquires (as Acquire does) in one round
// trip, so a node renewing a slice costs Redis one call per slice.
func (l *Limiter) Renew(ctx context.Context, rule, key string, b Bucket, prev Settlement, want, min int64, ttl time.Duration) (Grant, error) {
	return l.RenewRoomy(ctx, rule, key, b, prev, want, min, ttl, Roomy{})
}

// RenewRoomy is Renew that grants roomy instead while the bucket is far from empty.
func (l *Limiter) RenewRoomy(ctx context.Context, rule, key string, b Bucket, prev Settlement, want, min int64, ttl time.Duration, roomy Roomy) (Grant, error) {
	c := RenewCall{Rule: rule, Key: key, Bucket: b, Prev: prev, Want: want, Min: min, TTL: ttl, Roomy: roomy}
	v, err := l.run(ctx, rule, key, 6, "acquire", b, c.args()...)
	if err != nil {
		return Grant{}, err
	}
	return grantFrom(v), nil
}

// RenewCall is one renewal for RenewAll, with RenewRoomy's arguments.
type RenewCall struct {
	Rule, Key string
	Bucket    Bucket
	Prev      Settlement
	Want, Min int64
	TTL       time.Duration
	Roomy     Roomy
}

func (c *RenewCall) args() []int64 {
	args := []int64{c.Want, c.Min, c.TTL.Microseconds()}
	if c.Prev.ID != 0 || c.Roomy.Want > c.Want {
		args = append(args, c.Prev.ID, c.Prev.Granted, c.Prev.Unused)
	}
	if c.Roomy.Want > c.Want {
		args = append(args, c.Roomy.Want, c.Roomy.TTL.Microseconds())
	}
	return args
}

func grantFrom(v []int64) Grant {
	g := Grant{Granted: v[0], ID: v[1], Remaining: v[2], Reset: time.Duration(v[4]) * time.Microsecond,
		TTL: time.Duration(v[5]) * time.Microsecond}
	if v[3] < 0 {
		g.Never = true
	} else {
		g.RetryAfter = time.Duration(v[3]) * time.Microsecond
	}
	return g
}

// RenewAll runs many renewals together (see runMany): grants[i] answers
// calls[i] when errs[i] is nil. scripts is how many script runs carried them.
func (l *Limiter) RenewAll(ctx context.Context, calls []RenewCall) (grants []Grant, errs []error, scripts int) {
	grants = make([]Grant, len(calls))
	errs, scripts = l.runMany(ctx, renewMany, len(calls), func(i int) bucketCall {
		c := &calls[i]
		return bucketCall{key: RedisKey(c.Rule, c.Key), b: c.Bucket, opArgs: c.args()}
	}, func(i int, v []int64) { grants[i] = grantFrom(v) })
	return grants, errs, scripts
}

// Settle ends a grant, handing back its unused tokens. It reports whether the grant was
// still outstanding; one that had expired counts as fully spent and returns nothing.
func (l *Limiter) Settle(ctx context.Context, rule, key string, b Bucket, grantID, granted, unused int64) (found bool, err error) {
	v, err := l.run(ctx, rule, key, 1, "settle", b, grantID, granted, unused)
	if err != nil {
		return false, err
	}
	return v[0] == 1, nil
}

// BucketUsage is the answer to Peek.
type BucketUsage struct {
	Remaining int64         // whole tokens in the bucket
	Reset     time.Duration // until the bucket would be full
	Reserved  int64         // tokens out in grants not yet settled
}

// Peek reports a bucket's state, changing nothing.
func (l *Limiter) Peek(ctx context.Context, rule, key string, b Bucket) (BucketUsage, error) {
	v, err := l.run(ctx, rule, key, 3, "peek", b)
	if err != nil {
		return BucketUsage{}, err
	}
	return BucketUsage{Remaining: v[0], Reset: time.Duration(v[1]) * time.Microsecond, Reserved: v[2]}, nil
}

// Ping checks that Redis answers (the fallback probe). A pending Limiter first tries to
// make its client.
func (l *Limiter) Ping(ctx context.Context) error {
	rdb, err := l.connect(ctx)
	if err != nil {
		return err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		l.rereadSlotsAfter(rdb, err)
		return err
	}
	return nil
}

// run calls the script's op for one bucket and returns its integer answer, which must have n values.
func (l *Limiter) run(ctx context.Context, rule, key string, n int, op string, b Bucket, opArgs ...int64) ([]int64, error) {
	bucketKey := RedisKey(rule, key)
	rdb, err := l.client()
	if err != nil {
		return nil, err
	}
	res, err := tokenBucket.Run(ctx, rdb, scriptKeys(bucketKey), scriptArgs(op, b, opArgs...)...).Result()
	if err != nil {
		l.rereadSlotsAfter(rdb, err)
		return nil, fmt.Errorf("token bucket %s %s: %w", op, bucketKey, err)
	}
	v, err := int64s(res, n)
	if err != nil {
		return nil, fmt.Errorf("token bucket %s %s: %w", op, bucketKey, err)
	}
	return v, nil
}

func scriptKeys(bucketKey string) []string { return []string{bucketKey, grantsKey(bucketKey)} }

func scriptArgs(op string, b Bucket, opArgs ...int64) []any {
	args := make([]any, 0, 4+len(opArgs))
	args = append(args, op, b.Rate, b.Per.Microseconds(), b.Burst)
	for _, a := range opArgs {
		args = append(args, a)
	}
	return args
}

// SettleCall is one grant for SettleAll to settle.
type SettleCall struct {
	Rule, Key string
	Bucket    Bucket
	Settlement
}

// SettleAll settles many grants together (see runMany). It returns how many
// grants were still outstanding, how many script runs carried the settles and
// the first error; a grant whose settle failed expires in Redis and counts as
// spent.
func (l *Limiter) SettleAll(ctx context.Context, calls []SettleCall) (found, scripts int, err error) {
	errs, scripts := l.runMany(ctx, settleMany, len(calls), func(i int) bucketCall {
		c := &calls[i]
		return bucketCall{key: RedisKey(c.Rule, c.Key), b: c.Bucket, opArgs: []int64{c.ID, c.Granted, c.Unused}}
	}, func(_ int, v []int64) {
		if v[0] == 1 {
			found++
		}
	})
	for _, e := range errs {
		if e != nil {
			return found, scripts, e
		}
	}
	return found, scripts, nil
}

// rereadSlotsAfter makes a cluster client re-read the slot map after a failure that was
// not a Redis reply. go-redis re-reads it on its own only on MOVED or once a minute, so it
// would keep calling a dead master for up to a minute after a replica took over. The
// re-read runs in the background and go-redis coalesces bursts of them.
func (l *Limiter) rereadSlotsAfter(rdb redis.UniversalClient, err error) {
	var reply redis.Error
	if cluster, ok := rdb.(*redis.ClusterClient); ok && !errors.As(err, &reply) {
		cluster.ReloadState(context.Background())
	}
}

// int64s converts a script reply, a single integer or an array of them, into its first
// n int64s; values after them (added by a newer script) are ignored.
func int64s(res any, n int) ([]int64, error) {
	items, ok := res.([]any)
	if !ok {
		items = []any{res}
	}
	if len(items) < n {
		return nil, fmt.Errorf("script returned %d values, want %d", len(items), n)
	}
	out := make([]int64, n)
	for i, it := range items[:n] {
		if out[i], ok = it.(int64); !ok {
			return nil, fmt.Errorf("script returned %T at %d, want an integer", it, i)
		}
	}
	return out, nil
}

// maxTagLen bounds "<rule>:<key>" inside the hash tag; longer keys are hashed.
const maxTagLen = 128

// RedisKey names the hash holding the bucket of (rule, key): sluice:{<rule>:<key>}. The
// braces make it and its grant set share one Redis Cluster slot. A key that would make the
// tag longer than maxTagLen is replaced by "h:" and its SHA-256 in hex, and so is any key
// already starting with "h:", so a client cannot pick a key that names another's hashed bucket.
func RedisKey(rule, key string) string {
	if len(rule)+1+len(key) > maxTagLen || strings.HasPrefix(key, "h:") {
		sum := sha256.Sum256([]byte(key))
		key = "h:" + hex.EncodeToString(sum[:])
	}
	return "sluice:{" + rule + ":" + key + "}"
}

// grantsKey names the sorted set of a bucket's outstanding grants.
func grantsKey(bucketKey string) string {
	return bucketKey + ":g"
}
