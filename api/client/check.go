package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/api/check"
)

// CheckError is a check call the node did not answer with a decision: a
// status other than 200 (or 429 for a single check). Msg and Field carry the
// node's {"error", "field"} body when it sent one.
type CheckError struct {
	Status int
	Msg    string
	Field  string
}

func (e *CheckError) Error() string {
	msg := e.Msg
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	return fmt.Sprintf("sluice: check answered %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}

// Decide asks the node for one decision (POST /v1/check). A denial is a
// decision, not an error. *Client thereby implements check.Decider.
func (c *Client) Decide(ctx context.Context, req check.Request) (check.Decision, error) {
	var d check.Decision
	isAnswer := func(status int) bool { return status == http.StatusOK || status == http.StatusTooManyRequests }
	err := c.postCheck(ctx, "/v1/check", req, &d, isAnswer)
	return d, err
}

// checkBatch is the body of POST /v1/check/batch.
type checkBatch struct {
	Requests []check.Request `json:"requests"`
}

// checkBatchAnswer is its answer.
type checkBatchAnswer struct {
	Results []check.Decision `json:"results"`
}

// DecideBatch asks for one decision per request, in order, in one round trip
// (POST /v1/check/batch; the node takes at most 1000 per call).
func (c *Client) DecideBatch(ctx context.Context, reqs []check.Request) ([]check.Decision, error) {
	var answer checkBatchAnswer
	isAnswer := func(status int) bool { return status == http.StatusOK }
	if err := c.postCheck(ctx, "/v1/check/batch", checkBatch{Requests: reqs}, &answer, isAnswer); err != nil {
		return nil, err
	}
	if len(answer.Results) != len(reqs) {
		return nil, fmt.Errorf("sluice: batch of %d checks answered with %d results", len(reqs), len(answer.Results))
	}
	return answer.Results, nil
}

// maxCheckErrorBody bounds how much of an error answer is read.
const maxCheckErrorBody = 64 << 10

// postCheck posts body as JSON to path and decodes an answer (a status
// isAnswer accepts) into out. The response body is always drained and closed
// so the connection goes back to the pool for the next call.
func (c *Client) postCheck(ctx context.Context, path string, body, out any, isAnswer func(int) bool) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("sluice: encode check: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	if !isAnswer(resp.StatusCode) {
		return readCheckError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("sluice: decode %s answer: %w", path, err)
	}
	return nil
}

// readCheckError turns a refused check into a *CheckError, keeping the node's
// message, or the start of whatever body a proxy in between sent.
func readCheckError(resp *http.Response) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckErrorBody))
	if err != nil {
		return fmt.Errorf("sluice: check answered %d; reading body: %w", resp.StatusCode, err)
	}
	e := &CheckError{Status: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Msg, e.Field = body.Error, body.Field
		return e
	}
	e.Msg = strings.ToValidUTF8(strings.TrimSpace(string(raw[:min(len(raw), 200)])), "")
	if e.Msg == "" {
		e.Msg = http.StatusText(resp.StatusCode)
	}
	return e
}
