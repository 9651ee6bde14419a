package rules

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Change is what replacing one rules document with another does, rule by
// rule (matched by name): the answer of a dry run and of `sluice rules diff`.
type Change struct {
	Added   []string     `json:"added"`
	Removed []string     `json:"removed"`
	Changed []RuleChange `json:"changed"`
	// Unchanged counts the rules present in both documents alike.
	Unchanged int `json:"unchanged"`
}

// RuleChange lists the fields of one rule that differ, in a fixed order.
type RuleChange struct {
	Name   string        `json:"name"`
	Fields []FieldChange `json:"fields"`
}

// FieldChange is one field of a rule before and after. Direction says
// whether the limit admits more (raised) or less (lowered) in that field
// alone; fields that are not amounts are "changed".
type FieldChange struct {
	Field     string    `json:"field"`
	Old       any       `json:"old"`
	New       any       `json:"new"`
	Direction Direction `json:"direction"`
}

// Direction of a field change.
type Direction string

// Directions a field can move in.
const (
	Raised  Direction = "raised"
	Lowered Direction = "lowered"
	Changed Direction = "changed"
)

// Diff compares old with next. Both must be valid (rule names unique).
func Diff(old, next *Set) Change {
	before := make(map[string]Rule, len(old.Rules))
	for _, r := range old.Rules {
		before[r.Name] = r
	}
	c := Change{Added: []string{}, Removed: []string{}, Changed: []RuleChange{}}
	for _, r := range next.Rules {
		prev, ok := before[r.Name]
		if !ok {
			c.Added = append(c.Added, r.Name)
			continue
		}
		delete(before, r.Name)
		switch fields := diffRule(prev, r); {
		case len(fields) == 0:
			c.Unchanged++
		default:
			c.Changed = append(c.Changed, RuleChange{Name: r.Name, Fields: fields})
		}
	}
	c.Removed = append(c.Removed, slices.Sorted(maps.Keys(before))...)
	return c
}

// Limits reports whether the change touches what the rule admits (its
// limit or quota), as opposed to which requests it applies to.
func (c RuleChange) Limits() bool {
	return slices.ContainsFunc(c.Fields, func(f FieldChange) bool { return f.Direction != Changed || f.Field == "kind" })
}

// diffRule lists the fields in which next differs from old.
func diffRule(old, next Rule) []FieldChange {
	var out []FieldChange
	if !maps.Equal(old.Match, next.Match) {
		out = append(out, FieldChange{Field: "match", Old: matchOf(old), New: matchOf(next), Direction: Changed})
	}
	if !slices.Equal(old.Key, next.Key) {
		out = append(out, FieldChange{Field: "key", Old: keyOf(old), New: keyOf(next), Direction: Changed})
	}
	switch {
	case old.Limit != nil && next.Limit != nil:
		o, n := old.Limit, next.Limit
		out = appendAmount(out, "limit.rate", o.Rate, n.Rate)
		if o.Per != n.Per {
			// A longer period spreads the same rate thinner.
			out = append(out, FieldChange{Field: "limit.per", Old: o.Per, New: n.Per, Direction: direction(time.Duration(n.Per), time.Duration(o.Per))})
		}
		out = appendAmount(out, "limit.burst", o.Burst, n.Burst)
	case old.Quota != nil && next.Quota != nil:
		o, n := old.Quota, next.Quota
		out = appendAmount(out, "quota.limit", o.Limit, n.Limit)
		if o.Per != n.Per {
			out = append(out, FieldChange{Field: "quota.per", Old: o.Per, New: n.Per, Direction: direction(periodOrder(n.Per), periodOrder(o.Per))})
		}
	default:
		out = append(out, FieldChange{Field: "kind", Old: kindOf(old), New: kindOf(next), Direction: Changed})
	}
	if old.Shadow != next.Shadow {
		out = append(out, FieldChange{Field: "shadow", Old: old.Shadow, New: next.Shadow, Direction: Changed})
	}
	return out
}

// appendAmount adds field when it changed; a larger amount is raised.
func appendAmount(out []FieldChange, field string, old, next int64) []FieldChange {
	if old == next {
		return out
	}
	return append(out, FieldChange{Field: field, Old: old, New: next, Direction: direction(old, next)})
}

// direction is raised when admits grows from a to b.
func direction[T cmp.Ordered](a, b T) Direction {
	if b > a {
		return Raised
	}
	return Lowered
}

// periodOrder ranks quota windows by length.
func periodOrder(p Period) int {
	return slices.Index([]Period{Hour, Day, Week, Month}, p)
}

func kindOf(r Rule) string {
	if r.Quota != nil {
		return "quota"
	}
	return "limit"
}

// matchOf and keyOf show an absent match or key as empty rather than null.
func matchOf(r Rule) map[string]string {
	if r.Match == nil {
		return map[string]string{}
	}
	return r.Match
}

func keyOf(r Rule) []string {
	if r.Key == nil {
		return []string{}
	}
	return r.Key
}
