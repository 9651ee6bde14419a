package middleware

import (
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/api/check"
)

// Rate-limit response headers (SPEC §5).
const (
	HeaderLimit      = "X-RateLimit-Limit"
	HeaderRemaining  = "X-RateLimit-Remaining"
	HeaderReset      = "X-RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
)

// SetHeaders writes the rate-limit headers for d: limit, remaining and reset
// (seconds, rounded up) when an enforced rule applied, and on denial
// Retry-After (seconds, rounded up, at least 1). A decision no enforced rule
// spoke for (no rule, or only shadow rules) gets no limit headers: a zero
// limit would read as "throttled", and shadow rules must stay invisible.
func SetHeaders(h http.Header, d check.Decision) {
	if d.Rule != "" {
		h.Set(HeaderLimit, strconv.FormatInt(d.Limit, 10))
		h.Set(HeaderRemaining, strconv.FormatInt(max(d.Remaining, 0), 10))
		h.Set(HeaderReset, strconv.FormatInt(ceilSeconds(d.ResetMs), 10))
	}
	if !d.Allowed {
		h.Set(HeaderRetryAfter, strconv.FormatInt(max(ceilSeconds(d.RetryAfterMs), 1), 10))
	}
}

// ceilSeconds rounds milliseconds up to whole seconds, so a client waiting the
// advertised time never comes back too early.
func ceilSeconds(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	return (ms + 999) / 1000
}
