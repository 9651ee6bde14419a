package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/fsm/rules"
)

// RemoteError is an admin call a node refused, decoded from its answer
// (the {"error", "fields"} body api/ writes) by DecodeError. It unwraps to
// the sentinel for its status, so errors.Is(err, ErrNoLeader) and the like
// work across the network, and, when the node listed invalid fields, to a
// *rules.ValidationError. The Go client and node-to-node forwarding both
// return it.
type RemoteError struct {
	Status int
	// Msg is the node's error message.
	Msg string
	// Fields lists the invalid fields the node named, if any.
	Fields []rules.FieldError
}

func (e *RemoteError) Error() string { return e.Msg }

func (e *RemoteError) Unwrap() []error {
	var causes []error
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		causes = append(causes, ErrInvalid)
	case http.StatusUnauthorized:
		causes = append(causes, ErrUnauthorized)
	case http.StatusNotFound:
		if strings.Contains(e.Msg, ErrUnknownRule.Error()) {
			causes = append(causes, ErrUnknownRule)
		} else {
			causes = append(causes, ErrUnknownNode)
		}
	case http.StatusConflict:
		causes = append(causes, ErrConflict)
	case http.StatusUnprocessableEntity:
		causes = append(causes, ErrUnreachable)
	case http.StatusServiceUnavailable:
		if strings.Contains(e.Msg, ErrNoLeader.Error()) {
			causes = append(causes, ErrNoLeader)
		} else {
			causes = append(causes, ErrUnavailable)
		}
	}
	if len(e.Fields) > 0 {
		causes = append(causes, &rules.ValidationError{Errors: e.Fields})
	}
	return causes
}

// maxQuotedBody bounds how much of a non-JSON answer becomes the message.
const maxQuotedBody = 200

// DecodeError decodes a node's error answer with the given status. A body
// that is not the admin API's JSON (a proxy's error page, say) becomes the
// message, shortened, or the status text when it is empty.
func DecodeError(status int, body []byte) *RemoteError {
	e := &RemoteError{Status: status}
	var answer struct {
		Error  string `json:"error"`
		Fields []struct {
			Field string `json:"field"`
			Error string `json:"error"`
		} `json:"fields"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Error != "" {
		e.Msg = answer.Error
		for _, f := range answer.Fields {
			e.Fields = append(e.Fields, rules.FieldError{Path: f.Field, Msg: f.Error})
		}
		return e
	}
	e.Msg = strings.ToValidUTF8(strings.TrimSpace(string(body[:min(len(body), maxQuotedBody)])), "")
	if e.Msg == "" {
		e.Msg = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	return e
}
