package check

import "fmt"

// FieldError is a client error in a request body. Field names the offending
// field as a path ("cost", "attributes.ip", "requests[3].attributes.ip");
// it is empty for malformed JSON, whose Msg carries the byte offset. The HTTP
// layer answers it with 400 {"error": Msg, "field": Field} (SPEC §5).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// syntaxError reports malformed JSON at byte offset off of the body.
func syntaxError(off int, what string) *FieldError {
	return &FieldError{Msg: fmt.Sprintf("invalid JSON at offset %d: %s", off, what)}
}
