package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/fsm/rules"
)

var _ admin.Admin = (*client.Client)(nil)

// recordingAdmin is a node's admin side as the real HTTP routes see it.
type recordingAdmin struct {
	err     error
	joined  []admin.JoinRequest
	removed []string
	doc     []byte
}

func (a *recordingAdmin) ClusterStatus(context.Context) (admin.ClusterStatus, error) {
	return admin.ClusterStatus{Leader: "n1", Term: 5, Nodes: []admin.NodeStatus{
		{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", Voter: true, State: "leader", Healthy: true},
	}}, a.err
}
func (a *recordingAdmin) Join(_ context.Context, req admin.JoinRequest) error {
	a.joined = append(a.joined, req)
	return a.err
}
func (a *recordingAdmin) RemoveNode(_ context.Context, id string) error {
	a.removed = append(a.removed, id)
	return a.err
}
func (a *recordingAdmin) Rules(context.Context) (admin.RulesDoc, error) {
	return admin.RulesDoc{Version: 4, Rules: json.RawMessage(`[{"name":"x"}]`)}, a.err
}
func (a *recordingAdmin) SetRules(_ context.Context, doc []byte) (uint64, error) {
	a.doc = doc
	return 5, a.err
}

func (a *recordingAdmin) Leases(context.Context) (admin.Leases, error) {
	return admin.Leases{"per-ip": {"n1": {Share: 0.4, ExpiresInMs: 1200}, "n2": {Share: 0.05}}}, a.err
}

// noEngine satisfies api.Engine; these tests never decide.
type noEngine struct{}

func (noEngine) Decide(context.Context, check.Request) (check.Decision, error) {
	return check.Decision{}, errors.New("not used")
}
func (noEngine) DecideInto(context.Context, *check.Request, *check.Decision) error {
	return errors.New("not used")
}
func (noEngine) DecideBatch(context.Context, []check.Request, []check.Decision) error {
	return errors.New("not used")
}

// startAdminNode serves a over the real API routes, guarded by token.
func startAdminNode(t *testing.T, a admin.Admin, token string) string {
	t.Helper()
	srv, err := api.NewServer(api.Config{Engine: noEngine{}, Admin: a, AdminToken: token})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestAdminCallsRoundTrip(t *testing.T) {
	a := &recordingAdmin{}
	c := client.New(startAdminNode(t, a, "tok"), client.WithToken("tok"))
	ctx := context.Background()

	st, err := c.ClusterStatus(ctx)
	if err != nil || st.Leader != "n1" || st.Term != 5 || len(st.Nodes) != 1 || st.Nodes[0].HTTPAddr != "127.0.0.1:8001" {
		t.Fatalf("ClusterStatus = %+v, %v", st, err)
	}
	req := admin.JoinRequest{NodeID: "n2", RaftAddr: "127.0.0.1:7002", HTTPAddr: "127.0.0.1:8002"}
	if err := c.Join(ctx, req); err != nil || len(a.joined) != 1 || a.joined[0] != req {
		t.Fatalf("Join: %v, node saw %v", err, a.joined)
	}
	if err := c.RemoveNode(ctx, "n 2"); err != nil || len(a.removed) != 1 || a.removed[0] != "n 2" {
		t.Fatalf("RemoveNode: %v, node saw %v", err, a.removed)
	}
	doc, err := c.Rules(ctx)
	if err != nil || doc.Version != 4 || string(doc.Rules) != `[{"name":"x"}]` {
		t.Fatalf("Rules = %+v, %v", doc, err)
	}
	v, err := c.SetRules(ctx, []byte(`{"rules":[]}`))
	if err != nil || v != 5 || string(a.doc) != `{"rules":[]}` {
		t.Fatalf("SetRules = %d, %v, node saw %s", v, err, a.doc)
	}
	leases, err := c.Leases(ctx)
	if err != nil || leases["per-ip"]["n1"] != (admin.Lease{Share: 0.4, ExpiresInMs: 1200}) || leases["per-ip"]["n2"].Share != 0.05 {
		t.Fatalf("Leases = %v, %v", leases, err)
	}
}

func TestAdminErrorsMapToSentinels(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{fmt.Errorf("%w: ghost", admin.ErrUnknownNode), admin.ErrUnknownNode},
		{fmt.Errorf("%w: ghost", admin.ErrUnknownRule), admin.ErrUnknownRule},
		{admin.ErrNoLeader, admin.ErrNoLeader},
		{fmt.Errorf("%w: closing", admin.ErrUnavailable), admin.ErrUnavailable},
		{fmt.Errorf("%w: node_id is required", admin.ErrInvalid), admin.ErrInvalid},
	}
	for _, tc := range cases {
		c := client.New(startAdminNode(t, &recordingAdmin{err: tc.err}, ""))
		err := c.RemoveNode(context.Background(), "x")
		if !errors.Is(err, tc.want) || err.Error() != tc.err.Error() {
			t.Errorf("node error %v came back as %v", tc.err, err)
		}
	}

	c := client.New(startAdminNode(t, &recordingAdmin{}, "tok"), client.WithToken("nope"))
	if _, err := c.Rules(context.Background()); !errors.Is(err, admin.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestAdminInvalidRulesKeepEveryField(t *testing.T) {
	ve := &rules.ValidationError{Errors: []rules.FieldError{
		{Path: "rules[0].limit.rate", Msg: "must be > 0"},
		{Path: "rules[2].name", Msg: "duplicate name"},
	}}
	c := client.New(startAdminNode(t, &recordingAdmin{err: fmt.Errorf("%w: %w", admin.ErrInvalid, ve)}, ""))
	_, err := c.SetRules(context.Background(), []byte(`{}`))
	var got *rules.ValidationError
	if !errors.Is(err, admin.ErrInvalid) || !errors.As(err, &got) {
		t.Fatalf("SetRules(invalid) = %v", err)
	}
	if len(got.Errors) != 2 || got.Errors[1] != ve.Errors[1] {
		t.Fatalf("fields = %v", got.Errors)
	}
}

func TestAdminUnreachableNode(t *testing.T) {
	hs := httptest.NewServer(nil)
	hs.Close()
	if _, err := client.New(hs.URL).ClusterStatus(context.Background()); err == nil {
		t.Fatal("no error from a closed node")
	}
}
