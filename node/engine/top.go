package engine

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/buckets/hitters"
)

// WithHitters keeps each rule's heavy hitters, the keys with the most
// admitted and denied cost over the last 10 s and minute (GET /v1/top):
// about 990 KB per rule that decides, and per decision and applicable rule
// about 22-25 ns of CPU per Record, which adds 20-27 ns to a one-rule
// decision on a hot key and ~37 ns over thousands of keys
// (docs/PERFORMANCE.md).
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
