package rules

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Parse reads a rules document strictly and validates it. Syntax errors,
// trailing data, unknown or repeated fields, wrong JSON types and invalid
// values are all reported together in a *ValidationError, each naming its
// JSON path. On success every limit's Burst is filled in (0 means Rate).
func Parse(data []byte) (*Set, error) {
	doc, err := readJSON(data)
	if err != nil {
		return nil, &ValidationError{Errors: []FieldError{{Msg: err.Error()}}}
	}
	var d decoder
	set := d.set(doc)
	problems := append(d.problems, d.withoutBroken(set.problems())...)
	if len(problems) > 0 {
		// Group by rule so a long report reads in document order.
		slices.SortStableFunc(problems, func(a, b FieldError) int {
			return cmp.Compare(ruleIndex(a.Path), ruleIndex(b.Path))
		})
		return nil, &ValidationError{Errors: problems}
	}
	set.fillDefaults()
	return set, nil
}

func (s *Set) fillDefaults() {
	for i := range s.Rules {
		if l := s.Rules[i].Limit; l != nil && l.Burst == 0 {
			l.Burst = l.Rate
		}
	}
}

// decoder turns a jsonValue tree into a Set, recording structural problems.
// A value it cannot decode is left zero and its path marked broken, so that
// Validate's complaints about that zero value are not reported twice.
type decoder struct {
	problems []FieldError
	broken   []string
}

func (d *decoder) report(path, msg string) {
	d.problems = append(d.problems, FieldError{Path: path, Msg: msg})
}

func (d *decoder) fail(path, msg string) {
	d.report(path, msg)
	d.broken = append(d.broken, path)
}

func (d *decoder) withoutBroken(problems []FieldError) []FieldError {
	return slices.DeleteFunc(problems, func(p FieldError) bool {
		return slices.ContainsFunc(d.broken, func(b string) bool { return within(p.Path, b) })
	})
}

// ruleIndex returns N for paths inside "rules[N]", and -1 for the others.
func ruleIndex(path string) int {
	rest, ok := strings.CutPrefix(path, "rules[")
	end := strings.IndexByte(rest, ']')
	if !ok || end < 0 {
		return -1
	}
	n, _ := strconv.Atoi(rest[:end]) // the parser wrote it, so it is a number
	return n
}

// within reports whether path is base or lies inside it.
func within(path, base string) bool {
	if !strings.HasPrefix(path, base) {
		return false
	}
	return len(path) == len(base) || path[len(base)] == '.' || path[len(base)] == '['
}

type fieldHandlers map[string]func(path string, v jsonValue)

// object dispatches v's members to handlers, reporting unknown, repeated and
// missing required members.
func (d *decoder) object(path string, v jsonValue, handlers fieldHandlers, required ...string) {
	if v.kind != jsonObject {
		d.fail(path, "must be an object")
		return
	}
	seen := make(map[string]bool, len(v.members))
	for _, m := range v.members {
		memberPath := fieldPath(path, m.name)
		handle, known := handlers[m.name]
		switch {
		case !known:
			d.report(memberPath, "unknown field")
		case seen[m.name]:
			d.report(memberPath, "duplicate field")
		default:
			seen[m.name] = true
			handle(memberPath, m.value)
		}
	}
	for _, name := range required {
		if !seen[name] {
			d.fail(fieldPath(path, name), "is required")
		}
	}
}

func (d *decoder) set(v jsonValue) *Set {
	s := &Set{}
	if v.kind != jsonObject {
		d.fail("", "the document must be a JSON object")
		return s
	}
	d.object("", v, fieldHandlers{
		"rules": func(p string, v jsonValue) { s.Rules = d.rules(p, v) },
	}, "rules")
	return s
}

func (d *decoder) rules(path string, v jsonValue) []Rule {
	if v.kind != jsonArray {
		d.fail(path, "must be an array")
		return nil
	}
	out := make([]Rule, len(v.items))
	for i, item := range v.items {
		out[i] = d.rule(indexPath(path, i), item)
	}
	return out
}

