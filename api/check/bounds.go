package check

import (
	"strconv"
	"unicode/utf8"
)

// Bounds on one check (SPEC §7). Attribute values become bucket keys, held
// in memory, in Redis and (quotas) in bbolt until they expire, so a client
// must not be able to make them large; real keys (addresses, tenants, API
// keys, routes) are far below these. Every entry point enforces them with a
// 400 naming the field, and the engine enforces them again for in-process
// callers.
const (
	// MaxAttributes is the most attributes one check may carry.
	MaxAttributes = 64
	// MaxValueBytes is the longest attribute value, in bytes.
	MaxValueBytes = 4 << 10
	// MaxNameBytes is the longest attribute name: names are matched
	// against rules, never stored, but are echoed in error fields.
	MaxNameBytes = 256
	// MaxKeyBytes bounds a bucket key: the values of one rule's key
	// attributes together. Two values of MaxValueBytes always fit; the key
	// as stored (rule name, separators, escapes) stays under 17 KiB, well
	// within what bbolt (32 KiB keys) and Redis hold.
	MaxKeyBytes = 8 << 10
)

// ValueProblem describes what is wrong with an attribute value, or returns
// "" when nothing is.
func ValueProblem(v string) string {
	if len(v) > MaxValueBytes {
		return "value of " + strconv.Itoa(len(v)) + " bytes is longer than " + strconv.Itoa(MaxValueBytes)
	}
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	return ""
}

// NameProblem describes what is wrong with an attribute name, or returns
// "" when nothing is. The message does not quote the name.
func NameProblem(name string) string {
	if len(name) > MaxNameBytes {
		return "attribute name of " + strconv.Itoa(len(name)) + " bytes is longer than " + strconv.Itoa(MaxNameBytes)
	}
	return ""
}

// TooManyAttributes is the complaint about a check with more than
// MaxAttributes attributes.
const TooManyAttributes = "more than 64 attributes"

// Validate reports the first bound a violates as a *FieldError on
// "attributes" or "attributes.<name>".
func (a Attrs) Validate() error {
	if len(a) > MaxAttributes {
		return &FieldError{Field: "attributes", Msg: TooManyAttributes}
	}
	for i := range a {
		// One pass of plain comparisons; the messages only on a violation.
		if len(a[i].Name) > MaxNameBytes || len(a[i].Value) > MaxValueBytes || !utf8.ValidString(a[i].Value) {
			if msg := NameProblem(a[i].Name); msg != "" {
				return &FieldError{Field: "attributes", Msg: msg}
			}
			return &FieldError{Field: "attributes." + a[i].Name, Msg: ValueProblem(a[i].Value)}
		}
	}
	return nil
}
