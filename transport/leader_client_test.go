package transport

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm/rules"
)

// recordedRequest is what the fake leader saw.
type recordedRequest struct {
	method, path, auth, body string
}

func fakeLeader(t *testing.T, status int, answer string) (*httptest.Server, *recordedRequest) {
	t.Helper()
	var seen recordedRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = recordedRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), string(body)}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestLeaderClientRequests(t *testing.T) {
	ctx := context.Background()
	c := NewLeaderClient("tok", time.Second, nil, false)

	srv, seen := fakeLeader(t, 200, `{}`)
	join := admin.JoinRequest{NodeID: "n2", RaftAddr: "127.0.0.1:7002", HTTPAddr: "127.0.0.1:8002"}
	if err := c.Join(ctx, strings.TrimPrefix(srv.URL, "http://"), join); err != nil {
		t.Fatal(err)
	}
	var sent admin.JoinRequest
	if err := json.Unmarshal([]byte(seen.body), &sent); err != nil || sent != join {
		t.Fatalf("join body = %s (%v)", seen.body, err)
	}
	if seen.method != "POST" || seen.path != "/v1/cluster/join" || seen.auth != "Bearer tok" {
		t.Fatalf("join request = %+v", *seen)
	}

	srv, seen = fakeLeader(t, 200, `{"version": 7}`)
	v, err := c.SetRules(ctx, srv.URL+"/", []byte(`{"rules":[]}`))
	if err != nil || v != 7 {
		t.Fatalf("SetRules = %d, %v", v, err)
	}
	if seen.method != "PUT" || seen.path != "/v1/rules" || seen.body != `{"rules":[]}` {
		t.Fatalf("rules request = %+v", *seen)
	}

	srv, seen = fakeLeader(t, 200, `{}`)
	if err := c.RemoveNode(ctx, srv.URL, "a/b"); err != nil {
		t.Fatal(err)
	}
	if seen.method != "DELETE" || seen.path != "/v1/cluster/nodes/a%2Fb" {
		t.Fatalf("remove request = %+v", *seen)
	}

	srv, _ = fakeLeader(t, 200, `{"leader":"n1","term":4,"nodes":[{"id":"n1","voter":true}]}`)
	st, err := c.ClusterStatus(ctx, srv.URL)
	if err != nil || st.Leader != "n1" || st.Term != 4 || len(st.Nodes) != 1 || !st.Nodes[0].Voter {
		t.Fatalf("ClusterStatus = %+v, %v", st, err)
	}
}

func TestLeaderClientMapsErrors(t *testing.T) {
	cases := []struct {
		status int
		answer string
		want   error
	}{
		{400, `{"error":"invalid request: node_id is required","field":"node_id"}`, admin.ErrInvalid},
		{401, `{"error":"unauthorized"}`, admin.ErrUnauthorized},
		{404, `{"error":"unknown node: n9"}`, admin.ErrUnknownNode},
		{413, `{"error":"body too large"}`, admin.ErrInvalid},
		{503, `{"error":"no leader"}`, admin.ErrNoLeader},
		{503, `{"error":"unavailable: shutting down"}`, admin.ErrUnavailable},
	}
	for _, tc := range cases {
		srv, _ := fakeLeader(t, tc.status, tc.answer)
		err := NewLeaderClient("", time.Second, nil, false).RemoveNode(context.Background(), srv.URL, "n9")
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d: err = %v, want %v", tc.status, err, tc.want)
			continue
		}
		var body struct{ Error string }
		json.Unmarshal([]byte(tc.answer), &body)
		if err.Error() != body.Error {
			t.Errorf("status %d: message %q, want the leader's %q", tc.status, err, body.Error)
		}
	}

	srv, _ := fakeLeader(t, 500, `oops`)
	err := NewLeaderClient("", time.Second, nil, false).RemoveNode(context.Background(), srv.URL, "x")
	for _, s := range []error{admin.ErrInvalid, admin.ErrNoLeader, admin.ErrUnavailable, admin.ErrUnknownNode} {
		if errors.Is(err, s) {
			t.Fatalf("500 mapped to %v", s)
		}
	}
	if err == nil || err.Error() != "oops" {
		t.Fatalf("500 error = %v", err)
	}
}

func TestLeaderClientKeepsFieldErrors(t *testing.T) {
	srv, _ := fakeLeader(t, 400, `{"error":"invalid request: rules[0].limit.rate: must be > 0; rules[1].name: duplicate",
		"field":"rules[0].limit.rate",
		"fields":[{"field":"rules[0].limit.rate","error":"must be > 0"},{"field":"rules[1].name","error":"duplicate"}]}`)
	_, err := NewLeaderClient("", time.Second, nil, false).SetRules(context.Background(), srv.URL, []byte(`{}`))
	if !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 2 || ve.Errors[1] != (rules.FieldError{Path: "rules[1].name", Msg: "duplicate"}) {
		t.Fatalf("field errors lost: %#v", ve)
	}
}

func TestLeaderClientUnreachableIsUnavailable(t *testing.T) {
	srv, _ := fakeLeader(t, 200, `{}`)
	srv.Close()
	err := NewLeaderClient("", time.Second, nil, false).Join(context.Background(), srv.URL, admin.JoinRequest{})
	if !errors.Is(err, admin.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}
