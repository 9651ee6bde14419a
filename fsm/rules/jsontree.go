package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// jsonValue is a parsed JSON value that, unlike map[string]any, keeps object
// members in document order and keeps duplicates, so the parser can report
// problems in order and reject repeated fields.
type jsonValue struct {
	kind    jsonKind
	text    string // string contents, or a number's literal text
	boolean bool
	members []jsonMember
	items   []jsonValue
}

type jsonMember struct {
	name  string
	value jsonValue
}

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonObject
	jsonArray
)

// maxJSONDepth is far deeper than any rules document and keeps hostile input
// from recursing without bound.
const maxJSONDepth = 32

// MaxDocumentBytes is the largest rules document: the HTTP API's body
// limit (SPEC §5), so a file `sluice rules validate` passes is one
// PUT /v1/rules accepts.
const MaxDocumentBytes = 1 << 20

// readJSON parses exactly one JSON value. encoding/json does the lexing, so
// string escapes are handled as everywhere else in Go; invalid UTF-8, which
// encoding/json would quietly turn into U+FFFD, is refused first, as the
// check decoder refuses it.
func readJSON(data []byte) (jsonValue, error) {
	if len(data) > MaxDocumentBytes {
		return jsonValue{}, fmt.Errorf("document of %d bytes is larger than %d (1 MiB)", len(data), MaxDocumentBytes)
	}
	if !utf8.Valid(data) {
		return jsonValue{}, fmt.Errorf("invalid UTF-8 at byte %d", invalidUTF8At(data))
	}
	// Unmarshal checks the whole document up front (syntax, trailing data)
	// and reports where it went wrong, which the token stream does not.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return jsonValue{}, fmt.Errorf("invalid JSON at byte %d: %v", syntax.Offset, err)
		}
		return jsonValue{}, fmt.Errorf("invalid JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return readValue(dec, 0)
}

// invalidUTF8At is the offset of the first byte of data that is not valid UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

func readValue(dec *json.Decoder, depth int) (jsonValue, error) {
	if depth > maxJSONDepth {
		return jsonValue{}, fmt.Errorf("invalid JSON: nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, err
	}
	switch t := tok.(type) {
	case nil:
		return jsonValue{kind: jsonNull}, nil
	case bool:
		return jsonValue{kind: jsonBool, boolean: t}, nil
	case json.Number:
		return jsonValue{kind: jsonNumber, text: string(t)}, nil
	case string:
		return jsonValue{kind: jsonString, text: t}, nil
	case json.Delim:
		if t == '[' {
			return readArray(dec, depth)
		}
		return readObject(dec, depth)
	}
	return jsonValue{}, fmt.Errorf("unexpected token %v", tok)
}

func readArray(dec *json.Decoder, depth int) (jsonValue, error) {
	v := jsonValue{kind: jsonArray}
	for dec.More() {
		item, err := readValue(dec, depth+1)
		if err != nil {
			return jsonValue{}, err
		}
		v.items = append(v.items, item)
	}
	_, err := dec.Token() // ']'
	return v, err
}

func readObject(dec *json.Decoder, depth int) (jsonValue, error) {
	v := jsonValue{kind: jsonObject}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonValue{}, err
		}
		name, _ := tok.(string) // the decoder only yields strings in key position
		item, err := readValue(dec, depth+1)
		if err != nil {
			return jsonValue{}, err
		}
		v.members = append(v.members, jsonMember{name: name, value: item})
	}
	_, err := dec.Token() // '}'
	return v, err
}
