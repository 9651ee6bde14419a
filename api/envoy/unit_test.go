package envoy

import (
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func TestUnitOf(t *testing.T) {
	const (
		second = rlsv3.RateLimitResponse_RateLimit_SECOND
		minute = rlsv3.RateLimitResponse_RateLimit_MINUTE
		hour   = rlsv3.RateLimitResponse_RateLimit_HOUR
		day    = rlsv3.RateLimitResponse_RateLimit_DAY
	)
	cases := []struct {
		rate           int64
		per            time.Duration
		wantPerUnit    uint32
		wantUnit       rlsv3.RateLimitResponse_RateLimit_Unit
		wantMultiplier uint32
	}{
		{100, time.Second, 100, second, 1},
		{5, time.Minute, 5, minute, 1},
		{7, 2 * time.Hour, 7, hour, 2},
		{1000, 24 * time.Hour, 1000, day, 1},
		{3, 48 * time.Hour, 3, day, 2},
		{2, 90 * time.Second, 2, second, 90},
		{5, 500 * time.Millisecond, 10, second, 1},
		{1, 2500 * time.Millisecond, 24, minute, 1},
		{3, 1500 * time.Millisecond, 2, second, 1},
		{1, 1e6 * time.Hour / 7, 1, day, 1},
		{1 << 40, 100 * time.Millisecond, 1<<32 - 1, second, 1},
	}
	for _, tc := range cases {
		perUnit, unit, multiplier := unitOf(tc.rate, tc.per)
		if perUnit != tc.wantPerUnit || unit != tc.wantUnit || multiplier != tc.wantMultiplier {
			t.Errorf("%d per %v: %d per %v × %d, want %d per %v × %d", tc.rate, tc.per,
				perUnit, unit, multiplier, tc.wantPerUnit, tc.wantUnit, tc.wantMultiplier)
		}
	}
}
