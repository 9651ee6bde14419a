package engine

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/buckets"
	"github.com/sluicehq/sluice/fsm/rules"
)

// maxEstimateKeys bounds the keys one rule's estimate looks at: each may
// cost a Redis round trip in global mode.
const maxEstimateKeys = 1000

// estimateTimeout bounds one rule's estimate as a whole.
const estimateTimeout = 5 * time.Second

// EstimateThrottled answers, for a rules dry run, how many of the keys of
// rule next.Name that this engine holds state for (bucket or quota counter:
// used lately and not yet refilled or swept) would be throttled at once if
// next replaced the current rule: their bucket, carried over to next's limit
// as SetRules carries it, holds less than one token, or their quota window
// has nothing left. In global mode the state read is Redis's, so the count
// covers every node's use of those keys; otherwise this node's buckets only.
// A rule the engine does not have yet has no keys.
func (e *Engine) EstimateThrottled(ctx context.Context, next rules.Rule) (admin.Throttled, error) {
	out := admin.Throttled{Measure: admin.MeasureBucketState}
	if _, ok := e.rules.Load().compiled.Index(next.Name); !ok {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, estimateTimeout)
	defer cancel()
	var lim buckets.Limit
	if l := next.Limit; l != nil {
		lim = buckets.NewLimit(l.Rate, time.Duration(l.Per), l.Burst)
	}
	keys, more := e.heldKeys(next.Name + "\x00")
	out.ActiveKeys, out.Truncated = len(keys), more
	for _, k := range keys {
		_, display := rules.DisplayKeyOf(k)
		u, err := e.usage(ctx, &next, lim, []byte(k), display)
		if err != nil {
			return out, err
		}
		if u.Remaining < 1 {
			out.AtOnce++
		}
	}
	return out, nil
}

// heldKeys lists up to maxEstimateKeys bucket keys starting with prefix
// that any of the engine's tables holds, each once.
func (e *Engine) heldKeys(prefix string) (keys []string, more bool) {
	lists := []func(string, int) ([]string, bool){e.local.Keys, e.fallback.Keys, e.quotas.local.counters.keys}
	if e.global != nil {
		lists = append(lists, e.global.slices.Keys, e.quotas.global.entries.keys)
	}
	seen := map[string]bool{}
	for _, list := range lists {
		found, cut := list(prefix, maxEstimateKeys)
		for _, k := range found {
			if !seen[k] {
				if len(keys) == maxEstimateKeys {
					return keys, true
				}
				seen[k] = true
				keys = append(keys, k)
			}
		}
		more = more || cut
	}
	return keys, more
}
