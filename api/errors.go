package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// fieldProblem is one entry of the "fields" list of a 400 answer.
type fieldProblem struct {
	Field string `json:"field"`
	Error string `json:"error"`
}

// writeError answers err with its status and a JSON body {"error": ...},
// plus "field" (and "fields" for rules documents) when the error names the
// offending input. This is the one place errors become HTTP statuses.
func writeError(c *gin.Context, err error) {
	status, body := errorResponse(err)
	c.AbortWithStatusJSON(status, body)
}

func errorResponse(err error) (int, gin.H) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, gin.H{"error": "request body larger than 1 MiB"}
	}
	var fe *check.FieldError
	if errors.As(err, &fe) {
		return http.StatusBadRequest, gin.H{"error": fe.Msg, "field": fe.Field}
	}
	switch {
	case errors.Is(err, admin.ErrInvalid):
		body := gin.H{"error": err.Error()}
		var ve *rules.ValidationError
		if errors.As(err, &ve) && len(ve.Errors) > 0 {
			fields := make([]fieldProblem, len(ve.Errors))
			for i, e := range ve.Errors {
				fields[i] = fieldProblem{Field: e.Path, Error: e.Msg}
			}
			body["field"] = fields[0].Field
			body["fields"] = fields
		}
		return http.StatusBadRequest, body
	case errors.Is(err, admin.ErrUnauthorized):
		return http.StatusUnauthorized, gin.H{"error": err.Error()}
	case errors.Is(err, admin.ErrUnknownNode), errors.Is(err, admin.ErrUnknownRule):
		return http.StatusNotFound, gin.H{"error": err.Error()}
	case errors.Is(err, admin.ErrConflict):
		return http.StatusConflict, gin.H{"error": err.Error()}
	case errors.Is(err, admin.ErrUnreachable):
		return http.StatusUnprocessableEntity, gin.H{"error": err.Error(), "field": "raft_addr"}
	case errors.Is(err, admin.ErrNoLeader), errors.Is(err, admin.ErrUnavailable):
		return http.StatusServiceUnavailable, gin.H{"error": err.Error()}
	}
	return http.StatusInternalServerError, gin.H{"error": "internal error: " + err.Error()}
}
