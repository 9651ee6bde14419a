package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// fakeAdmin records calls and answers with err when set.
type fakeAdmin struct {
	err      error
	joined   []admin.JoinRequest
	removed  []string
	setDocs  []string
	rulesDoc admin.RulesDoc
	reports  []admin.DemandReport
}

func (f *fakeAdmin) ClusterStatus(context.Context) (admin.ClusterStatus, error) {
	return admin.ClusterStatus{Leader: "n1", Term: 2, Nodes: []admin.NodeStatus{{ID: "n1", Voter: true, State: "leader", Healthy: true}}}, f.err
}
func (f *fakeAdmin) Join(_ context.Context, req admin.JoinRequest) error {
	if f.err == nil {
		f.joined = append(f.joined, req)
	}
	return f.err
}
func (f *fakeAdmin) RemoveNode(_ context.Context, id string) error {
	if f.err == nil {
		f.removed = append(f.removed, id)
	}
	return f.err
}
func (f *fakeAdmin) Rules(context.Context) (admin.RulesDoc, error) { return f.rulesDoc, f.err }
func (f *fakeAdmin) SetRules(_ context.Context, doc []byte) (uint64, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.setDocs = append(f.setDocs, string(doc))
	return uint64(len(f.setDocs)), nil
}

func (f *fakeAdmin) Leases(context.Context) (admin.Leases, error) {
	return admin.Leases{"per-ip": {"n1": {Share: 0.75, ExpiresInMs: 900}}}, f.err
}
func (f *fakeAdmin) ReportDemand(_ context.Context, r admin.DemandReport) error {
	if f.err == nil {
		f.reports = append(f.reports, r)
	}
	return f.err
}
func (f *fakeAdmin) HandOver(context.Context, string) error { return f.err }

func adminRouter(a admin.Admin, token string) *gin.Engine {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(limitBody)
	registerAdminRoutes(r, a, nil, newAdminAuth(token, nil).guard(writeError))
	return r
}

type adminCall struct {
	method, path, body string
	remote, auth       string
}

// serve runs one request and decodes the JSON answer.
func serve(t *testing.T, h http.Handler, call adminCall) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(call.method, call.path, strings.NewReader(call.body))
	req.RemoteAddr = "127.0.0.1:50000"
	if call.remote != "" {
		req.RemoteAddr = call.remote
	}
	if call.auth != "" {
		req.Header.Set("Authorization", call.auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: answer %q is not a JSON object: %v", call.method, call.path, w.Body.String(), err)
	}
	return w.Code, body
}

var everyAdminRoute = []adminCall{
	{method: "GET", path: "/v1/cluster"},
	{method: "POST", path: "/v1/cluster/join", body: `{"node_id":"n2","raft_addr":"127.0.0.1:7002","http_addr":"127.0.0.1:8002"}`},
	{method: "DELETE", path: "/v1/cluster/nodes/n2"},
	{method: "GET", path: "/v1/rules"},
	{method: "PUT", path: "/v1/rules", body: `{"rules":[]}`},
	{method: "GET", path: "/v1/leases"},
	{method: "POST", path: "/v1/internal/demand", body: `{"node_id":"n2","rates":{"per-ip":12.5}}`},
}

func TestAdminTokenRequired(t *testing.T) {
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Rules: json.RawMessage("[]")}}
	h := adminRouter(fake, "s3cret")
	for _, call := range everyAdminRoute {
		for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "Basic s3cret", "s3cret"} {
			call.auth = auth
			code, body := serve(t, h, call)
			if code != http.StatusUnauthorized || body["error"] == nil {
				t.Errorf("%s %s with %q: %d %v, want 401 with an error", call.method, call.path, auth, code, body)
			}
		}
		call.auth = "bearer s3cret"
		call.remote = "203.0.113.9:4000" // any client with the token
		if code, body := serve(t, h, call); code != http.StatusOK {
			t.Errorf("%s %s with the token: %d %v", call.method, call.path, code, body)
		}
	}
	if len(fake.joined) != 1 || len(fake.removed) != 1 || len(fake.setDocs) != 1 || len(fake.reports) != 1 {
		t.Fatalf("unauthorized calls reached the node: %+v", fake)
	}
}