func (d *decoder) rule(path string, v jsonValue) Rule {
	var r Rule
	d.object(path, v, fieldHandlers{
		"name":   func(p string, v jsonValue) { r.Name = d.stringValue(p, v) },
		"match":  func(p string, v jsonValue) { r.Match = d.match(p, v) },
		"key":    func(p string, v jsonValue) { r.Key = d.stringList(p, v) },
		"limit":  func(p string, v jsonValue) { r.Limit = d.limit(p, v) },
		"quota":  func(p string, v jsonValue) { r.Quota = d.quota(p, v) },
		"shadow": func(p string, v jsonValue) { r.Shadow = d.boolean(p, v) },
	}, "name")
	return r
}

// limit returns a non-nil Limit even when v is malformed, so the rule still
// counts as having one and is not also reported as lacking limit or quota.
func (d *decoder) limit(path string, v jsonValue) *Limit {
	l := &Limit{}
	d.object(path, v, fieldHandlers{
		"rate":  func(p string, v jsonValue) { l.Rate = d.integer(p, v) },
		"per":   func(p string, v jsonValue) { l.Per = d.duration(p, v) },
		"burst": func(p string, v jsonValue) { l.Burst = d.integer(p, v) },
	}, "rate", "per")
	return l
}

// quota returns a non-nil Quota for the same reason as limit.
func (d *decoder) quota(path string, v jsonValue) *Quota {
	q := &Quota{}
	d.object(path, v, fieldHandlers{
		"limit": func(p string, v jsonValue) { q.Limit = d.integer(p, v) },
		"per":   func(p string, v jsonValue) { q.Per = Period(d.stringValue(p, v)) },
	}, "limit", "per")
	return q
}

// match reads attribute conditions; an empty object means no conditions.
func (d *decoder) match(path string, v jsonValue) map[string]string {
	if v.kind != jsonObject {
		d.fail(path, "must be an object")
		return nil
	}
	var conditions map[string]string
	for _, m := range v.members {
		memberPath := fieldPath(path, m.name)
		if _, dup := conditions[m.name]; dup {
			d.report(memberPath, "duplicate attribute")
			continue
		}
		if conditions == nil {
			conditions = make(map[string]string, len(v.members))
		}
		conditions[m.name] = d.stringValue(memberPath, m.value)
	}
	return conditions
}

func (d *decoder) stringList(path string, v jsonValue) []string {
	if v.kind != jsonArray {
		d.fail(path, "must be an array of strings")
		return nil
	}
	out := make([]string, len(v.items))
	for i, item := range v.items {
		out[i] = d.stringValue(indexPath(path, i), item)
	}
	return out
}

func (d *decoder) stringValue(path string, v jsonValue) string {
	if v.kind != jsonString {
		d.fail(path, "must be a string")
		return ""
	}
	return v.text
}

func (d *decoder) boolean(path string, v jsonValue) bool {
	if v.kind != jsonBool {
		d.fail(path, "must be a boolean")
		return false
	}
	return v.boolean
}

// integer accepts only integral literals: 1.0 and 1e3 are rejected so that
// a fractional rate is never silently truncated.
func (d *decoder) integer(path string, v jsonValue) int64 {
	if v.kind != jsonNumber || strings.ContainsAny(v.text, ".eE") {
		d.fail(path, "must be an integer")
		return 0
	}
	n, err := strconv.ParseInt(v.text, 10, 64)
	if err != nil {
		d.fail(path, "is out of range")
		return 0
	}
	return n
}

func (d *decoder) duration(path string, v jsonValue) Duration {
	if v.kind != jsonString {
		d.fail(path, `must be a duration string such as "1s"`)
		return 0
	}
	parsed, err := time.ParseDuration(v.text)
	if err != nil {
		d.fail(path, fmt.Sprintf("invalid duration %q", v.text))
		return 0
	}
	return Duration(parsed)
}
