package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

// AdminError is an admin call the node refused. It unwraps to the admin
// sentinel for its status (errors.Is(err, admin.ErrNoLeader) and so on) and,
// when the node listed invalid fields, to a *rules.ValidationError.
type AdminError struct {
	Status int
	// Msg is the node's error message.
	Msg string
	// Fields lists the invalid fields the node named, if any.
	Fields []rules.FieldError
}

func (e *AdminError) Error() string { return e.Msg }

func (e *AdminError) Unwrap() []error {
	var causes []error
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		causes = append(causes, admin.ErrInvalid)
	case http.StatusUnauthorized:
		causes = append(causes, admin.ErrUnauthorized)
	case http.StatusNotFound:
		causes = append(causes, admin.ErrUnknownNode)
	case http.StatusServiceUnavailable:
		if strings.Contains(e.Msg, admin.ErrNoLeader.Error()) {
			causes = append(causes, admin.ErrNoLeader)
		} else {
			causes = append(causes, admin.ErrUnavailable)
		}
	}
	if len(e.Fields) > 0 {
		causes = append(causes, &rules.ValidationError{Errors: e.Fields})
	}
	return causes
}

// ClusterStatus returns the members, leader and term (GET /v1/cluster).
func (c *Client) ClusterStatus(ctx context.Context) (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	err := c.adminCall(ctx, http.MethodGet, "/v1/cluster", nil, &st)
	return st, err
}

// Join asks the node to add a member (POST /v1/cluster/join).
func (c *Client) Join(ctx context.Context, req admin.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.adminCall(ctx, http.MethodPost, "/v1/cluster/join", body, nil)
}

// RemoveNode removes a member (DELETE /v1/cluster/nodes/{id}).
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	return c.adminCall(ctx, http.MethodDelete, "/v1/cluster/nodes/"+url.PathEscape(id), nil, nil)
}

// Rules returns the rules array and its version (GET /v1/rules).
func (c *Client) Rules(ctx context.Context) (admin.RulesDoc, error) {
	var doc admin.RulesDoc
	err := c.adminCall(ctx, http.MethodGet, "/v1/rules", nil, &doc)
	return doc, err
}

// SetRules replaces the cluster's rules with doc, a full rules document, and
// returns the new version (PUT /v1/rules).
func (c *Client) SetRules(ctx context.Context, doc []byte) (uint64, error) {
	var out struct {
		Version uint64 `json:"version"`
	}
	err := c.adminCall(ctx, http.MethodPut, "/v1/rules", doc, &out)
	return out.Version, err
}

// Leases returns every node's share of every rule (GET /v1/leases).
func (c *Client) Leases(ctx context.Context) (admin.Leases, error) {
	var l admin.Leases
	err := c.adminCall(ctx, http.MethodGet, "/v1/leases", nil, &l)
	return l, err
}

// maxAdminAnswer bounds how much of an admin answer is read.
const maxAdminAnswer = 4 << 20

func (c *Client) adminCall(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return fmt.Errorf("sluice: read %s answer: %w", path, err)
	}
	if resp.StatusCode >= 300 {
		return adminError(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("sluice: decode %s answer: %w", path, err)
	}
	return nil
}

// adminError decodes the node's {"error", "fields"} answer.
func adminError(status int, raw []byte) *AdminError {
	e := &AdminError{Status: status}
	var body struct {
		Error  string `json:"error"`
		Fields []struct {
			Field string `json:"field"`
			Error string `json:"error"`
		} `json:"fields"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Msg = body.Error
		for _, f := range body.Fields {
			e.Fields = append(e.Fields, rules.FieldError{Path: f.Field, Msg: f.Error})
		}
		return e
	}
	e.Msg = strings.ToValidUTF8(strings.TrimSpace(string(raw[:min(len(raw), 200)])), "")
	if e.Msg == "" {
		e.Msg = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	return e
}
