package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
)

// registerAdminRoutes serves the admin API (SPEC §6) behind adminGuard.
// est answers dry runs' throttled estimates; nil leaves them out.
func registerAdminRoutes(r gin.IRouter, a admin.Admin, est ThrottleEstimator, guard gin.HandlerFunc) {
	h := adminHandlers{a, est}
	g := r.Group("/v1", guard)
	g.GET("/cluster", h.clusterStatus)
	g.POST("/cluster/join", h.join)
	g.DELETE("/cluster/nodes/:id", h.removeNode)
	g.GET("/rules", h.rules)
	g.PUT("/rules", h.setRules)
	g.GET("/leases", h.leases)
	if d, ok := a.(admin.DemandReceiver); ok {
		g.POST("/internal/demand", demandHandler(d))
	}
	if h, ok := a.(admin.HandOverReceiver); ok {
		g.POST("/internal/handover", handOverHandler(h))
	}
}

type adminHandlers struct {
	admin     admin.Admin
	estimator ThrottleEstimator
}

func (h adminHandlers) clusterStatus(c *gin.Context) {
	st, err := h.admin.ClusterStatus(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (h adminHandlers) join(c *gin.Context) {
	var req admin.JoinRequest
	if err := decodeStrict(c.Request.Body, &req); err != nil {
		writeError(c, err)
		return
	}
	if err := validateJoinRequest(req); err != nil {
		writeError(c, err)
		return
	}
	fresh, err := boolParam(c, "fresh")
	if err != nil {
		writeError(c, err)
		return
	}
	req.Fresh = fresh
	if err := h.admin.Join(c.Request.Context(), req); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"node_id": req.NodeID, "status": "joined"})
}

func validateJoinRequest(req admin.JoinRequest) error {
	if req.NodeID == "" {
		return &check.FieldError{Field: "node_id", Msg: "is required"}
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return &check.FieldError{Field: "raft_addr", Msg: "must be host:port"}
	}
	if _, _, err := net.SplitHostPort(req.HTTPAddr); err != nil {
		return &check.FieldError{Field: "http_addr", Msg: "must be host:port"}
	}
	return nil
}

func (h adminHandlers) removeNode(c *gin.Context) {
	id := c.Param("id")
	if err := h.admin.RemoveNode(c.Request.Context(), id); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"node_id": id, "status": "removed"})
}

func (h adminHandlers) rules(c *gin.Context) {
	doc, err := h.admin.Rules(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, doc)
}

func (h adminHandlers) setRules(c *gin.Context) {
	dryRun, err := boolParam(c, "dry_run")
	if err != nil {
		writeError(c, err)
		return
	}
	doc, err := io.ReadAll(c.Request.Body)
	if err != nil {
		writeError(c, err)
		return
	}
	if dryRun {
		out, err := dryRunRules(c.Request.Context(), h.admin, h.estimator, doc)
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, out)
		return
	}
	version, err := h.admin.SetRules(c.Request.Context(), doc)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"version": version})
}

func (h adminHandlers) leases(c *gin.Context) {
	l, err := h.admin.Leases(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, l)
}

// decodeFromNode decodes a node-to-node call's body strictly into r, which
// must name its sender (*nodeID, r's node_id field); otherwise it answers
// the error and reports false.
func decodeFromNode(c *gin.Context, r any, nodeID *string) bool {
	if err := decodeStrict(c.Request.Body, r); err != nil {
		writeError(c, err)
		return false
	}
	if *nodeID == "" {
		writeError(c, &check.FieldError{Field: "node_id", Msg: "is required"})
		return false
	}
	return true
}

// demandHandler receives a node's demand report (node-to-node, behind the
// same token as the admin API).
func demandHandler(d admin.DemandReceiver) gin.HandlerFunc {
	return func(c *gin.Context) {
		var r admin.DemandReport
		if !decodeFromNode(c, &r, &r.NodeID) {
			return
		}
		for rule, rate := range r.Rates {
			if !(rate >= 0) || math.IsInf(rate, 0) {
				writeError(c, &check.FieldError{Field: "rates." + rule, Msg: "must be a finite number >= 0"})
				return
			}
		}
		if err := d.ReportDemand(c.Request.Context(), r); err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"node_id": r.NodeID, "status": "recorded"})
	}
}

// handOverHandler receives a shutting-down voter's hand-over request
// (node-to-node, behind the admin guard).
func handOverHandler(h admin.HandOverReceiver) gin.HandlerFunc {
	return func(c *gin.Context) {
		var r admin.HandOverRequest
		if !decodeFromNode(c, &r, &r.NodeID) {
			return
		}
		if err := h.HandOver(c.Request.Context(), r.NodeID); err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"node_id": r.NodeID, "status": "handed over"})
	}
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data; problems come back as *check.FieldError naming the field.
func decodeStrict(body io.Reader, v any) error {
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		return nil
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return &check.FieldError{Msg: "request body is empty"}
	case errors.As(err, &syntax):
		return &check.FieldError{Msg: fmt.Sprintf("invalid JSON at offset %d: %v", syntax.Offset, syntax)}
	case errors.As(err, &typ):
		return &check.FieldError{Field: typ.Field, Msg: "must be a " + typ.Type.String()}
	}
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		return &check.FieldError{Field: strings.TrimSuffix(name, `"`), Msg: "unknown field"}
	}
	return &check.FieldError{Msg: err.Error()}
}
