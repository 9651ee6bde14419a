package engine

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// DecideAll decides several requests as one: the answer is allowed only if
// every request is, and when any request is denied every token taken for
// any of them goes back, so a rejected group consumes nothing. out[i]
// receives request i's own decision (whether it alone would pass, with its
// limits); out must be as long as reqs. Envoy's rate limit service uses it:
// one Envoy request carries several descriptors that must hold together.
//
// All requests are decided against one rules snapshot and one clock
// reading. A request with a bad cost or out of check's bounds fails the
// call before any token moves.
func (e *Engine) DecideAll(ctx context.Context, reqs []check.Request, out []check.Decision) (allowed bool, err error) {
	if len(out) != len(reqs) {
		return false, errors.New("node: DecideAll needs one decision per request")
	}
	for i := range reqs {
		if reqs[i].EffectiveCost() < 1 {
			return false, check.InBatch(&check.FieldError{Field: "cost", Msg: "must be an integer >= 1"}, i)
		}
	}
	now := e.now()
	rs := e.rules.Load()
	if rs.version == 0 {
		return false, ErrNoRules
	}
	for i := range reqs {
		if err := rs.withinBounds(reqs[i].Attributes); err != nil {
			return false, check.InBatch(err, i)
		}
	}
	bm := batchMetrics{m: e.metrics}
	defer bm.done(e.now, now)
	applicable := make([][]int, len(reqs))
	modes := make([][]check.Mode, len(reqs))
	allowed = true
	for i := range reqs {
		applicable[i] = rs.compiled.Applicable(reqs[i].Attributes, nil)
		modes[i] = e.takeEach(ctx, rs, applicable[i], reqs[i].Attributes, reqs[i].EffectiveCost(), now,
			&out[i], make([]check.Mode, 0, len(applicable[i])))
		allowed = allowed && out[i].Allowed
	}
	for i := range reqs {
		if !allowed {
			e.refund(rs, applicable[i], modes[i], reqs[i].Attributes, out[i].Results, reqs[i].EffectiveCost(), now)
		}
		summarize(&out[i])
		rs.recordHitters(applicable[i], &out[i], reqs[i].EffectiveCost(), now)
		bm.observe(rs, applicable[i], &out[i])
	}
	return allowed, nil
}

// Rule returns the installed rule with the given name, for callers that
// describe a decision's limit in their own terms (Envoy's requests per unit).
func (e *Engine) Rule(name string) (rules.Rule, bool) {
	c := e.rules.Load().compiled
	i, ok := c.Index(name)
	if !ok {
		return rules.Rule{}, false
	}
	return c.Rule(i).Rule, true
}
