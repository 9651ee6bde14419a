package engine

import (
	"math"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lua"
)

func TestWithholdScalesTheRate(t *testing.T) {
	cases := []struct {
		name string
		b    lua.Bucket
		w    float64
		want lua.Bucket
	}{
		{"nothing withheld", lua.Bucket{Rate: 100, Per: time.Second, Burst: 10}, 0, lua.Bucket{Rate: 100, Per: time.Second, Burst: 10}},
		{"a third", lua.Bucket{Rate: 100, Per: time.Second, Burst: 10}, 1.0 / 3, lua.Bucket{Rate: 66666, Per: 1000 * time.Second, Burst: 10}},
		{"everything", lua.Bucket{Rate: 100, Per: time.Second, Burst: 10}, 1.5, lua.Bucket{Rate: 1, Per: 1000 * time.Second, Burst: 10}},
		// The script's integers end at 2^53 µs (285 years): a period of
		// 200 years cannot be scaled at all, one of 100 days still can.
		{"a long period", lua.Bucket{Rate: 7, Per: 200 * 365 * 24 * time.Hour, Burst: 7}, 0.5, lua.Bucket{Rate: 3, Per: 200 * 365 * 24 * time.Hour, Burst: 7}},
		{"100 days", lua.Bucket{Rate: 7, Per: 100 * 24 * time.Hour, Burst: 7}, 0.5, lua.Bucket{Rate: 3500, Per: 100 * 1000 * 24 * time.Hour, Burst: 7}},
		{"NaN", lua.Bucket{Rate: 5, Per: time.Second, Burst: 5}, math.NaN(), lua.Bucket{Rate: 5, Per: time.Second, Burst: 5}},
	}
	for _, tc := range cases {
		if got := withhold(tc.b, tc.w); got != tc.want {
			t.Errorf("%s: withhold(%+v, %v) = %+v, want %+v", tc.name, tc.b, tc.w, got, tc.want)
		}
	}
}
