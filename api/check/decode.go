package check

import (
	"strconv"
	"strings"
)

// Decoder parses check and batch request bodies strictly (SPEC §5): every
// problem is a *FieldError naming the field, and nothing is skipped — an
// unknown field is an error, not ignored. Strictness details beyond the SPEC:
//
//   - field names match exactly (encoding/json would also accept "Cost");
//   - a field given twice, and an attribute name given twice, is an error;
//   - "attributes" may be absent or {} (no attributes) but not null;
//   - "cost" absent means 0, the default 1; present it must be an integer
//     ≥ 1 written without fraction or exponent;
//   - strings must be valid UTF-8; an unpaired \uD800-style surrogate escape
//     becomes U+FFFD, as in encoding/json;
//   - at most MaxAttributes attributes, names of at most MaxNameBytes and
//     values of at most MaxValueBytes (after unescaping).
//
// A Decoder keeps its scratch memory between calls, which is what makes
// decoding allocation-free once warm. It is not safe for concurrent use;
// servers keep them in a sync.Pool.
//
// Aliasing: the strings and Attrs slices a decode returns point into the
// Decoder's scratch memory and stay valid only until the next call on the
// same Decoder (or until it goes back to a pool). Copy anything kept longer,
// e.g. with strings.Clone.
type Decoder struct {
	data []byte // the body being decoded; nil between calls
	pos  int    // read offset in data
	item int    // index of the batch item being decoded, -1 outside a batch

	text  []byte              // a copy of data, then unescaped strings; result strings alias it
	attrs []Attr              // attributes of all decoded requests; results alias it
	seen  map[string]struct{} // duplicate check for requests with many attributes
}

// linearDupLimit is the attribute count up to which duplicate names are
// found by a linear scan; beyond it a set keeps hostile bodies with
// thousands of attributes from costing quadratic time.
const linearDupLimit = 16

// DecodeRequest parses one check body {"attributes": {...}, "cost": N} into
// req. On error req is zeroed and the error is a *FieldError. See Decoder for
// how long the strings in req stay valid.
func (d *Decoder) DecodeRequest(body []byte, req *Request) error {
	d.reset(body)
	err := d.topObject()
	if err == nil {
		err = d.readRequest(req)
	}
	if err == nil {
		err = d.end()
	}
	d.data = nil
	if err != nil {
		*req = Request{}
	}
	return err
}

// DecodeBatch parses a batch body {"requests": [{...}, ...]} into reqs[:0],
// reusing its capacity. More than max items is a *FieldError on "requests";
// errors inside an item name it, e.g. "requests[3].attributes.ip". On error
// the returned slice is empty. See Decoder for how long the strings in the
// result stay valid.
func (d *Decoder) DecodeBatch(body []byte, reqs []Request, max int) ([]Request, error) {
	d.reset(body)
	reqs = reqs[:0]
	seen := false
	err := d.topObject()
	if err == nil {
		err = d.readObject(func(key []byte) error {
			if string(key) != "requests" {
				return d.fieldErr(string(key), "unknown field")
			}
			if seen {
				return d.fieldErr("requests", "duplicate field")
			}
			seen = true
			var err error
			reqs, err = d.readRequests(reqs, max)
			return err
		})
	}
	if err == nil && !seen {
		err = d.fieldErr("requests", "is required")
	}
	if err == nil {
		err = d.end()
	}
	d.data = nil
	if err != nil {
		return reqs[:0], err
	}
	return reqs, nil
}

func (d *Decoder) reset(body []byte) {
	d.data, d.pos, d.item = body, 0, -1
	// One copy of the whole body is cheaper than one per string, and lets
	// strings without escapes (nearly all) alias it directly.
	d.text = append(d.text[:0], body...)
	d.attrs = d.attrs[:0]
}

// topObject checks that the body is a JSON object.
func (d *Decoder) topObject() error {
	switch c := d.peek(); {
	case c == '{':
		return nil
	case startsValue(c):
		return &FieldError{Msg: "body must be a JSON object"}
	default:
		return d.unexpected()
	}
}

// readObject parses the object whose opening brace is at d.pos, calling
// field for each member with d.pos before its value; field consumes the value.
func (d *Decoder) readObject(field func(key []byte) error) error {
	d.pos++
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.unexpected()
		}
		key, err := d.readString()
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return d.unexpected()
		}
		d.pos++
		if err := field(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.unexpected()
		}
	}
}

