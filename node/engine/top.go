package engine

import (
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets/hitters"
)

// WithHitters keeps each rule's heavy hitters, the keys with the most
// admitted and denied cost over the last 10 s and minute (GET /v1/top):
// about 670 KB per rule that decides, and per decision and applicable rule
// one Record, about 20 ns of CPU, which adds 21-27 ns to a one-rule
// decision, on a hot key or over thousands; a batch records together, a
// lock per rule and 64 decisions (docs/PERFORMANCE.md).
func WithHitters() Option { return func(e *Engine) { e.keepHitters = true } }

// hittersFor returns the summaries of the new rules by rule index, keeping
// those of rules that prev had too; nil when the engine keeps none.
func (e *Engine) hittersFor(next *ruleSet, prev *ruleSet) []*hitters.Rule {
	if !e.keepHitters {
		return nil
	}
	out := make([]*hitters.Rule, next.compiled.Len())
	for i := range out {
		if prev != nil {
			if j, ok := prev.compiled.Index(next.compiled.Rule(i).Rule.Name); ok {
				out[i] = prev.hitters[j]
				continue
			}
		}
		out[i] = new(hitters.Rule)
	}
	return out
}

// recordHitters counts a decision's cost in each applicable rule's heavy
// hitters, on the side its result fell (a shadow rule's denial included).
func (rs *ruleSet) recordHitters(applicable []int, d *check.Decision, cost, now int64) {
	if rs.hitters == nil {
		return
	}
	for n, i := range applicable {
		res := &d.Results[n]
		rs.hitters[i].Record(res.Key, cost, !res.Allowed, now)
	}
}

// hitBatch gathers a batch's records by rule, for DecideBatch to record
// each rule's together (hitters.Rule.RecordAll): a lock per rule and chunk
// instead of one per decision, which cores deciding batches of one rule
// would otherwise contend on (docs/PERFORMANCE.md). nil without hitters.
type hitBatch struct {
	byRule  [][]hitters.Rec // by rule index
	touched []int           // rule indexes with records, in first-use order
}

var hitBatches = sync.Pool{New: func() any { return new(hitBatch) }}

// newHitBatch returns an empty hitBatch for rs's rules, or nil when rs
// keeps no hitters.
func (rs *ruleSet) newHitBatch() *hitBatch {
	if rs.hitters == nil {
		return nil
	}
	hb := hitBatches.Get().(*hitBatch)
	if n := len(rs.hitters) - len(hb.byRule); n > 0 {
		hb.byRule = append(hb.byRule, make([][]hitters.Rec, n)...)
	}
	return hb
}

// add gathers what recordHitters would record for one decision.
func (hb *hitBatch) add(applicable []int, d *check.Decision, cost int64) {
	if hb == nil {
		return
	}
	for n, i := range applicable {
		if len(hb.byRule[i]) == 0 {
			hb.touched = append(hb.touched, i)
		}
		res := &d.Results[n]
		hb.byRule[i] = append(hb.byRule[i], hitters.Rec{Key: res.Key, Cost: cost, Denied: !res.Allowed})
	}
}

// flushHits records what hb gathered, decided at now, and returns hb to
// the pool.
func (rs *ruleSet) flushHits(hb *hitBatch, now int64) {
	if hb == nil {
		return
	}
	for _, i := range hb.touched {
		rs.hitters[i].RecordAll(hb.byRule[i], now)
		clear(hb.byRule[i]) // the keys belong to the batch's requests
		hb.byRule[i] = hb.byRule[i][:0]
	}
	hb.touched = hb.touched[:0]
	hitBatches.Put(hb)
}

// Top returns this node's heavy hitters of rule ("" for every rule) over
// the last window (hitters.Short or hitters.Long).
func (e *Engine) Top(rule string, window time.Duration) ([]admin.RuleHitters, error) {
	rs := e.rules.Load()
	if rs.hitters == nil {
		return nil, fmt.Errorf("%w: this node keeps no top keys", admin.ErrUnavailable)
	}
	now := e.now()
	one := func(i int) admin.RuleHitters {
		a, d := rs.hitters[i].Window(now, window)
		return admin.RuleHitters{Rule: rs.compiled.Rule(i).Rule.Name, Admitted: a, Denied: d}
	}
	if rule != "" {
		i, ok := rs.compiled.Index(rule)
		if !ok {
			return nil, fmt.Errorf("%w: %q", admin.ErrUnknownRule, rule)
		}
		return []admin.RuleHitters{one(i)}, nil
	}
	out := make([]admin.RuleHitters, rs.compiled.Len())
	for i := range out {
		out[i] = one(i)
	}
	return out, nil
}
