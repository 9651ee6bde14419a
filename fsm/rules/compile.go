package rules

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/api/check"
)

// Compiled is a rule set prepared for the decision path: match patterns are
// precompiled and nothing in it changes after Compile, so readers share it
// freely behind an atomic pointer.
type Compiled struct {
	rules  []CompiledRule
	byName map[string]int
	// attrNames lists every attribute name the rules use; Applicable looks
	// each request attribute up once in it instead of once per rule.
	attrNames []string
}

// maxIndexedAttrs bounds how many attribute names Applicable can resolve
// into a fixed-size stack array and a bit mask. Sets using more names (rare)
// take the slower per-rule lookup.
const maxIndexedAttrs = 32

// CompiledRule is one rule with its matchers. Rule is a private deep copy,
// with Limit.Burst filled in; callers must treat it as read-only.
type CompiledRule struct {
	Rule       Rule
	conditions []condition
	needs      uint32 // bit i set: attrNames[i] must be present
}

type condition struct {
	attr      string
	attrIndex int // into Compiled.attrNames
	pattern   glob
}

// Bucket key bytes (see AppendKey). Rule names cannot contain any of them.
const (
	keyNameEnd  = 0x00
	keyValueSep = 0x1f
	keyEscape   = 0x1e
)

// DisplayKeySep joins key attribute values in DisplayKey.
const DisplayKeySep = "|"

// Compile prepares a valid Set for matching; s is not retained.
func Compile(s *Set) *Compiled {
	c := &Compiled{
		rules:  make([]CompiledRule, len(s.Rules)),
		byName: make(map[string]int, len(s.Rules)),
	}
	for i, r := range s.Rules {
		c.rules[i] = c.compileRule(r)
		c.byName[r.Name] = i
	}
	return c
}

func (c *Compiled) compileRule(r Rule) CompiledRule {
	r.Match = maps.Clone(r.Match)
	r.Key = slices.Clone(r.Key)
	if r.Limit != nil {
		limit := *r.Limit
		if limit.Burst == 0 {
			limit.Burst = limit.Rate
		}
		r.Limit = &limit
	}
	if r.Quota != nil {
		quota := *r.Quota
		r.Quota = &quota
	}
	cr := CompiledRule{Rule: r}
	for _, attr := range slices.Sorted(maps.Keys(r.Match)) {
		cr.conditions = append(cr.conditions, condition{
			attr:      attr,
			attrIndex: c.attrIndex(attr),
			pattern:   compileGlob(r.Match[attr]),
		})
	}
	// Exact comparisons are the cheapest and usually the most selective.
	slices.SortStableFunc(cr.conditions, func(a, b condition) int {
		return cmp.Compare(a.pattern.kind, b.pattern.kind)
	})
	for _, cond := range cr.conditions {
		cr.needs |= attrBit(cond.attrIndex)
	}
	for _, attr := range r.Key {
		cr.needs |= attrBit(c.attrIndex(attr))
	}
	return cr
}

// attrIndex returns name's position in attrNames, adding it if new.
func (c *Compiled) attrIndex(name string) int {
	if i := slices.Index(c.attrNames, name); i >= 0 {
		return i
	}
	c.attrNames = append(c.attrNames, name)
	return len(c.attrNames) - 1
}

// attrBit is the mask bit of an attribute index; indexes past
// maxIndexedAttrs get none, and sets that have them never use the masks.
func attrBit(i int) uint32 {
	if i >= maxIndexedAttrs {
		return 0
	}
	return 1 << i
}

// Len returns the number of rules.
func (c *Compiled) Len() int { return len(c.rules) }

// Rule returns rule i (0 ≤ i < Len), in document order.
func (c *Compiled) Rule(i int) *CompiledRule { return &c.rules[i] }

// Index returns the position of the rule with the given name.
func (c *Compiled) Index(name string) (int, bool) {
	i, ok := c.byName[name]
	return i, ok
}

// Applicable appends to dst the indexes of the rules that apply to attrs —
// every match condition holds and every key attribute is present — in rule
// order. It does not allocate when dst has room.
func (c *Compiled) Applicable(attrs check.Attrs, dst []int) []int {
	if len(c.attrNames) > maxIndexedAttrs {
		return c.applicableByLookup(attrs, dst)
	}
	// Resolve each request attribute once; then a rule whose attributes are
	// not all present is skipped with one mask test.
	var values [maxIndexedAttrs]string
	var present uint32
	for _, attr := range attrs {
		if i := slices.Index(c.attrNames, attr.Name); i >= 0 && present&(1<<i) == 0 {
			values[i] = attr.Value
			present |= 1 << i
		}
	}
	for i := range c.rules {
		r := &c.rules[i]
		if present&r.needs != r.needs {
			continue
		}
		holds := true
		for j := range r.conditions {
			if !r.conditions[j].pattern.match(values[r.conditions[j].attrIndex]) {
				holds = false
				break
			}
		}
		if holds {
			dst = append(dst, i)
		}
	}
	return dst
}

