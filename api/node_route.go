package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api/admin"
)

// decisionsMetric is the engine's decision counter (node/engine/metrics.go), the
// one record of how many decisions each rule made.
const decisionsMetric = "sluice_decisions_total"

// nodeInfoHandler serves GET /v1/node: what the node says of itself plus
// its decision counters, summed over modes.
func nodeInfoHandler(self func() admin.NodeInfo, metrics prometheus.Gatherer) gin.HandlerFunc {
	return func(c *gin.Context) {
		info := self()
		counts, err := decisionCounts(metrics)
		if err != nil {
			writeError(c, err)
			return
		}
		info.Decisions = counts
		info.TimeMs = time.Now().UnixMilli()
		c.JSON(http.StatusOK, info)
	}
}

// decisionCounts reads rule → result → count from the decision counter.
func decisionCounts(metrics prometheus.Gatherer) (map[string]map[string]uint64, error) {
	families, err := metrics.Gather()
	if err != nil {
		return nil, err
	}
	counts := map[string]map[string]uint64{}
	for _, f := range families {
		if f.GetName() != decisionsMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			var rule, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "rule":
					rule = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if counts[rule] == nil {
				counts[rule] = map[string]uint64{}
			}
			counts[rule][result] += uint64(m.GetCounter().GetValue())
		}
	}
	return counts, nil
}
