package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/top"
)

// registerTopRoutes serves GET /v1/top and the node-to-node GET
// /v1/internal/top behind the admin guard: keys are client identities.
func registerTopRoutes(r gin.IRouter, s *top.Service, guard gin.HandlerFunc) {
	g := r.Group("/v1", guard)
	g.GET("/top", func(c *gin.Context) {
		q, err := topQuery(c)
		if err != nil {
			writeError(c, err)
			return
		}
		t, err := s.Top(c.Request.Context(), q)
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, t)
	})
	g.GET("/internal/top", func(c *gin.Context) {
		q, err := topQuery(c)
		if err != nil {
			writeError(c, err)
			return
		}
		t, err := s.Node(q.Rule, q.Window, q.K)
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, t)
	})
}

// topQuery reads and checks the query parameters of both top routes.
func topQuery(c *gin.Context) (top.Query, error) {
	q := top.Query{Rule: c.Query("rule"), Window: c.DefaultQuery("window", "1m"), By: c.DefaultQuery("by", top.ByDenied), K: 20}
	if _, ok := top.Windows[q.Window]; !ok {
		return q, &check.FieldError{Field: "window", Msg: "must be 10s or 1m"}
	}
	if q.By != top.ByDenied && q.By != top.ByAdmitted {
		return q, &check.FieldError{Field: "by", Msg: "must be denied or admitted"}
	}
	if k, ok := c.GetQuery("k"); ok {
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 || n > top.MaxK {
			return q, &check.FieldError{Field: "k", Msg: "must be an integer from 1 to " + strconv.Itoa(top.MaxK)}
		}
		q.K = n
	}
	switch c.Query("scope") {
	case "", "cluster":
	case "local":
		q.Local = true
	default:
		return q, &check.FieldError{Field: "scope", Msg: "must be cluster or local"}
	}
	return q, nil
}
