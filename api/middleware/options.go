package middleware

import (
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
)

// DefaultTimeout bounds each decision unless WithTimeout says otherwise: a
// rate limiter must not add more latency than it is worth.
const DefaultTimeout = 100 * time.Millisecond

// Option configures the middleware.
type Option func(*config)

// attribute is one configured attribute. value fails only on input the
// client got wrong (a malformed X-Forwarded-For from a trusted proxy), which
// is answered 400.
type attribute struct {
	name  string
	field string // what a 400 about the value names: its header, else name
	value func(*gin.Context) (string, bool, error)
}

type config struct {
	attributes     []attribute
	proxies        clientip.Proxies
	cost           func(*gin.Context) int64
	onLimitReached func(*gin.Context, check.Decision)
	onError        func(*gin.Context, error)
	timeout        time.Duration
}

func newConfig(opts []Option) *config {
	cfg := &config{
		onLimitReached: defaultLimitReached,
		onError:        failOpen,
		timeout:        DefaultTimeout,
	}
	for _, o := range opts {
		o(cfg)
	}
	if len(cfg.attributes) == 0 {
		for _, o := range []Option{WithClientIP(), WithRouteTemplate(), WithMethod()} {
			o(cfg)
		}
	}
	return cfg
}

// withAttribute adds an attribute; a later option for the same name replaces
// the earlier one, because attribute names are unique in a request.
func withAttribute(name string, fn func(*gin.Context) (string, bool, error)) Option {
	return withAttributeFrom(name, name, fn)
}

func withAttributeFrom(name, field string, fn func(*gin.Context) (string, bool, error)) Option {
	return func(cfg *config) {
		a := attribute{name: name, field: field, value: fn}
		for i := range cfg.attributes {
			if cfg.attributes[i].name == name {
				cfg.attributes[i] = a
				return
			}
		}
		cfg.attributes = append(cfg.attributes, a)
	}
}

// The attribute options below replace the default attribute set (ip, route,
// method): once any is given, only the listed attributes are sent.

// WithClientIP sends attribute "ip": the client's address as clientip
// reads it, i.e. the TCP peer unless the peer is one of the proxies given to
// WithTrustedProxies. gin's own c.ClientIP() and its SetTrustedProxies play
// no part, so the limit cannot be escaped by a forged X-Forwarded-For even
// when gin is left at its trust-everyone default.
func WithClientIP() Option {
	return func(cfg *config) {
		withAttribute("ip", func(c *gin.Context) (string, bool, error) {
			ip, err := cfg.proxies.Of(c.Request)
			return ip, err == nil, err
		})(cfg)
	}
}

// WithTrustedProxies names the proxies (load balancers, ingress) whose
// X-Forwarded-For and X-Real-IP WithClientIP believes, walking
// X-Forwarded-For right to left past trusted hops. The default trusts none:
// the client is the TCP peer. Parse a --trusted-proxies style list with
// clientip.Parse.
func WithTrustedProxies(p clientip.Proxies) Option {
	return func(cfg *config) { cfg.proxies = p }
}

// WithRouteTemplate sends attribute "route": the matched route template
// (e.g. /users/:id, so one rule covers every user), or the URL path when no
// route matched.
func WithRouteTemplate() Option {
	return withAttribute("route", func(c *gin.Context) (string, bool, error) {
		if p := c.FullPath(); p != "" {
			return p, true, nil
		}
		return c.Request.URL.Path, true, nil
	})
}

// WithMethod sends attribute "method".
func WithMethod() Option {
	return withAttribute("method", func(c *gin.Context) (string, bool, error) { return c.Request.Method, true, nil })
}

// WithHeader sends attribute attr with the value of the request header; a
// request without the header lacks the attribute. A value out of check's
// bounds (longer than check.MaxValueBytes, not UTF-8) is answered 400
// naming the header, as any attribute out of bounds is.
func WithHeader(header, attr string) Option {
	return withAttributeFrom(attr, header, func(c *gin.Context) (string, bool, error) {
		v := c.Request.Header.Values(header)
		if len(v) == 0 {
			return "", false, nil
		}
		return v[0], true, nil
	})
}

// WithAttribute sends attribute name with the value fn returns; false leaves
// the attribute out.
func WithAttribute(name string, fn func(*gin.Context) (string, bool)) Option {
	return withAttribute(name, func(c *gin.Context) (string, bool, error) {
		v, ok := fn(c)
		return v, ok, nil
	})
}

// WithCost sets each request's cost (e.g. tokens named in a header); values
// below 1 count as 1.
func WithCost(fn func(*gin.Context) int64) Option {
	return func(cfg *config) { cfg.cost = fn }
}

// WithLimitReachedHandler answers denied requests; the headers are already
// set and the chain is aborted afterwards. The default answers 429
// {"detail": "Too Many Requests", "retry_after_ms": N}.
func WithLimitReachedHandler(fn func(*gin.Context, check.Decision)) Option {
	return func(cfg *config) { cfg.onLimitReached = fn }
}

// WithErrorHandler handles a failed decision; the request continues unless fn
// aborts it. The default lets it continue silently (fail open).
func WithErrorHandler(fn func(*gin.Context, error)) Option {
	return func(cfg *config) { cfg.onError = fn }
}

// FailOpen lets requests through when no decision can be had (the default).
func FailOpen() Option { return WithErrorHandler(failOpen) }

// FailClosed answers 503 {"detail": "rate limiter unavailable"} when no
// decision can be had.
func FailClosed() Option { return WithErrorHandler(failClosed) }

// WithTimeout bounds each decision (default DefaultTimeout); d ≤ 0 leaves
// only the request's own context.
func WithTimeout(d time.Duration) Option {
	return func(cfg *config) { cfg.timeout = d }
}
