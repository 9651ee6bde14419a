package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sluicehq/sluice/api/admin"
)

// AdminError is an admin call the node refused (see admin.RemoteError): it
// unwraps to the admin sentinel for its status (errors.Is(err,
// admin.ErrNoLeader) and so on) and, when the node listed invalid fields, to
// a *rules.ValidationError.
type AdminError = admin.RemoteError

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

// DryRunRules asks what replacing the rules with doc would change,
// applying nothing (PUT /v1/rules?dry_run=true).
func (c *Client) DryRunRules(ctx context.Context, doc []byte) (admin.RulesDryRun, error) {
	var out admin.RulesDryRun
	err := c.adminCall(ctx, http.MethodPut, "/v1/rules?dry_run=true", doc, &out)
	return out, err
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
		return admin.DecodeError(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("sluice: decode %s answer: %w", path, err)
	}
	return nil
}