// readRequests parses the "requests" array of a batch.
func (d *Decoder) readRequests(reqs []Request, max int) ([]Request, error) {
	if c := d.peek(); c != '[' {
		if startsValue(c) {
			return reqs, d.fieldErr("requests", "must be an array")
		}
		return reqs, d.unexpected()
	}
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return reqs, nil
	}
	for {
		if len(reqs) >= max {
			return reqs, d.fieldErr("requests", "at most "+strconv.Itoa(max)+" items")
		}
		d.item = len(reqs)
		if c := d.peek(); c != '{' {
			if startsValue(c) {
				return reqs, d.fieldErr("", "must be an object")
			}
			return reqs, d.unexpected()
		}
		reqs = append(reqs, Request{})
		if err := d.readRequest(&reqs[len(reqs)-1]); err != nil {
			return reqs, err
		}
		d.item = -1
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return reqs, nil
		default:
			return reqs, d.unexpected()
		}
	}
}

// readRequest parses the check object whose opening brace is at d.pos.
func (d *Decoder) readRequest(req *Request) error {
	*req = Request{}
	seenAttrs, seenCost := false, false
	return d.readObject(func(key []byte) error {
		var err error
		switch string(key) {
		case "attributes":
			if seenAttrs {
				return d.fieldErr("attributes", "duplicate field")
			}
			seenAttrs = true
			req.Attributes, err = d.readAttrs("attributes")
		case "cost":
			if seenCost {
				return d.fieldErr("cost", "duplicate field")
			}
			seenCost = true
			req.Cost, err = d.readCost()
		default:
			err = d.fieldErr(string(key), "unknown field")
		}
		return err
	})
}

// readAttrs parses an object of string values at d.pos; path is the
// object's field path for errors ("" when it is the whole input). The result
// aliases d.attrs and d.text; it is nil when the object is empty.
func (d *Decoder) readAttrs(path string) (Attrs, error) {
	if c := d.peek(); c != '{' {
		if startsValue(c) {
			return nil, d.fieldErr(path, "must be an object")
		}
		return nil, d.unexpected()
	}
	start := len(d.attrs)
	err := d.readObject(func(key []byte) error {
		if len(key) == 0 {
			return d.fieldErr(path, "attribute names must not be empty")
		}
		if len(d.attrs)-start == MaxAttributes {
			return d.fieldErr(path, TooManyAttributes)
		}
		if msg := NameProblem(bytesString(key)); msg != "" {
			return d.fieldErr(path, msg)
		}
		name := bytesString(key)
		if d.isDuplicate(start, name) {
			return d.fieldErr(joinPath(path, name), "duplicate attribute")
		}
		if c := d.peek(); c != '"' {
			if startsValue(c) {
				return d.fieldErr(joinPath(path, name), "must be a string")
			}
			return d.unexpected()
		}
		value, err := d.readString()
		if err != nil {
			return err
		}
		if len(value) > MaxValueBytes {
			return d.fieldErr(joinPath(path, name), ValueProblem(string(value)))
		}
		d.attrs = append(d.attrs, Attr{Name: name, Value: bytesString(value)})
		return nil
	})
	if err != nil || len(d.attrs) == start {
		return nil, err
	}
	end := len(d.attrs)
	return d.attrs[start:end:end], nil
}

// isDuplicate reports whether name is among the attributes decoded since
// d.attrs[start], remembering it when the set is in use.
func (d *Decoder) isDuplicate(start int, name string) bool {
	attrs := d.attrs[start:]
	if len(attrs) < linearDupLimit {
		for i := range attrs {
			if attrs[i].Name == name {
				return true
			}
		}
		return false
	}
	if len(attrs) == linearDupLimit {
		if d.seen == nil {
			d.seen = make(map[string]struct{})
		}
		clear(d.seen)
		for i := range attrs {
			d.seen[attrs[i].Name] = struct{}{}
		}
	}
	if _, dup := d.seen[name]; dup {
		return true
	}
	d.seen[name] = struct{}{}
	return false
}

// fieldErr builds a client error for field, prefixed with the batch item
// being decoded. field must not alias the Decoder's scratch memory.
func (d *Decoder) fieldErr(field, msg string) error {
	if d.item >= 0 {
		item := "requests[" + strconv.Itoa(d.item) + "]"
		if field == "" {
			field = item
		} else {
			field = item + "." + field
		}
	}
	return &FieldError{Field: field, Msg: msg}
}

// joinPath appends an attribute name to a field path, copying it out of the
// Decoder's scratch memory.
func joinPath(path, name string) string {
	if path == "" {
		return strings.Clone(name)
	}
	return path + "." + name
}
