package rules

import "strings"

// FieldError is one problem in a rules document. Path names the JSON
// location ("rules[2].limit.rate"); it is empty for problems with the
// document as a whole, such as a syntax error.
type FieldError struct {
	Path string `json:"path"`
	Msg  string `json:"msg"`
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// ValidationError lists every problem found in a document, so an operator
// can fix a file in one pass instead of one error at a time.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}
