package engine

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/api/admin"
	"strconv"
)

// estimate asks e how rule would fare replaced by the single rule of doc.
func estimate(t *testing.T, e *Engine, doc string) admin.Throttled {
	t.Helper()
	got, err := e.EstimateThrottled(context.Background(), mustRules(t, doc).Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A key counts as throttled at once when its bucket, carried over to the
// new limit, holds less than a token: "hot" spent 10 of a burst of 10,
// "warm" 3, and nothing refills within the test (1 per hour).
func TestEstimateThrottledCountsKeysOverTheNewLimit(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 10, "per": "10h"}},
		{"name": "q", "key": ["tenant"], "quota": {"limit": 100, "per": "day"}}]}`))
	for range 10 {
		decide(t, e, 1, "ip", "hot", "tenant", "a")
	}
	for range 3 {
		decide(t, e, 1, "ip", "warm", "tenant", "b")
	}
	decide(t, e, 57, "tenant", "a")

	for _, tc := range []struct {
		doc  string
		want admin.Throttled
	}{
		// Same limit: only the spent bucket is throttled.
		{`{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 10, "per": "10h"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 1}},
		// Burst 5: "warm" keeps 2 tokens.
		{`{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 5, "per": "5h"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 1}},
		// Burst 3: "warm" has spent it all.
		{`{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 3, "per": "3h"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 2}},
		// Burst 20: both keep tokens.
		{`{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 20, "per": "20h"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 0}},
		// Quota: a used 67, b 3.
		{`{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": 50, "per": "day"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 1}},
		{`{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": 3, "per": "day"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 2}},
		{`{"rules": [{"name": "q", "key": ["tenant"], "quota": {"limit": 68, "per": "day"}}]}`, admin.Throttled{ActiveKeys: 2, AtOnce: 0}},
		// A rule the engine does not have has no keys yet.
		{`{"rules": [{"name": "new", "key": ["ip"], "limit": {"rate": 1, "per": "1h"}}]}`, admin.Throttled{}},
	} {
		tc.want.Measure = admin.MeasureBucketState
		if got := estimate(t, e, tc.doc); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.doc, got, tc.want)
		}
	}
	// Estimating changed nothing: "warm" still has its 7 tokens.
	if d := decide(t, e, 1, "ip", "warm"); !d.Allowed || d.Remaining != 6 {
		t.Fatalf("after the estimates: %+v, want allowed with 6 left", d)
	}
}

// The keys looked at are bounded; Truncated says more were left out.
func TestEstimateThrottledIsBounded(t *testing.T) {
	e := New()
	e.SetRules(1, mustRules(t, `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 1, "per": "1h"}}]}`))
	for i := range maxEstimateKeys + 5 {
		decide(t, e, 1, "ip", strconv.Itoa(i))
	}
	got := estimate(t, e, `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 1, "per": "1h"}}]}`)
	if got.ActiveKeys != maxEstimateKeys || got.AtOnce != maxEstimateKeys || !got.Truncated {
		t.Fatalf("%+v, want %d keys, all throttled, truncated", got, maxEstimateKeys)
	}
}
