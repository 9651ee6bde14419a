// Package rules owns the rules document (SPEC §3): its types, the strict
// parser that names the JSON path of every problem, validation, and the
// compiled form the decision path uses to find applicable rules and build
// bucket keys without allocating.
//
// It is replicated through the Raft FSM but knows nothing about Raft, so the
// CLI can validate files offline with exactly the checks the cluster applies.
package rules

import (
	"encoding/json"
	"fmt"
	"time"
)

// Set is a whole rules document: the unit that is validated, replicated and
// replaced atomically.
type Set struct {
	Rules []Rule `json:"rules"`
}

// Rule limits requests that match it, per distinct value of its key
// attributes. Exactly one of Limit or Quota is set.
type Rule struct {
	Name   string            `json:"name"`
	Match  map[string]string `json:"match,omitempty"`
	Key    []string          `json:"key"`
	Limit  *Limit            `json:"limit,omitempty"`
	Quota  *Quota            `json:"quota,omitempty"`
	Shadow bool              `json:"shadow,omitempty"`
}

// Limit is a token bucket: Rate tokens per Per, holding at most Burst.
// Burst 0 means "same as Rate"; Parse and Compile fill it in.
type Limit struct {
	Rate  int64    `json:"rate"`
	Per   Duration `json:"per"`
	Burst int64    `json:"burst,omitempty"`
}

// Quota is a counter of at most Limit per calendar window.
type Quota struct {
	Limit int64  `json:"limit"`
	Per   Period `json:"per"`
}

// MaxAmount bounds rates, bursts and quota limits: the Redis scripts do their
// arithmetic in Lua numbers (doubles), which are exact only up to 2^53.
const MaxAmount = 1<<53 - 1

// MarshalJSON writes an absent rule list as [] so that every valid Set,
// including the zero one, round-trips through Parse (which requires "rules").
func (s Set) MarshalJSON() ([]byte, error) {
	type plain Set // no methods, so no recursion
	if s.Rules == nil {
		s.Rules = []Rule{}
	}
	return json.Marshal(plain(s))
}

// Duration is a time.Duration written in JSON as a Go duration string ("1m").
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string, for readers of already-validated
// documents (snapshots, API answers); Parse is the strict entry point.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var text string
	if err := json.Unmarshal(data, &text); err != nil {
		return fmt.Errorf("duration must be a string: %w", err)
	}
	parsed, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("invalid duration %q", text)
	}
	*d = Duration(parsed)
	return nil
}

// Period is a quota's calendar window, always in UTC.
type Period string

// The quota windows SPEC §3 allows.
const (
	Hour  Period = "hour"
	Day   Period = "day"
	Week  Period = "week"
	Month Period = "month"
)

// Valid reports whether p is one of the known windows.
func (p Period) Valid() bool {
	switch p {
	case Hour, Day, Week, Month:
		return true
	}
	return false
}

// Window returns the UTC window [start, end) of p that contains t. Weeks
// start on Monday (ISO 8601). p must be valid.
func (p Period) Window(t time.Time) (start, end time.Time) {
	t = t.UTC()
	switch p {
	case Hour:
		start = t.Truncate(time.Hour)
		return start, start.Add(time.Hour)
	case Day:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Week:
		daysSinceMonday := (int(t.Weekday()) + 6) % 7
		start = time.Date(t.Year(), t.Month(), t.Day()-daysSinceMonday, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case Month:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	panic(fmt.Sprintf("rules: invalid period %q", p))
}
