package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/fsm/rules"
)

// ThrottleEstimator is what a rules dry run asks the engine: how the keys of
// a rule would fare under next, its replacement (node's Engine).
type ThrottleEstimator interface {
	EstimateThrottled(ctx context.Context, next rules.Rule) (admin.Throttled, error)
}

// demandEstimator counts, for a rate-limit rule, the keys whose demand over
// the last minute, cluster-wide (admitted plus denied cost, from the heavy
// hitters GET /v1/top merges), certainly exceeds what the new limit admits
// in a minute: burst + rate·60 s. A key's listed costs are upper bounds
// within Error each, so its demand counts as the sum less both errors.
// Quota rules, and a node that keeps no top keys, are estimated by engine
// (bucket state).
type demandEstimator struct {
	top    *top.Service
	engine ThrottleEstimator
}

func (d demandEstimator) EstimateThrottled(ctx context.Context, next rules.Rule) (admin.Throttled, error) {
	if next.Limit == nil {
		return d.fallback(ctx, next)
	}
	demand := map[string]int64{}
	truncated := false
	for _, by := range []string{top.ByAdmitted, top.ByDenied} {
		t, err := d.top.Top(ctx, top.Query{Rule: next.Name, Window: "1m", By: by, K: top.MaxK})
		if errors.Is(err, admin.ErrUnavailable) {
			return d.fallback(ctx, next)
		}
		if err != nil {
			return admin.Throttled{}, err
		}
		for _, rt := range t.Rules {
			truncated = truncated || len(rt.Keys) == top.MaxK
			for _, k := range rt.Keys {
				demand[k.Key] = max(demand[k.Key], k.Admitted+k.Denied-2*k.Error)
			}
		}
	}
	l := next.Limit
	perMinute := float64(l.Burst) + float64(l.Rate)*float64(time.Minute)/float64(time.Duration(l.Per))
	out := admin.Throttled{Measure: admin.MeasureDemand, ActiveKeys: len(demand), Truncated: truncated}
	for _, cost := range demand {
		if float64(cost) > perMinute {
			out.AtOnce++
		}
	}
	return out, nil
}

func (d demandEstimator) fallback(ctx context.Context, next rules.Rule) (admin.Throttled, error) {
	if d.engine == nil {
		return admin.Throttled{}, fmt.Errorf("%w: this node keeps neither top keys nor an engine to estimate from", admin.ErrUnavailable)
	}
	return d.engine.EstimateThrottled(ctx, next)
}

// boolParam reads an optional true/false query parameter (absent: false).
func boolParam(c *gin.Context, name string) (bool, error) {
	raw, ok := c.GetQuery(name)
	if !ok {
		return false, nil
	}
	on, err := strconv.ParseBool(raw)
	if err != nil {
		return false, &check.FieldError{Field: name, Msg: "must be true or false"}
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
