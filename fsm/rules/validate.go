package rules

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxNameLen keeps rule names short enough for Redis keys and metric labels.
const maxNameLen = 64

// Validate checks every rule and returns a *ValidationError listing all
// problems, or nil. A zero Burst is valid (it means "same as Rate").
func (s *Set) Validate() error {
	return asError(s.problems())
}

func asError(problems []FieldError) error {
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Errors: problems}
}

func (s *Set) problems() []FieldError {
	var out []FieldError
	add := func(path, msg string) { out = append(out, FieldError{Path: path, Msg: msg}) }
	firstUse := make(map[string]int, len(s.Rules))
	for i := range s.Rules {
		r := &s.Rules[i]
		path := indexPath("rules", i)
		validateName(path+".name", r.Name, add)
		if first, dup := firstUse[r.Name]; dup && r.Name != "" {
			add(path+".name", fmt.Sprintf("duplicate name %q (also rules[%d])", r.Name, first))
		} else {
			firstUse[r.Name] = i
		}
		validateMatch(path+".match", r.Match, add)
		validateKey(path+".key", r.Key, add)
		if (r.Limit == nil) == (r.Quota == nil) {
			add(path, "must have exactly one of limit or quota")
		}
		if r.Limit != nil {
			validateAmount(path+".limit.rate", r.Limit.Rate, add)
			if r.Limit.Per <= 0 {
				add(path+".limit.per", "must be > 0")
			} else if r.Limit.Rate > int64(r.Limit.Per) && r.Limit.Rate <= MaxAmount {
				// A bucket refills in whole nanoseconds per token; anything
				// faster would silently become one token per nanosecond.
				add(path+".limit.rate", fmt.Sprintf("%d per %s is more than 1e9 per second (one token per nanosecond), the fastest a bucket refills",
					r.Limit.Rate, time.Duration(r.Limit.Per)))
			}
			if r.Limit.Burst < 0 {
				add(path+".limit.burst", "must be >= 0")
			} else if r.Limit.Burst > MaxAmount {
				add(path+".limit.burst", "must be <= "+strconv.Itoa(MaxAmount))
			}
		}
		if r.Quota != nil {
			validateAmount(path+".quota.limit", r.Quota.Limit, add)
			if !r.Quota.Per.Valid() {
				add(path+".quota.per", "must be one of hour, day, week, month")
			}
		}
	}
	return out
}

func validateName(path, name string, add func(path, msg string)) {
	if name == "" {
		add(path, "must not be empty")
		return
	}
	if len(name) > maxNameLen || strings.IndexFunc(name, notNameRune) >= 0 {
		add(path, "must be 1-64 characters from [A-Za-z0-9_.-]")
	}
}

func notNameRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
}

func validateMatch(path string, match map[string]string, add func(path, msg string)) {
	for _, attr := range slices.Sorted(maps.Keys(match)) {
		if attr == "" {
			add(fieldPath(path, attr), "attribute name must not be empty")
		}
		if match[attr] == "" {
			add(fieldPath(path, attr), "must not be empty")
		}
	}
}

func validateKey(path string, key []string, add func(path, msg string)) {
	for i, attr := range key {
		if attr == "" {
			add(indexPath(path, i), "must not be empty")
		} else if slices.Index(key[:i], attr) >= 0 {
			add(indexPath(path, i), fmt.Sprintf("duplicate attribute %q", attr))
		}
	}
}

func validateAmount(path string, n int64, add func(path, msg string)) {
	if n <= 0 {
		add(path, "must be > 0")
	} else if n > MaxAmount {
		add(path, "must be <= "+strconv.Itoa(MaxAmount))
	}
}
