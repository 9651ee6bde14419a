package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Demand returns how many decisions the engine has made per installed rule
// since it started, allowed or not, in every mode: the demand a node reports
// to the leader, which sizes its lease from it (Config.Demand). It reads
// the decision counters the hot path already increments, so measuring
// demand adds nothing to a decision; without metrics it reports nothing.
func (e *Engine) Demand() map[string]float64 {
	if e.metrics == nil {
		return nil
	}
	rs := e.rules.Load()
	out := make(map[string]float64, rs.compiled.Len())
	for i := range rs.compiled.Len() {
		out[rs.compiled.Rule(i).Rule.Name] = rs.counters[i].value()
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
