package middleware

import (
	"net/http"
	"testing"

	"github.com/sluicehq/sluice/api/check"
)

func TestSetHeadersRoundsSecondsUp(t *testing.T) {
	cases := []struct {
		resetMs, wantReset int64
	}{
		{0, 0}, {1, 1}, {999, 1}, {1000, 1}, {1001, 2}, {59_999, 60},
	}
	for _, tc := range cases {
		h := http.Header{}
		SetHeaders(h, check.Decision{Allowed: true, Rule: "r", Limit: 100, Remaining: 42, ResetMs: tc.resetMs})
		if got := h.Get(HeaderReset); got != itoa(tc.wantReset) {
			t.Errorf("reset_ms %d: %s = %q, want %d", tc.resetMs, HeaderReset, got, tc.wantReset)
		}
		if h.Get(HeaderLimit) != "100" || h.Get(HeaderRemaining) != "42" {
			t.Errorf("limit/remaining = %q/%q, want 100/42", h.Get(HeaderLimit), h.Get(HeaderRemaining))
		}
		if _, ok := h[http.CanonicalHeaderKey(HeaderRetryAfter)]; ok {
			t.Errorf("allowed decision got %s", HeaderRetryAfter)
		}
	}
}

func TestSetHeadersRetryAfterAtLeastOneSecond(t *testing.T) {
	cases := []struct {
		retryMs, want int64
	}{
		{0, 1}, {1, 1}, {1000, 1}, {1001, 2}, {2500, 3},
	}
	for _, tc := range cases {
		h := http.Header{}
		SetHeaders(h, check.Decision{Rule: "r", Limit: 5, RetryAfterMs: tc.retryMs})
		if got := h.Get(HeaderRetryAfter); got != itoa(tc.want) {
			t.Errorf("retry_after_ms %d: Retry-After = %q, want %d", tc.retryMs, got, tc.want)
		}
	}
}

func TestSetHeadersWithoutEnforcedRule(t *testing.T) {
	h := http.Header{}
	SetHeaders(h, check.Decision{Allowed: true, Results: []check.Result{{Rule: "s", Shadow: true, Allowed: false}}})
	if len(h) != 0 {
		t.Fatalf("no enforced rule applied, yet headers %v", h)
	}
}

func TestSetHeadersClampsNegativeRemaining(t *testing.T) {
	h := http.Header{}
	SetHeaders(h, check.Decision{Rule: "r", Limit: 5, Remaining: -3, RetryAfterMs: 10})
	if got := h.Get(HeaderRemaining); got != "0" {
		t.Fatalf("remaining = %q, want 0", got)
	}
}
