package check

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The scanner below is the byte-level half of Decoder: whitespace, strings
// and numbers. It never recurses (request bodies are at most three objects
// deep) and checks every index, so no input can make it panic.

// stringSafe[c] reports whether byte c stands for itself inside a JSON string
// and needs no further checking: printable ASCII except '"' and '\\'.
var stringSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// startsValue reports whether c can begin a JSON value. Decoders use it to
// tell a value of the wrong type (a client error naming the field) from
// garbage (a syntax error).
func startsValue(c byte) bool {
	switch c {
	case '"', '{', '[', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// peek skips whitespace and returns the next byte without consuming it, or 0
// at the end of the input (0 is never valid there, so callers need no
// separate end check).
func (d *Decoder) peek() byte {
	for ; d.pos < len(d.data); d.pos++ {
		switch c := d.data[d.pos]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// unexpected reports the byte at d.pos, or the end of the input, as a syntax error.
func (d *Decoder) unexpected() error {
	if d.pos >= len(d.data) {
		return syntaxError(d.pos, "unexpected end of input")
	}
	c := d.data[d.pos]
	if c < 0x20 || c >= 0x7f {
		return syntaxError(d.pos, fmt.Sprintf("unexpected byte 0x%02x", c))
	}
	return syntaxError(d.pos, fmt.Sprintf("unexpected %q", c))
}

// end checks that only whitespace follows the top-level value.
func (d *Decoder) end() error {
	if d.peek(); d.pos < len(d.data) {
		return syntaxError(d.pos, "unexpected data after the JSON object")
	}
	return nil
}

// readString parses the string at d.pos (an opening quote) and returns its
// content as a slice of d.text: of the copy of the input when the string
// holds no escapes (the common case), otherwise of its unescaped bytes
// appended after that copy. The result is capped so appending to it copies.
func (d *Decoder) readString() ([]byte, error) {
	data := d.data
	start := d.pos + 1
	for i := start; i < len(data); {
		c := data[i]
		if stringSafe[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			d.pos = i + 1
			return d.text[start:i:i], nil
		case c == '\\':
			mark := len(d.text)
			d.text = append(d.text, data[start:i]...)
			d.pos = i
			if err := d.unescapeRest(); err != nil {
				return nil, err
			}
			return d.text[mark:len(d.text):len(d.text)], nil
		case c < 0x20:
			return nil, syntaxError(i, "control character in string")
		default:
			size, err := utf8RuneAt(data, i)
			if err != nil {
				return nil, err
			}
			i += size
		}
	}
	return nil, syntaxError(len(data), "unexpected end of input in string")
}

// unescapeRest continues a string from the backslash at d.pos, appending the
// unescaped content to d.text and consuming the closing quote. Like
// encoding/json it turns an unpaired surrogate escape into U+FFFD.
func (d *Decoder) unescapeRest() error {
	data := d.data
	for i := d.pos; i < len(data); {
		c := data[i]
		if stringSafe[c] {
			d.text = append(d.text, c)
			i++
			continue
		}
		switch {
		case c == '"':
			d.pos = i + 1
			return nil
		case c == '\\':
			n, err := d.unescapeOne(i)
			if err != nil {
				return err
			}
			i += n
		case c < 0x20:
			return syntaxError(i, "control character in string")
		default:
			size, err := utf8RuneAt(data, i)
			if err != nil {
				return err
			}
			d.text = append(d.text, data[i:i+size]...)
			i += size
		}
	}
	return syntaxError(len(data), "unexpected end of input in string")
}

// unescapeOne appends the escape sequence starting at the backslash at
// data[i] to d.text and returns its length in the input.
func (d *Decoder) unescapeOne(i int) (int, error) {
	data := d.data
	if i+1 >= len(data) {
		return 0, syntaxError(len(data), "unexpected end of input in string")
	}
	var c byte
	switch data[i+1] {
	case '"', '\\', '/':
		c = data[i+1]
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		r, ok := hex4(data, i+2)
		if !ok {
			return 0, syntaxError(i, `invalid \u escape`)
		}
		n := 6
		if utf16.IsSurrogate(r) {
			r2, ok := rune(-1), false
			if i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
				r2, ok = hex4(data, i+8)
			}
			if pair := utf16.DecodeRune(r, r2); ok && pair != utf8.RuneError {
				r, n = pair, 12
			} else {
				r = utf8.RuneError
			}
		}
		d.text = utf8.AppendRune(d.text, r)
		return n, nil
	default:
		return 0, syntaxError(i, "invalid escape")
	}
	d.text = append(d.text, c)
	return 2, nil
}

// hex4 decodes the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// utf8RuneAt returns the length of the multi-byte UTF-8 sequence at data[i].
// Invalid UTF-8 is rejected rather than replaced: RFC 8259 requires UTF-8,
// and rate-limit keys built from mangled bytes would silently collide.
func utf8RuneAt(data []byte, i int) (int, error) {
	r, size := utf8.DecodeRune(data[i:])
	if r == utf8.RuneError && size <= 1 {
		return 0, syntaxError(i, "invalid UTF-8 in string")
	}
	return size, nil
}

// readCost parses the value of "cost": a JSON integer ≥ 1. Fractions and
// exponents (1.0, 1e3) are refused even when their value is integral.
func (d *Decoder) readCost() (int64, error) {
	const maxCost = 1<<63 - 1
	data := d.data
	d.peek()
	i := d.pos
	neg := i < len(data) && data[i] == '-'
	if neg {
		i++
	}
	if i >= len(data) || data[i] < '0' || data[i] > '9' {
		if !neg && startsValue(d.peek()) {
			return 0, d.fieldErr("cost", "must be an integer >= 1")
		}
		d.pos = i
		return 0, d.unexpected()
	}
	var n uint64
	tooLarge := false
	if data[i] == '0' {
		if i++; i < len(data) && '0' <= data[i] && data[i] <= '9' {
			d.pos = i // JSON forbids leading zeros
			return 0, d.unexpected()
		}
	} else {
		for ; i < len(data) && '0' <= data[i] && data[i] <= '9'; i++ {
			digit := uint64(data[i] - '0')
			if n > (maxCost-digit)/10 {
				tooLarge = true // stop accumulating so n cannot wrap around
			} else if !tooLarge {
				n = n*10 + digit
			}
		}
	}
	integral := true
	if i < len(data) && data[i] == '.' {
		integral = false
		if i = d.skipDigits(i + 1); i < 0 {
			return 0, d.unexpected()
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		integral = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i = d.skipDigits(i); i < 0 {
			return 0, d.unexpected()
		}
	}
	d.pos = i
	switch {
	case neg || !integral || n == 0:
		return 0, d.fieldErr("cost", "must be an integer >= 1")
	case tooLarge:
		return 0, d.fieldErr("cost", "must be at most 9223372036854775807")
	}
	return int64(n), nil
}

// skipDigits skips the one or more digits JSON requires at d.data[i:] and
// returns the index after them, or -1 with d.pos at i when there is none.
func (d *Decoder) skipDigits(i int) int {
	start := i
	for i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9' {
		i++
	}
	if i == start {
		d.pos = i
		return -1
	}
	return i
}

// bytesString views b as a string without copying; b must not change while
// the string is in use.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
