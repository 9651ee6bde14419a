package api

import (
	"context"
	"fmt"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// ThrottleEstimator is what a rules dry run asks the engine: how the keys of
// a rule would fare under next, its replacement (node's Engine).
type ThrottleEstimator interface {
	EstimateThrottled(ctx context.Context, next rules.Rule) (admin.Throttled, error)
}

// dryRunParam reads PUT /v1/rules's dry_run query parameter.
func dryRunParam(c *gin.Context) (bool, error) {
	raw, ok := c.GetQuery("dry_run")
	if !ok {
		return false, nil
	}
	on, err := strconv.ParseBool(raw)
	if err != nil {
		return false, &check.FieldError{Field: "dry_run", Msg: "must be true or false"}
	}
	return on, nil
}

// dryRunRules answers what applying doc would change, validating it exactly
// as a real PUT does and applying nothing. Every node answers it itself,
// against the rules it decides on (a follower's replicated copy; the answer
// names their version), with estimates from its own engine.
func dryRunRules(ctx context.Context, a admin.Admin, est ThrottleEstimator, doc []byte) (admin.RulesDryRun, error) {
	next, err := admin.ParseRules(doc)
	if err != nil {
		return admin.RulesDryRun{}, err
	}
	cur, err := a.Rules(ctx)
	if err != nil {
		return admin.RulesDryRun{}, err
	}
	old, err := rules.Parse(fmt.Appendf(nil, `{"rules": %s}`, cur.Rules))
	if err != nil {
		return admin.RulesDryRun{}, fmt.Errorf("the rules in force (version %d) do not parse: %w", cur.Version, err)
	}
	out := admin.RulesDryRun{DryRun: true, Version: cur.Version, Change: rules.Diff(old, next), Throttled: map[string]admin.Throttled{}}
	if est == nil {
		return out, nil
	}
	byName := make(map[string]rules.Rule, len(next.Rules))
	for _, r := range next.Rules {
		byName[r.Name] = r
	}
	for _, rc := range out.Changed {
		if !estimable(rc) {
			continue
		}
		t, err := est.EstimateThrottled(ctx, byName[rc.Name])
		if err != nil {
			return admin.RulesDryRun{}, fmt.Errorf("estimating rule %q: %w", rc.Name, err)
		}
		out.Throttled[rc.Name] = t
	}
	return out, nil
}

// estimable: the rule keeps its key and kind, so its buckets or counters
// carry over to the new version and can be judged under it.
func estimable(rc rules.RuleChange) bool {
	for _, f := range rc.Fields {
		if f.Field == "key" || f.Field == "kind" {
			return false
		}
	}
	return true
}
