package lua

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Many buckets' renewals or settles travel together: one renew_many or
// settle_many script run handles up to maxBucketsPerScript buckets (any keys
// on a standalone server; keys of one hash slot on Redis Cluster, where a
// script may touch only one slot), and all of a batch's runs go in one
// pipeline, which a cluster client splits by shard and sends at once. Per
// bucket, Redis then does the same work as a call of its own, without a
// script run's fixed cost each time.

// maxBucketsPerScript bounds one script run, so a large batch does not hold
// Redis (single-threaded) for long: at a few µs per bucket, well under a
// millisecond.
const maxBucketsPerScript = 128

// manyOp is a *_many op of the script: width arguments per bucket after the
// op and the count, answer values per bucket in its reply.
type manyOp struct {
	name          string
	width, answer int
}

var (
	renewMany  = manyOp{name: "renew_many", width: 11, answer: 6}
	settleMany = manyOp{name: "settle_many", width: 6, answer: 1}
)

// bucketCall is one bucket's part of a *_many run: its key, parameters and
// op arguments (fewer than the op's width are padded with zeros).
type bucketCall struct {
	key    string
	b      Bucket
	opArgs []int64
}

// runMany runs op for n buckets (bucket i from call(i)) in as few script runs
// as the server allows, all in one pipeline, and hands bucket i's answer to
// answer. It returns each bucket's error (a failed run fails all its
// buckets) and how many script runs it made.
func (l *Limiter) runMany(ctx context.Context, op manyOp, n int, call func(i int) bucketCall, answer func(i int, v []int64)) (errs []error, scripts int) {
	errs = make([]error, n)
	rdb, err := l.client()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs, 0
	}
	calls := make([]bucketCall, n)
	for i := range calls {
		calls[i] = call(i)
	}
	groups := scriptGroups(rdb, calls)
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(groups))
	for g, group := range groups {
		keys, args := manyArgs(op, calls, group)
		cmds[g] = tokenBucket.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx) // each run's own error is read below
	for g, cmd := range cmds {
		group := groups[g]
		res, err := cmd.Result()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			keys, args := manyArgs(op, calls, group)
			res, err = tokenBucket.Run(ctx, rdb, keys, args...).Result()
		}
		var v []int64
		if err == nil {
			v, err = int64s(res, op.answer*len(group))
		}
		if err != nil {
			l.rereadSlotsAfter(rdb, err)
			for _, i := range group {
				errs[i] = fmt.Errorf("token bucket %s %s: %w", op.name, calls[i].key, err)
			}
			continue
		}
		for j, i := range group {
			answer(i, v[j*op.answer:(j+1)*op.answer])
		}
	}
	return errs, len(groups)
}

// manyArgs are the KEYS and ARGV of one run of op over the buckets group.
func manyArgs(op manyOp, calls []bucketCall, group []int) (keys []string, args []any) {
	keys = make([]string, 0, 2*len(group))
	args = make([]any, 0, 2+op.width*len(group))
	args = append(args, op.name, len(group))
	for _, i := range group {
		c := &calls[i]
		keys = append(keys, c.key, grantsKey(c.key))
		args = append(args, c.b.Rate, c.b.Per.Microseconds(), c.b.Burst)
		for j := range op.width - 3 {
			var v int64
			if j < len(c.opArgs) {
				v = c.opArgs[j]
			}
			args = append(args, v)
		}
	}
	return keys, args
}

// scriptGroups splits calls into script runs: in order, at most
// maxBucketsPerScript each, and on Redis Cluster one hash slot per run.
func scriptGroups(rdb redis.UniversalClient, calls []bucketCall) [][]int {
	_, cluster := rdb.(*redis.ClusterClient)
	var groups [][]int
	open := map[int]int{} // slot -> index in groups of its run being filled
	for i, c := range calls {
		slot := 0
		if cluster {
			slot = KeySlot(c.key)
		}
		g, ok := open[slot]
		if !ok || len(groups[g]) == maxBucketsPerScript {
			g = len(groups)
			groups = append(groups, nil)
			open[slot] = g
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}
