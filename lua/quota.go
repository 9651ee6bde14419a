package lua

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"
)

//go:embed quota.lua
var quotaSource string

// quotaScript is the quota script (see newScript).
var quotaScript = newScript(quotaSource)

// Window is a quota's calendar window [Start, End). The caller computes it from its own
// clock; the script accepts it only if Redis TIME lies inside, so Redis decides.
type Window struct {
	Start, End time.Time
}

// QuotaGrant is the answer to AcquireQuota.
type QuotaGrant struct {
	// InWindow is false when Redis TIME is outside the window asked about: nothing
	// happened, and Now says which window to ask about instead.
	InWindow bool
	// Now is Redis TIME when the script ran.
	Now       time.Time
	ID        int64         // names the grant for settling; 0 when nothing was granted
	Granted   int64         // tokens handed out, between min and want, or 0
	Remaining int64         // tokens of the quota neither consumed nor out in grants
	TTL       time.Duration // how long Redis keeps the grant: the asked TTL cut at the window's end
}

// QuotaUsage is the answer to PeekQuota.
type QuotaUsage struct {
	InWindow  bool
	Now       time.Time
	Used      int64 // consumed plus out in grants
	Reserved  int64 // out in grants not yet settled (part of Used)
	Remaining int64
}

// AcquireQuota first adds charge to the window's consumption (tokens a node admitted while
// Redis was unreachable) and settles prev, then asks for want tokens of the quota, accepting
// any amount from min up. A grant counts as consumed once its TTL has passed by Redis time
// unless settled earlier; the TTL is cut at the window's end, so no grant outlives its
// window. want 0 only charges and settles.
func (l *Limiter) AcquireQuota(ctx context.Context, rule, key string, w Window, limit, charge int64, prev Settlement, want, min int64, ttl time.Duration) (QuotaGrant, error) {
	v, err := l.runQuota(ctx, rule, key, w, limit, 6, "acquire",
		want, min, max(ttl.Microseconds(), 1), charge, prev.ID, prev.Granted, prev.Unused)
	if err != nil || v[0] == 0 {
		return QuotaGrant{Now: redisTime(v), InWindow: false}, err
	}
	return QuotaGrant{InWindow: true, Now: redisTime(v), Granted: v[2], ID: v[3], Remaining: v[4],
		TTL: time.Duration(v[5]) * time.Microsecond}, nil
}

// SettleQuota ends a grant of window w, counting granted − unused tokens as consumed. It
// reports whether the grant was still outstanding; one that had expired counted as
// consumed in full.
func (l *Limiter) SettleQuota(ctx context.Context, rule, key string, w Window, limit, grantID, granted, unused int64) (found bool, err error) {
	v, err := l.runQuota(ctx, rule, key, w, limit, 3, "settle", grantID, granted, unused)
	if err != nil || v[0] == 0 {
		return false, err
	}
	return v[2] == 1, nil
}

// PeekQuota reports a window's usage, changing nothing.
func (l *Limiter) PeekQuota(ctx context.Context, rule, key string, w Window, limit int64) (QuotaUsage, error) {
	v, err := l.runQuota(ctx, rule, key, w, limit, 5, "peek")
	if err != nil || v[0] == 0 {
		return QuotaUsage{Now: redisTime(v)}, err
	}
	return QuotaUsage{InWindow: true, Now: redisTime(v), Used: v[2], Remaining: v[3], Reserved: v[4]}, nil
}

// ResetQuota starts window w over: what was consumed is forgotten, while tokens still out
// in grants stay counted until they are settled or expire, so a reset never lets the
// cluster spend a slice's tokens twice.
func (l *Limiter) ResetQuota(ctx context.Context, rule, key string, w Window) (inWindow bool, now time.Time, err error) {
	v, err := l.runQuota(ctx, rule, key, w, 1, 2, "reset")
	if err != nil {
		return false, time.Time{}, err
	}
	return v[0] == 1, redisTime(v), nil
}

// runQuota calls the quota script's op for one window. A reply for a window that does not
// hold Redis TIME has just two values, {0, now}; others must have n.
func (l *Limiter) runQuota(ctx context.Context, rule, key string, w Window, limit int64, n int, op string, opArgs ...int64) ([]int64, error) {
	k := QuotaKey(rule, key, w.Start)
	args := make([]any, 0, 4+len(opArgs))
	args = append(args, op, limit, w.Start.UnixMicro(), w.End.UnixMicro())
	for _, a := range opArgs {
		args = append(args, a)
	}
	rdb, err := l.client()
	if err != nil {
		return nil, err
	}
	res, err := quotaScript.Run(ctx, rdb, []string{k, grantsKey(k)}, args...).Result()
	if err != nil {
		l.rereadSlotsAfter(rdb, err)
		return nil, fmt.Errorf("quota %s %s: %w", op, k, err)
	}
	if items, ok := res.([]any); ok && len(items) == 2 && n != 2 {
		n = 2 // out of window
	}
	v, err := int64s(res, n)
	if err != nil {
		return nil, fmt.Errorf("quota %s %s: %w", op, k, err)
	}
	return v, nil
}

func redisTime(v []int64) time.Time {
	if len(v) < 2 {
		return time.Time{}
	}
	return time.UnixMicro(v[1])
}

// QuotaKey names the hash holding (rule, key)'s count for the window starting at start:
// sluice:{q:<rule>:<key>}:<start µs>. Every window of one key shares the hash tag, so one
// slot; "q:" keeps quota keys apart from token bucket keys, and rule names cannot contain
// ':', so the tag names one (rule, key) only. Long keys are hashed as in RedisKey.
func QuotaKey(rule, key string, start time.Time) string {
	return RedisKey("q:"+rule, key) + ":" + strconv.FormatInt(start.UnixMicro(), 10)
}
