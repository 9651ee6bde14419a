package admin

import (
	"errors"

	"github.com/sluicehq/sluice/api/check"
)

// ErrUnknownRule: no rule has the given name (404).
var ErrUnknownRule = errors.New("unknown rule")

// Usage is the body of GET /v1/usage: the state of one rule's token bucket
// or quota for one key.
type Usage struct {
	Rule  string `json:"rule"`
	Key   string `json:"key"`
	Limit int64  `json:"limit"`
	// Used is set for quotas only: what the current window has admitted.
	Used *int64 `json:"used,omitempty"`
	// Reserved is what Redis has granted to nodes' slices and they have not
	// spent yet (global mode; 0 elsewhere): neither used nor available.
	Reserved  int64      `json:"reserved"`
	Remaining int64      `json:"remaining"`
	ResetMs   int64      `json:"reset_ms"`
	Mode      check.Mode `json:"mode"`
}

// UsageReset is the body of POST /v1/usage/reset.
type UsageReset struct {
	Rule string `json:"rule"`
	Key  string `json:"key"`
}
