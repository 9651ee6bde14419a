// Package middleware rate-limits a gin application with Sluice. It turns
// each request into attributes and a cost, asks a check.Decider (the node's
// engine in-process, or api/client over HTTP) and either lets the request
// through or answers it as throttled — so Go services get Sluice's limits
// without writing the plumbing, and answer with the same headers the node
// itself sends.
package middleware

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
)

// New returns a gin middleware that asks d about every request.
//
// Allowed requests continue with the rate-limit headers set; denied ones get
// the headers plus Retry-After and are answered by the limit-reached handler.
// When d fails (including the per-decision timeout) the error handler decides;
// by default the request continues (fail open).
func New(d check.Decider, opts ...Option) gin.HandlerFunc {
	cfg := newConfig(opts)
	return func(c *gin.Context) {
		attrs, err := cfg.attributesOf(c)
		if err != nil {
			badRequest(c, err)
			return
		}
		req := check.Request{Attributes: attrs, Cost: cfg.costOf(c)}
		ctx, cancel := cfg.decisionContext(c.Request.Context())
		decision, err := d.Decide(ctx, req)
		cancel()
		if err != nil {
			cfg.onError(c, err)
			return
		}
		SetHeaders(c.Writer.Header(), decision)
		if decision.Allowed {
			return
		}
		cfg.onLimitReached(c, decision)
		// A denial must never reach the client as a 200, even if a custom
		// handler forgot to answer.
		if !c.Writer.Written() {
			c.AbortWithStatus(http.StatusTooManyRequests)
			return
		}
		c.Abort()
	}
}

// decisionContext bounds one decision by the configured timeout.
func (cfg *config) decisionContext(parent context.Context) (context.Context, context.CancelFunc) {
	if cfg.timeout <= 0 {
		return parent, func() {}
	}
	return context.WithTimeout(parent, cfg.timeout)
}

// attributesOf extracts the configured attributes; absent ones are left out
// so rules keyed on them do not apply (SPEC §3). Values out of check's
// bounds are the client's error, answered here rather than by a node that
// the error handler might let the request past.
func (cfg *config) attributesOf(c *gin.Context) (check.Attrs, error) {
	attrs := make(check.Attrs, 0, len(cfg.attributes))
	for _, a := range cfg.attributes {
		v, ok, err := a.value(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if msg := check.ValueProblem(v); msg != "" {
			return nil, &check.FieldError{Field: a.field, Msg: msg}
		}
		attrs = append(attrs, check.Attr{Name: a.name, Value: v})
	}
	if len(attrs) > check.MaxAttributes {
		return nil, &check.FieldError{Field: "attributes", Msg: check.TooManyAttributes}
	}
	return attrs, nil
}

func (cfg *config) costOf(c *gin.Context) int64 {
	if cfg.cost == nil {
		return 1
	}
	return max(cfg.cost(c), 1)
}

// badRequest answers a request whose attributes cannot be read, like the
// node does: 400 {"error", "field"}.
func badRequest(c *gin.Context, err error) {
	body := gin.H{"error": err.Error()}
	var fe *check.FieldError
	if errors.As(err, &fe) {
		body = gin.H{"error": fe.Msg, "field": fe.Field}
	}
	c.AbortWithStatusJSON(http.StatusBadRequest, body)
}

// limitReachedBody is the default throttled answer (SPEC §5, /ping).
type limitReachedBody struct {
	Detail       string `json:"detail"`
	RetryAfterMs int64  `json:"retry_after_ms"`
}

func defaultLimitReached(c *gin.Context, d check.Decision) {
	c.AbortWithStatusJSON(http.StatusTooManyRequests,
		limitReachedBody{Detail: "Too Many Requests", RetryAfterMs: d.RetryAfterMs})
}

// unavailableBody is the fail-closed answer.
type unavailableBody struct {
	Detail string `json:"detail"`
}

func failClosed(c *gin.Context, _ error) {
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, unavailableBody{Detail: "rate limiter unavailable"})
}

func failOpen(*gin.Context, error) {}