func TestAdminWithoutTokenLoopbackOnly(t *testing.T) {
	h := adminRouter(&fakeAdmin{rulesDoc: admin.RulesDoc{Rules: json.RawMessage("[]")}}, "")
	for _, call := range everyAdminRoute {
		for _, remote := range []string{"127.0.0.1:1234", "[::1]:1234"} {
			call.remote = remote
			if code, body := serve(t, h, call); code != http.StatusOK {
				t.Errorf("%s %s from %s: %d %v", call.method, call.path, remote, code, body)
			}
		}
		call.remote = "192.0.2.10:1234"
		req := httptest.NewRequest(call.method, call.path, strings.NewReader(call.body))
		req.RemoteAddr = call.remote
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s from a remote peer claiming loopback: %d", call.method, call.path, w.Code)
		}
	}
}

func TestJoinBadBodies(t *testing.T) {
	cases := []struct {
		body, field string
	}{
		{`{`, ""},
		{``, ""},
		{`[]`, ""},
		{`{"node_id": 7, "raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, "node_id"},
		{`{"node_id":"n2","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2","voter":true}`, "voter"},
		{`{"raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, "node_id"},
		{`{"node_id":"n2","raft_addr":"nowhere","http_addr":"127.0.0.1:2"}`, "raft_addr"},
		{`{"node_id":"n2","raft_addr":"127.0.0.1:1"}`, "http_addr"},
		{`{"node_id":"n2","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"} {}`, ""},
	}
	fake := &fakeAdmin{}
	h := adminRouter(fake, "")
	for _, tc := range cases {
		code, body := serve(t, h, adminCall{method: "POST", path: "/v1/cluster/join", body: tc.body})
		if code != http.StatusBadRequest {
			t.Errorf("join %q: status %d, want 400", tc.body, code)
			continue
		}
		if msg, _ := body["error"].(string); msg == "" {
			t.Errorf("join %q: no error message: %v", tc.body, body)
		}
		if field, _ := body["field"].(string); field != tc.field {
			t.Errorf("join %q: field %q, want %q", tc.body, field, tc.field)
		}
	}
	if len(fake.joined) != 0 {
		t.Fatalf("bad join bodies reached the node: %v", fake.joined)
	}
}

func TestAdminErrorStatuses(t *testing.T) {
	ve := &rules.ValidationError{Errors: []rules.FieldError{
		{Path: "rules[0].limit.rate", Msg: "must be > 0"},
		{Path: "rules[1].name", Msg: "duplicate name"},
	}}
	cases := []struct {
		err    error
		status int
	}{
		{fmt.Errorf("%w: n9", admin.ErrUnknownNode), http.StatusNotFound},
		{admin.ErrNoLeader, http.StatusServiceUnavailable},
		{fmt.Errorf("%w: closing", admin.ErrUnavailable), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", admin.ErrInvalid, ve), http.StatusBadRequest},
		{admin.ErrUnauthorized, http.StatusUnauthorized},
		{fmt.Errorf("%w: n1 is the last voter", admin.ErrConflict), http.StatusConflict},
		{fmt.Errorf("%w: raft at 10.0.0.9:7000: refused", admin.ErrUnreachable), http.StatusUnprocessableEntity},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	}
	for _, tc := range cases {
		h := adminRouter(&fakeAdmin{err: tc.err}, "")
		for _, call := range everyAdminRoute {
			code, body := serve(t, h, call)
			if code != tc.status || body["error"] == nil {
				t.Errorf("%s %s with %v: %d %v, want %d", call.method, call.path, tc.err, code, body, tc.status)
			}
		}
	}
}

func TestInvalidRulesListEveryField(t *testing.T) {
	ve := &rules.ValidationError{Errors: []rules.FieldError{
		{Path: "rules[0].limit.rate", Msg: "must be > 0"},
		{Path: "rules[1].name", Msg: "duplicate name"},
	}}
	h := adminRouter(&fakeAdmin{err: fmt.Errorf("%w: %w", admin.ErrInvalid, ve)}, "")
	code, body := serve(t, h, adminCall{method: "PUT", path: "/v1/rules", body: `{}`})
	if code != http.StatusBadRequest || body["field"] != "rules[0].limit.rate" {
		t.Fatalf("PUT invalid rules: %d %v", code, body)
	}
	fields, _ := body["fields"].([]any)
	if len(fields) != 2 {
		t.Fatalf("fields = %v", body["fields"])
	}
	second, _ := fields[1].(map[string]any)
	if second["field"] != "rules[1].name" || second["error"] != "duplicate name" {
		t.Fatalf("second field = %v", second)
	}
}

func TestRulesRoutes(t *testing.T) {
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Version: 3, Rules: json.RawMessage(`[{"name":"a"}]`)}}
	h := adminRouter(fake, "")
	code, body := serve(t, h, adminCall{method: "GET", path: "/v1/rules"})
	list, _ := body["rules"].([]any)
	if code != 200 || body["version"] != 3.0 || len(list) != 1 {
		t.Fatalf("GET /v1/rules: %d %v", code, body)
	}
	doc := `{"rules":[{"name":"b"}]}`
	code, body = serve(t, h, adminCall{method: "PUT", path: "/v1/rules", body: doc})
	if code != 200 || body["version"] != 1.0 || len(fake.setDocs) != 1 || fake.setDocs[0] != doc {
		t.Fatalf("PUT /v1/rules: %d %v, node saw %v", code, body, fake.setDocs)
	}
}

func TestAdminBodyOverLimit(t *testing.T) {
	fake := &fakeAdmin{}
	h := adminRouter(fake, "")
	big := `{"rules":[` + strings.Repeat(" ", maxBodyBytes) + `]}`
	if code, body := serve(t, h, adminCall{method: "PUT", path: "/v1/rules", body: big}); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT 1 MiB+: %d %v", code, body)
	}
	if len(fake.setDocs) != 0 {
		t.Fatal("an oversized body reached the node")
	}
}

