package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api/admin"
)

// LeaderClient makes the admin calls a follower forwards to the leader (or
// a joining node sends to a member) over the leader's HTTP API.
type LeaderClient struct {
	token  string
	scheme string
	http   *http.Client
}

// NewLeaderClient returns a client that authenticates with token and gives
// up on a call after timeout. Members given as bare "host:port" are called
// over HTTPS when useHTTPS (the cluster serves its API with --http-cert),
// else HTTP. HTTPS calls trust nodeTLS's CA (the system roots without
// one) and present its certificate, which admits them to a member's admin
// routes without the token.
func NewLeaderClient(token string, timeout time.Duration, nodeTLS *CertSource, useHTTPS bool) *LeaderClient {
	scheme := "http"
	if useHTTPS {
		scheme = "https"
	}
	return &LeaderClient{token: token, scheme: scheme, http: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialTLSContext: nodeTLS.DialTLS, IdleConnTimeout: 90 * time.Second},
	}}
}

// Join asks the member at target ("host:port", "http://host:port" or
// "https://host:port") to add
// req to the cluster.
func (c *LeaderClient) Join(ctx context.Context, target string, req admin.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	path := "/v1/cluster/join"
	if req.Fresh {
		path += "?fresh=true"
	}
	return c.do(ctx, http.MethodPost, target, path, body, nil)
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

// HandOver asks the leader at target to give voter id's vote to a
// caught-up non-voter before id shuts down.
func (c *LeaderClient) HandOver(ctx context.Context, target, id string) error {
	body, err := json.Marshal(admin.HandOverRequest{NodeID: id})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, target, "/v1/internal/handover", body, nil)
}

// ReportDemand sends this node's demand report to the leader at target.
func (c *LeaderClient) ReportDemand(ctx context.Context, target string, r admin.DemandReport) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, target, "/v1/internal/demand", body, nil)
}

// maxTopAnswer bounds a member's /v1/internal/top answer: every rule's
// summaries, up to top.MaxK entries a side.
const maxTopAnswer = 32 << 20

// Top asks the member at target for its own heavy-hitter summaries of rule
// ("" for every rule) over window, k entries a side.
func (c *LeaderClient) Top(ctx context.Context, target, rule, window string, k int) (admin.NodeTop, error) {
	q := url.Values{"window": {window}, "k": {strconv.Itoa(k)}}
	if rule != "" {
		q.Set("rule", rule)
	}
	var out admin.NodeTop
	err := c.call(ctx, http.MethodGet, target, "/v1/internal/top?"+q.Encode(), nil, &out, maxTopAnswer)
	return out, err
}

// baseURL turns a member address ("host:port" or "scheme://host:port") into
// the base URL of its HTTP API.
func (c *LeaderClient) baseURL(target string) string {
	if !strings.Contains(target, "://") {
		target = c.scheme + "://" + target
	}
	return strings.TrimRight(target, "/")
}

// maxAnswer bounds the answer to an admin call.
const maxAnswer = 1 << 20

func (c *LeaderClient) do(ctx context.Context, method, target, path string, body []byte, out any) error {
	return c.call(ctx, method, target, path, body, out, maxAnswer)
}

// call makes one call, reading at most limit bytes of the answer.
func (c *LeaderClient) call(ctx context.Context, method, target, path string, body []byte, out any, limit int64) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL(target)+path, rd)
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
		if caller, ok := admin.CallerOf(ctx); ok {
			req.Header.Set(admin.CallerHeader, caller.String())
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", admin.ErrUnavailable, method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return fmt.Errorf("%w: read answer from %s: %v", admin.ErrUnavailable, target, err)
	}
	if resp.StatusCode >= 300 {
		return admin.DecodeError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", target, err)
	}
	return nil
}
