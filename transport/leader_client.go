package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

// LeaderClient makes the admin calls a follower forwards to the leader (or
// a joining node sends to a member) over the leader's HTTP API.
type LeaderClient struct {
	token string
	http  *http.Client
}

// NewLeaderClient returns a client that authenticates with token and gives
// up on a call after timeout.
func NewLeaderClient(token string, timeout time.Duration) *LeaderClient {
	return &LeaderClient{token: token, http: &http.Client{Timeout: timeout}}
}

// Join asks the member at target ("host:port" or "http://host:port") to add
// req to the cluster.
func (c *LeaderClient) Join(ctx context.Context, target string, req admin.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, target, "/v1/cluster/join", body, nil)
}

// SetRules replaces the rules through the leader at target.
func (c *LeaderClient) SetRules(ctx context.Context, target string, doc []byte) (uint64, error) {
	var out struct {
		Version uint64 `json:"version"`
	}
	err := c.do(ctx, http.MethodPut, target, "/v1/rules", doc, &out)
	return out.Version, err
}

// RemoveNode removes member id through the leader at target.
func (c *LeaderClient) RemoveNode(ctx context.Context, target, id string) error {
	return c.do(ctx, http.MethodDelete, target, "/v1/cluster/nodes/"+url.PathEscape(id), nil, nil)
}

// ClusterStatus returns the cluster as the leader at target sees it.
func (c *LeaderClient) ClusterStatus(ctx context.Context, target string) (admin.ClusterStatus, error) {
	var out admin.ClusterStatus
	err := c.do(ctx, http.MethodGet, target, "/v1/cluster", nil, &out)
	return out, err
}

// ReportDemand sends this node's demand report to the leader at target.
func (c *LeaderClient) ReportDemand(ctx context.Context, target string, r admin.DemandReport) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, target, "/v1/internal/demand", body, nil)
}

// baseURL turns a member address ("host:port" or "http://host:port") into
// the base URL of its HTTP API.
func baseURL(target string) string {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	return strings.TrimRight(target, "/")
}

func (c *LeaderClient) do(ctx context.Context, method, target, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL(target)+path, rd)
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if admin.IsForwarded(ctx) {
		req.Header.Set(admin.ForwardedHeader, "1")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", admin.ErrUnavailable, method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: read answer from %s: %v", admin.ErrUnavailable, target, err)
	}
	if resp.StatusCode >= 300 {
		return errorFromResponse(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", target, err)
	}
	return nil
}

// errorBody is the error answer of the admin API (written by api/errors.go).
type errorBody struct {
	Error  string `json:"error"`
	Fields []struct {
		Field string `json:"field"`
		Error string `json:"error"`
	} `json:"fields"`
}

// remoteError is an error answer from another node: its message as that
// node wrote it, unwrapping to the admin sentinel for its status (and to a
// *rules.ValidationError when the answer listed invalid fields).
type remoteError struct {
	msg    string
	causes []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.causes }

// errorFromResponse maps an admin API error answer back to the sentinel
// errors of package admin, keeping the remote message.
func errorFromResponse(status int, body []byte) error {
	var eb errorBody
	if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
		eb.Error = strings.TrimSpace(string(body))
		if eb.Error == "" {
			eb.Error = http.StatusText(status)
		}
	}
	e := &remoteError{msg: eb.Error}
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		e.causes = append(e.causes, admin.ErrInvalid)
		if len(eb.Fields) > 0 {
			ve := &rules.ValidationError{}
			for _, f := range eb.Fields {
				ve.Errors = append(ve.Errors, rules.FieldError{Path: f.Field, Msg: f.Error})
			}
			e.causes = append(e.causes, ve)
		}
	case http.StatusUnauthorized:
		e.causes = append(e.causes, admin.ErrUnauthorized)
	case http.StatusNotFound:
		e.causes = append(e.causes, admin.ErrUnknownNode)
	case http.StatusServiceUnavailable:
		if strings.Contains(eb.Error, admin.ErrNoLeader.Error()) {
			e.causes = append(e.causes, admin.ErrNoLeader)
		} else {
			e.causes = append(e.causes, admin.ErrUnavailable)
		}
	default:
		e.causes = append(e.causes, errors.New(http.StatusText(status)))
	}
	return e
}