func TestErrorResponseForCheckFieldError(t *testing.T) {
	status, body := errorResponse(fmt.Errorf("decode: %w", &check.FieldError{Field: "cost", Msg: "must be >= 1"}))
	if status != http.StatusBadRequest || body["field"] != "cost" || body["error"] != "must be >= 1" {
		t.Fatalf("errorResponse = %d %v", status, body)
	}
	status, _ = errorResponse(&http.MaxBytesError{Limit: 1})
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("MaxBytesError → %d", status)
	}
}

func TestLeasesAndDemandRoutes(t *testing.T) {
	fake := &fakeAdmin{}
	h := adminRouter(fake, "")
	code, body := serve(t, h, adminCall{method: "GET", path: "/v1/leases"})
	lease, _ := body["per-ip"].(map[string]any)["n1"].(map[string]any)
	if code != http.StatusOK || lease["share"] != 0.75 || lease["expires_in_ms"] != 900.0 {
		t.Fatalf("GET /v1/leases: %d %v", code, body)
	}
	bad := map[string]string{
		`{"rates":{"r":1}}`:                     "node_id",
		`{"node_id":"n2","rates":{"r":-1}}`:     "rates.r",
		`{"node_id":"n2","rates":{"r":"fast"}}`: "rates",
		`{"node_id":"n2","rates":{},"extra":1}`: "extra",
		`{"node_id":"n2","rates":{"r":1e999}}`:  "",
		`{"node_id":"n2","rates":{"r":1}} junk`: "",
	}
	for in, field := range bad {
		code, body := serve(t, h, adminCall{method: "POST", path: "/v1/internal/demand", body: in})
		if code != http.StatusBadRequest || (field != "" && body["field"] != field) {
			t.Errorf("demand %s: %d %v, want 400 naming %q", in, code, body, field)
		}
	}
	if len(fake.reports) != 0 {
		t.Fatalf("bad reports reached the node: %v", fake.reports)
	}
	code, _ = serve(t, h, adminCall{method: "POST", path: "/v1/internal/demand", body: `{"node_id":"n2","rates":{"r":3.5}}`})
	if code != http.StatusOK || len(fake.reports) != 1 || fake.reports[0].Rates["r"] != 3.5 || fake.reports[0].NodeID != "n2" {
		t.Fatalf("good report: %d, node saw %v", code, fake.reports)
	}
}

// TestNodeCertificateAdmitsWithoutToken: a client the node-certificate
// check recognises (another node, over mutual TLS) passes the guard without
// the token, from any address; any other TLS client still needs it.
func TestNodeCertificateAdmitsWithoutToken(t *testing.T) {
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Rules: json.RawMessage("[]")}}
	nodeClient := func(s *tls.ConnectionState) bool { return s != nil && s.ServerName == "node" }
	gin.SetMode(gin.TestMode)
	r := gin.New()
	registerAdminRoutes(r, fake, nil, newAdminAuth("s3cret", nodeClient).guard(writeError))
	for _, tc := range []struct {
		state *tls.ConnectionState
		want  int
	}{
		{&tls.ConnectionState{ServerName: "node"}, http.StatusOK},
		{&tls.ConnectionState{ServerName: "other"}, http.StatusUnauthorized},
		{nil, http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", "/v1/rules", nil)
		req.RemoteAddr = "10.0.0.9:4000"
		req.TLS = tc.state
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("TLS state %+v: status %d, want %d", tc.state, w.Code, tc.want)
		}
	}
}