// applicableByLookup is Applicable for sets with too many attribute names
// for the masks.
func (c *Compiled) applicableByLookup(attrs check.Attrs, dst []int) []int {
	for i := range c.rules {
		if c.rules[i].Applies(attrs) {
			dst = append(dst, i)
		}
	}
	return dst
}

// Applies reports whether r applies to attrs (see Applicable).
func (r *CompiledRule) Applies(attrs check.Attrs) bool {
	for i := range r.conditions {
		value, ok := attrs.Get(r.conditions[i].attr)
		if !ok || !r.conditions[i].pattern.match(value) {
			return false
		}
	}
	for _, attr := range r.Rule.Key {
		if _, ok := attrs.Get(attr); !ok {
			return false
		}
	}
	return true
}

// AppendKey appends the bucket identity for attrs to dst: the rule name, a
// 0x00 byte, then the key attribute values separated by 0x1f. Inside values,
// 0x1e and 0x1f are prefixed with 0x1e so that distinct value tuples never
// share a bucket. It does not allocate when dst has room.
func (r *CompiledRule) AppendKey(dst []byte, attrs check.Attrs) []byte {
	dst = append(dst, r.Rule.Name...)
	dst = append(dst, keyNameEnd)
	for i, attr := range r.Rule.Key {
		if i > 0 {
			dst = append(dst, keyValueSep)
		}
		value, _ := attrs.Get(attr)
		dst = appendEscaped(dst, value)
	}
	return dst
}

// DisplayKeyOf turns a bucket key made by AppendKey back into the key as
// decisions show it (DisplayKey), and the rule's name.
func DisplayKeyOf(bucketKey string) (rule, key string) {
	rule, values, _ := strings.Cut(bucketKey, string(rune(keyNameEnd)))
	var b strings.Builder
	for i := 0; i < len(values); i++ {
		switch c := values[i]; {
		case c == keyEscape && i+1 < len(values):
			i++
			b.WriteByte(values[i])
		case c == keyValueSep:
			b.WriteString(DisplayKeySep)
		default:
			b.WriteByte(c)
		}
	}
	return rule, b.String()
}

func appendEscaped(dst []byte, value string) []byte {
	start := 0
	for i := 0; i < len(value); i++ {
		if value[i] == keyEscape || value[i] == keyValueSep {
			dst = append(dst, value[start:i]...)
			dst = append(dst, keyEscape)
			start = i // the special byte itself goes out with the next run
		}
	}
	return append(dst, value[start:]...)
}

// KeyValueBytes is the length of r's key for attrs before escaping: the
// sum of its key attributes' values, the quantity check.MaxKeyBytes bounds.
func (r *CompiledRule) KeyValueBytes(attrs check.Attrs) int {
	n := 0
	for _, attr := range r.Rule.Key {
		value, _ := attrs.Get(attr)
		n += len(value)
	}
	return n
}

// DisplayKey is the key as people see it in decisions and pass to
// /v1/usage: the key attribute values joined by "|" (just the value when
// the key has one attribute).
func (r *CompiledRule) DisplayKey(attrs check.Attrs) string {
	if len(r.Rule.Key) == 1 {
		value, _ := attrs.Get(r.Rule.Key[0])
		return value
	}
	var b strings.Builder
	for i, attr := range r.Rule.Key {
		if i > 0 {
			b.WriteString(DisplayKeySep)
		}
		value, _ := attrs.Get(attr)
		b.WriteString(value)
	}
	return b.String()
}

// AttrsForDisplayKey inverts DisplayKey, giving the key attributes to pass
// to AppendKey. A "|" inside a value is ambiguous; it is kept in the last
// attribute's value, which is right whenever only the last value has one.
func (r *CompiledRule) AttrsForDisplayKey(key string) (check.Attrs, error) {
	switch {
	case len(r.Rule.Key) == 0 && key != "":
		return nil, fmt.Errorf("rule %q has no key (one bucket for every request it applies to): pass an empty key, got %q", r.Rule.Name, key)
	case len(r.Rule.Key) == 0:
		return nil, nil
	case key == "":
		return nil, fmt.Errorf("is required: rule %q is keyed by %s", r.Rule.Name, strings.Join(r.Rule.Key, DisplayKeySep))
	}
	values := strings.SplitN(key, DisplayKeySep, len(r.Rule.Key))
	if len(values) != len(r.Rule.Key) {
		return nil, fmt.Errorf("rule %q needs a key of %d values joined by %q (%s), got %q",
			r.Rule.Name, len(r.Rule.Key), DisplayKeySep, strings.Join(r.Rule.Key, DisplayKeySep), key)
	}
	attrs := make(check.Attrs, len(values))
	for i, value := range values {
		attrs[i] = check.Attr{Name: r.Rule.Key[i], Value: value}
	}
	return attrs, nil
}
