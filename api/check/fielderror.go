package check

import (
	"errors"
	"fmt"
)

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

// InBatch names the field of err as one inside item i of a batch
// ("cost" → "requests[3].cost"); other errors pass through unchanged.
func InBatch(err error, i int) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field := fmt.Sprintf("requests[%d]", i)
	if fe.Field != "" {
		field += "." + fe.Field
	}
	return &FieldError{Field: field, Msg: fe.Msg}
}
