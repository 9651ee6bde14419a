package envoy

import (
	"math"
	"net/http"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/middleware"
	"github.com/sluicehq/sluice/fsm/rules"
)

// descriptorStatus reports one descriptor's decision. A descriptor no
// enforced rule spoke for has only its code, like an unlimited descriptor
// in Envoy's service.
func (s *Service) descriptorStatus(d *check.Decision) *rlsv3.RateLimitResponse_DescriptorStatus {
	st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	if !d.Allowed {
		st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if d.Rule == "" {
		return st
	}
	st.CurrentLimit = s.currentLimit(d)
	st.LimitRemaining = clampUint32(d.Remaining)
	st.DurationUntilReset = durationpb.New(time.Duration(d.ResetMs) * time.Millisecond)
	return st
}

// currentLimit describes the rule that spoke for d in Envoy's terms.
func (s *Service) currentLimit(d *check.Decision) *rlsv3.RateLimitResponse_RateLimit {
	limit := &rlsv3.RateLimitResponse_RateLimit{Name: d.Rule, RequestsPerUnit: clampUint32(d.Limit)}
	r, ok := s.engine.Rule(d.Rule)
	switch {
	case !ok: // the rules changed since the decision; keep what it said
	case r.Limit != nil:
		perUnit, unit, multiplier := unitOf(r.Limit.Rate, time.Duration(r.Limit.Per))
		limit.RequestsPerUnit, limit.Unit = perUnit, unit
		if multiplier > 1 {
			limit.UnitMultiplier = wrapperspb.UInt32(multiplier)
		}
	case r.Quota != nil:
		limit.RequestsPerUnit, limit.Unit = clampUint32(r.Quota.Limit), quotaUnits[r.Quota.Per]
	}
	return limit
}

var quotaUnits = map[rules.Period]rlsv3.RateLimitResponse_RateLimit_Unit{
	rules.Hour:  rlsv3.RateLimitResponse_RateLimit_HOUR,
	rules.Day:   rlsv3.RateLimitResponse_RateLimit_DAY,
	rules.Week:  rlsv3.RateLimitResponse_RateLimit_WEEK,
	rules.Month: rlsv3.RateLimitResponse_RateLimit_MONTH,
}

// envoyUnits are the fixed-length units, largest first.
var envoyUnits = []struct {
	unit rlsv3.RateLimitResponse_RateLimit_Unit
	d    time.Duration
}{
	{rlsv3.RateLimitResponse_RateLimit_DAY, 24 * time.Hour},
	{rlsv3.RateLimitResponse_RateLimit_HOUR, time.Hour},
	{rlsv3.RateLimitResponse_RateLimit_MINUTE, time.Minute},
	{rlsv3.RateLimitResponse_RateLimit_SECOND, time.Second},
}

// unitOf expresses rate tokens per per as Envoy's requests per unit. A
// period of whole seconds maps exactly: the largest unit dividing it, with
// a multiplier when it is several units (90s → SECOND × 90). Other periods
// (500ms, 2.5s) have no exact form; they are rescaled to the smallest unit
// in which the rate is at least one request, rounded to the nearest whole
// request (5 per 500ms → 10 per SECOND, 1 per 2.5s → 24 per MINUTE).
func unitOf(rate int64, per time.Duration) (perUnit uint32, unit rlsv3.RateLimitResponse_RateLimit_Unit, multiplier uint32) {
	for _, u := range envoyUnits {
		if per%u.d == 0 {
			return clampUint32(rate), u.unit, uint32(min(int64(per/u.d), math.MaxUint32))
		}
	}
	scaled := 0.0
	for i := len(envoyUnits) - 1; i >= 0; i-- {
		unit = envoyUnits[i].unit
		if scaled = math.Round(float64(rate) * float64(envoyUnits[i].d) / float64(per)); scaled >= 1 {
			break
		}
	}
	return clampUint32(int64(min(max(scaled, 1), math.MaxUint32))), unit, 1
}

// responseHeaders are the draft-ietf-httpapi-ratelimit-headers fields for
// the descriptor that binds (the denying one with the longest wait, else
// the one with the fewest requests left), with the values /v1/check sends
// as X-RateLimit-*, plus Retry-After when the request is over the limit.
func responseHeaders(decisions []check.Decision, allowed bool) []*corev3.HeaderValue {
	binding := -1
	for i := range decisions {
		d := &decisions[i]
		if d.Rule == "" {
			continue
		}
		b := &decisions[max(binding, 0)]
		switch {
		case binding < 0:
			binding = i
		case !allowed:
			if !d.Allowed && (b.Allowed || d.RetryAfterMs > b.RetryAfterMs) {
				binding = i
			}
		case d.Remaining < b.Remaining:
			binding = i
		}
	}
	if binding < 0 {
		return nil
	}
	summary := decisions[binding]
	summary.Allowed = allowed
	h := http.Header{}
	middleware.SetHeaders(h, summary)
	out := make([]*corev3.HeaderValue, 0, len(h))
	for _, name := range []string{middleware.HeaderLimit, middleware.HeaderRemaining, middleware.HeaderReset, middleware.HeaderRetryAfter} {
		if v := h.Get(name); v != "" {
			out = append(out, &corev3.HeaderValue{Key: strings.TrimPrefix(name, "X-"), Value: v})
		}
	}
	return out
}

func clampUint32(n int64) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}
