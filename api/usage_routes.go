package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
)

// Usage is what the usage routes need from a node's engine: the state of one
// bucket or quota, and starting a quota's window over.
type Usage interface {
	// Usage reports rule's state for key (the key as decisions show it).
	// Unknown rules fail with admin.ErrUnknownRule.
	Usage(ctx context.Context, rule, key string) (admin.Usage, error)
	// ResetUsage starts rule's current quota window over for key.
	ResetUsage(ctx context.Context, rule, key string) error
}

// registerUsageRoutes serves GET /v1/usage to everyone, like the check API,
// and POST /v1/usage/reset behind the admin guard (SPEC §5, §6).
func registerUsageRoutes(r gin.IRouter, u Usage, guard gin.HandlerFunc) {
	h := usageHandlers{u}
	r.GET("/v1/usage", h.usage)
	r.POST("/v1/usage/reset", guard, h.reset)
}

type usageHandlers struct{ engine Usage }

func (h usageHandlers) usage(c *gin.Context) {
	rule, key := c.Query("rule"), c.Query("key")
	if err := requireRule(rule); err != nil {
		writeError(c, err)
		return
	}
	u, err := h.engine.Usage(c.Request.Context(), rule, key)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, u)
}

func (h usageHandlers) reset(c *gin.Context) {
	var req admin.UsageReset
	if err := decodeStrict(c.Request.Body, &req); err != nil {
		writeError(c, err)
		return
	}
	if err := requireRule(req.Rule); err != nil {
		writeError(c, err)
		return
	}
	if err := h.engine.ResetUsage(c.Request.Context(), req.Rule, req.Key); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"rule": req.Rule, "key": req.Key, "status": "reset"})
}

// requireRule checks the rule is named; the key is checked against the
// rule's key attributes, since a key-less rule's only key is empty.
func requireRule(rule string) error {
	if rule == "" {
		return &check.FieldError{Field: "rule", Msg: "is required"}
	}
	return nil
}
