package check

import (
	"strconv"
	"unicode/utf8"
)

// AppendDecision appends d to dst as the JSON check answer of SPEC §5, with
// the fields in the order of the Decision and Result struct tags. It writes
// what encoding/json (with HTML escaping off) writes for the same value,
// except that results is always an array, never null. With a reused dst it
// does not allocate.
func AppendDecision(dst []byte, d *Decision) []byte {
	dst = append(dst, `{"allowed":`...)
	dst = strconv.AppendBool(dst, d.Allowed)
	if d.Rule != "" {
		dst = append(dst, `,"rule":`...)
		dst = appendString(dst, d.Rule)
	}
	dst = append(dst, `,"limit":`...)
	dst = appendInt(dst, d.Limit)
	dst = append(dst, `,"remaining":`...)
	dst = appendInt(dst, d.Remaining)
	dst = append(dst, `,"reset_ms":`...)
	dst = appendInt(dst, d.ResetMs)
	dst = append(dst, `,"retry_after_ms":`...)
	dst = appendInt(dst, d.RetryAfterMs)
	if d.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendString(dst, d.Reason)
	}
	dst = append(dst, `,"mode":`...)
	dst = appendString(dst, string(d.Mode))
	dst = append(dst, `,"results":[`...)
	for i := range d.Results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendResult(dst, &d.Results[i])
	}
	return append(dst, "]}"...)
}

func appendResult(dst []byte, r *Result) []byte {
	dst = append(dst, `{"rule":`...)
	dst = appendString(dst, r.Rule)
	dst = append(dst, `,"key":`...)
	dst = appendString(dst, r.Key)
	dst = append(dst, `,"allowed":`...)
	dst = strconv.AppendBool(dst, r.Allowed)
	dst = append(dst, `,"shadow":`...)
	dst = strconv.AppendBool(dst, r.Shadow)
	dst = append(dst, `,"limit":`...)
	dst = appendInt(dst, r.Limit)
	dst = append(dst, `,"remaining":`...)
	dst = appendInt(dst, r.Remaining)
	dst = append(dst, `,"reset_ms":`...)
	dst = appendInt(dst, r.ResetMs)
	dst = append(dst, `,"retry_after_ms":`...)
	dst = appendInt(dst, r.RetryAfterMs)
	if r.Used != nil {
		dst = append(dst, `,"used":`...)
		dst = appendInt(dst, *r.Used)
	}
	if r.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendString(dst, r.Reason)
	}
	return append(dst, '}')
}

// MarshalJSON lets encoding/json users (gin handlers, the middleware) emit
// exactly the AppendDecision shape, in particular "results": [] rather than null.
func (d Decision) MarshalJSON() ([]byte, error) {
	return AppendDecision(nil, &d), nil
}

// appendString appends s as a JSON string the way encoding/json does without
// HTML escaping: control characters, quotes and backslashes escaped, invalid
// UTF-8 replaced by \ufffd, and U+2028/U+2029 escaped for JavaScript's sake.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if stringSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendInt appends v in decimal. Decisions carry eight small integers each,
// and at millions of decisions per second strconv's general path shows in
// profiles; this writes digits backwards into a stack buffer in one pass.
func appendInt(dst []byte, v int64) []byte {
	if v >= 0 && v < 10 {
		return append(dst, byte('0'+v))
	}
	var buf [20]byte
	i := len(buf)
	u := uint64(v)
	if v < 0 {
		u = uint64(-v)
	}
	for u >= 10 {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	i--
	buf[i] = byte('0' + u)
	if v < 0 {
		dst = append(dst, '-')
	}
	return append(dst, buf[i:]...)
}
