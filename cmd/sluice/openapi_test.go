package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/openapi"
)

// apiCall is one request to a live node and the status it must get.
type apiCall struct {
	node         *liveNode
	method, path string
	body         string
	header       map[string]string
	want         int
	untilWant    bool // repeat (within a deadline) until the status is want
	// leaderWrite: the call needs the raft leader, which a loaded machine
	// can lose for a moment in the two-voter cluster; 503 is retried.
	leaderWrite   bool
	invalidOnWire bool // the request breaks the document on purpose (a 4xx case)
}

// TestOpenAPIMatchesRealAnswers sends every route of the HTTP API real
// requests on live nodes (an open one, one with an admin token, one that
// has neither a leader nor rules) and checks each answer — status, headers
// and body — against the OpenAPI document served at /openapi.json, with
// kin-openapi's validator. Every status the document lists for an operation
// must have been seen, so the document can neither describe answers the
// node does not give nor miss ones it does.
func TestOpenAPIMatchesRealAnswers(t *testing.T) {
	// The status page's answers are text, checked like /metrics' text/plain.
	for _, ct := range []string{"text/html", "text/javascript", "text/css"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.RegisteredBodyDecoder("text/plain"))
	}
	open := startLiveNode(t)
	startLiveNode(t, "--node-id", "n2", "--join", strings.TrimPrefix(open.url, "http://"))
	guarded := startLiveNode(t, "--admin-token", "s3cret")
	lost := launchLiveNode(t, "--node-id", "lost", "--join", "127.0.0.1:1")

	doc, router := loadServedDocument(t, open)
	self := memberOf(t, open, "n1")
	huge := `{"attributes": {"x": "` + strings.Repeat("a", 1<<20) + `"}}`
	quotaRules := strings.Replace(string(readRepoFile(t, "testdata/rules.json")), `"rules": [`,
		`"rules": [{"name": "monthly", "key": ["tenant"], "quota": {"limit": 1000, "per": "month"}},`, 1)
	bearer := map[string]string{"Authorization": "Bearer wrong"}
	loginCheck := `{"attributes": {"ip": "198.51.100.2", "route": "/login", "method": "POST"}}`
	proxied := map[string]string{"X-Real-IP": "198.51.100.3", "X-Original-URI": "/api/orders", "X-Original-Method": "GET"}
	proxiedLogin := map[string]string{"X-Real-IP": "198.51.100.3", "X-Original-URI": "/login", "X-Original-Method": "POST"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}

	calls := []apiCall{
		// the open node: every success, and the client errors
		{node: open, method: "PUT", path: "/v1/rules", body: quotaRules, want: 200, leaderWrite: true},
		{node: open, method: "PUT", path: "/v1/rules", body: `{"rules": [{"name": "x", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`, want: 400, invalidOnWire: true},
		{node: open, method: "PUT", path: "/v1/rules", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/rules", want: 200},
		{node: open, method: "PUT", path: "/v1/rules?dry_run=true", body: strings.Replace(quotaRules, `"limit": 1000,`, `"limit": 10,`, 1), want: 200},
		{node: open, method: "PUT", path: "/v1/rules?dry_run=true", body: `{"rules": [{"name": "x", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`, want: 400, invalidOnWire: true},
		{node: open, method: "PUT", path: "/v1/rules?dry_run=maybe", body: quotaRules, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/check", body: `{"attributes": {"ip": "198.51.100.1", "route": "/api/orders"}, "cost": 2}`, want: 200},
		{node: open, method: "POST", path: "/v1/check", body: `{"attributes": {"tenant": "acme"}}`, want: 200},
		{node: open, method: "POST", path: "/v1/check", body: loginCheck, want: 429, untilWant: true},
		{node: open, method: "POST", path: "/v1/check", body: `{"attributes": {"ip": 7}}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/check", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/check/batch", body: `{"requests": [{"attributes": {"ip": "198.51.100.1"}}, ` + loginCheck + `]}`, want: 200},
		{node: open, method: "POST", path: "/v1/check/batch", body: `{"requests": {}}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/check/batch", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/forward-auth", header: proxied, want: 200},
		{node: open, method: "GET", path: "/v1/forward-auth", header: proxiedLogin, want: 429, untilWant: true},
		{node: open, method: "GET", path: "/v1/forward-auth?deny_status=403", header: proxiedLogin, want: 403},
		{node: open, method: "GET", path: "/v1/forward-auth?deny_status=401", header: proxied, want: 400, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/usage?rule=login&key=198.51.100.2", want: 200},
		{node: open, method: "GET", path: "/v1/usage?rule=monthly&key=acme", want: 200},
		{node: open, method: "GET", path: "/v1/usage?rule=login", want: 400, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/usage?rule=nope&key=x", want: 404},
		{node: open, method: "POST", path: "/v1/usage/reset", body: `{"rule": "monthly", "key": "acme"}`, want: 200},
		{node: open, method: "POST", path: "/v1/usage/reset", body: `{"rule": "monthly"}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/usage/reset", body: `{"rule": "nope", "key": "acme"}`, want: 404},
		{node: open, method: "POST", path: "/v1/usage/reset", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "GET", path: "/ping", want: 200},
		{node: open, method: "GET", path: "/ping", want: 429, untilWant: true},
		{node: open, method: "GET", path: "/healthz", want: 200},
		{node: open, method: "GET", path: "/readyz", want: 200},
		{node: open, method: "GET", path: "/metrics", want: 200},
		{node: open, method: "GET", path: "/openapi.json", want: 200},
		{node: open, method: "GET", path: "/v1/cluster", want: 200},
		{node: open, method: "POST", path: "/v1/cluster/join", body: self, want: 200, leaderWrite: true},
		{node: open, method: "POST", path: "/v1/cluster/join", body: `{"node_id": "n9", "raft_addr": "nowhere"}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/cluster/join", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "DELETE", path: "/v1/cluster/nodes/nope", want: 404},
		{node: open, method: "POST", path: "/v1/cluster/join", body: `{"node_id": "n9", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}`, want: 422},
		{node: open, method: "DELETE", path: "/v1/cluster/nodes/n2", want: 200, leaderWrite: true},
		{node: open, method: "DELETE", path: "/v1/cluster/nodes/n1", want: 409}, // the last voter
		{node: open, method: "GET", path: "/v1/leases", want: 200},
		{node: open, method: "GET", path: "/v1/top?window=10s&by=admitted&k=5", want: 200},
		{node: open, method: "GET", path: "/v1/top?window=5m", want: 400, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/top?rule=nope", want: 404},
		{node: open, method: "GET", path: "/v1/internal/top?rule=login", want: 200},
		{node: open, method: "GET", path: "/v1/internal/top?k=0", want: 400, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/internal/top?rule=nope", want: 404},
		{node: open, method: "POST", path: "/v1/internal/demand", body: `{"node_id": "n1", "rates": {"ping": 1.5}}`, want: 200, leaderWrite: true},
		{node: open, method: "POST", path: "/v1/internal/demand", body: `{"node_id": "n1", "rates": {"ping": "fast"}}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/internal/demand", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/internal/handover", body: `{"node_id": "gone"}`, want: 200, leaderWrite: true},
		{node: open, method: "POST", path: "/v1/internal/handover", body: `{"node_id": ""}`, want: 400, invalidOnWire: true},
		{node: open, method: "POST", path: "/v1/internal/handover", body: huge, want: 413, invalidOnWire: true},
		{node: open, method: "GET", path: "/v1/node", want: 200},
		{node: open, method: "GET", path: "/ui", want: 200},
		{node: open, method: "GET", path: "/ui/app.js", want: 200},
		{node: open, method: "GET", path: "/ui/style.css", want: 200},
		// the node with an admin token refuses a wrong one on every admin route
		{node: guarded, method: "GET", path: "/v1/cluster", header: bearer, want: 401},
		{node: guarded, method: "POST", path: "/v1/cluster/join", body: self, header: bearer, want: 401},
		{node: guarded, method: "DELETE", path: "/v1/cluster/nodes/n1", header: bearer, want: 401},
		{node: guarded, method: "GET", path: "/v1/rules", header: bearer, want: 401},
		{node: guarded, method: "PUT", path: "/v1/rules", body: quotaRules, header: bearer, want: 401},
		{node: guarded, method: "GET", path: "/v1/leases", header: bearer, want: 401},
		{node: guarded, method: "GET", path: "/v1/top", header: bearer, want: 401},
		{node: guarded, method: "GET", path: "/v1/internal/top", header: bearer, want: 401},
		{node: guarded, method: "POST", path: "/v1/usage/reset", body: `{"rule": "login", "key": "x"}`, header: bearer, want: 401},
		{node: guarded, method: "POST", path: "/v1/internal/demand", body: `{"node_id": "n1", "rates": {}}`, header: bearer, want: 401},
		{node: guarded, method: "POST", path: "/v1/internal/handover", body: `{"node_id": "n1"}`, header: bearer, want: 401},
		{node: guarded, method: "GET", path: "/v1/node", header: bearer, want: 401},
		// the status page's sign-in on the node with a token
		{node: guarded, method: "GET", path: "/ui", want: 401},
		{node: guarded, method: "POST", path: "/ui/login", body: "token=wrong", header: form, want: 401},
		{node: guarded, method: "POST", path: "/ui/login", body: "token=s3cret", header: form, want: 303},
		{node: guarded, method: "POST", path: "/ui/logout", want: 303},
		// the node that never reached its cluster: no leader, no rules
		{node: lost, method: "POST", path: "/v1/check", body: loginCheck, want: 503},
		{node: lost, method: "POST", path: "/v1/check/batch", body: `{"requests": [` + loginCheck + `]}`, want: 503},
		{node: lost, method: "GET", path: "/v1/forward-auth", header: proxied, want: 503},
		{node: lost, method: "GET", path: "/readyz", want: 503},
		{node: lost, method: "PUT", path: "/v1/rules", body: quotaRules, want: 503},
		{node: lost, method: "POST", path: "/v1/cluster/join", body: self, want: 503},
		{node: lost, method: "DELETE", path: "/v1/cluster/nodes/n1", want: 503},
		{node: lost, method: "POST", path: "/v1/internal/demand", body: `{"node_id": "n1", "rates": {}}`, want: 503},
		{node: lost, method: "POST", path: "/v1/internal/handover", body: `{"node_id": "n1"}`, want: 503},
	}
	seen := map[string]bool{}
	for _, c := range calls {
		seen[checkCall(t, router, c)] = true
	}
	for _, key := range documentedAnswers(doc) {
		if !seen[key] {
			t.Errorf("the document lists %s, but no test call produced it", key)
		}
	}
	for path, item := range doc.Paths.Map() {
		if path != "/v1/forward-auth" { // serves any method
			checkWrongMethod(t, doc, open, path, item)
		}
	}
	status, body := send(t, http.MethodGet, open.url+"/no/such/route")
	if status != http.StatusNotFound {
		t.Errorf("GET /no/such/route: %d, want 404", status)
	}
	validateShared(t, doc, "NoSuchRoute", "GET /no/such/route", body)
}

// checkWrongMethod asks path with a method it does not serve: 405, Allow
// listing exactly the documented methods, the documented body.
func checkWrongMethod(t *testing.T, doc *openapi3.T, n *liveNode, path string, item *openapi3.PathItem) {
	t.Helper()
	var allowed []string
	for m := range item.Operations() {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	req, _ := http.NewRequest(http.MethodPatch, n.url+strings.ReplaceAll(path, "{id}", "n1"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	what := "PATCH " + path
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("%s: %d, want 405", what, resp.StatusCode)
		return
	}
	got := strings.Split(resp.Header.Get("Allow"), ", ")
	slices.Sort(got)
	if !slices.Equal(got, allowed) {
		t.Errorf("%s: Allow %q, want the documented methods %v", what, resp.Header.Get("Allow"), allowed)
	}
	validateShared(t, doc, "MethodNotAllowed", what, body)
}

// validateShared checks body against the schema of the shared response name.
func validateShared(t *testing.T, doc *openapi3.T, name, what string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: body %q: %v", what, body, err)
		return
	}
	schema := doc.Components.Responses[name].Value.Content.Get("application/json").Schema.Value
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: the answer breaks components/responses/%s: %v", what, name, err)
	}
}

// send makes one bodiless request and returns the status and body.
func send(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// loadServedDocument fetches /openapi.json from n, checks it is the
// embedded document, and returns it with a router for finding operations.
func loadServedDocument(t *testing.T, n *liveNode) (*openapi3.T, routers.Router) {
	t.Helper()
	resp, err := http.Get(n.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(served, openapi.Document) {
		t.Fatalf("GET /openapi.json: %d, %d bytes; want 200 and the embedded document", resp.StatusCode, len(served))
	}
	doc, err := openapi3.NewLoader().LoadFromData(served)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil // match requests to any node by path alone
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// memberOf returns the join request that names node id as the cluster
// already knows it (joining again is idempotent).
func memberOf(t *testing.T, n *liveNode, id string) string {
	t.Helper()
	resp, err := http.Get(n.url + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Nodes {
		if m.ID == id {
			b, _ := json.Marshal(admin.JoinRequest{NodeID: id, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr})
			return string(b)
		}
	}
	t.Fatalf("%s is not a member: %+v", id, st)
	return ""
}

// noRedirects shows a 303 as it is, not the page it points to.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// checkCall makes c (repeatedly if asked), checks the status and validates
// the request (unless it is invalid on purpose) and the answer against the
// document; it returns "METHOD /path/template STATUS".
func checkCall(t *testing.T, router routers.Router, c apiCall) string {
	t.Helper()
	what := c.method + " " + c.path
	var status int
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(c.method, c.node.url+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if status != c.want && c.untilWant {
			continue
		}
		if status == http.StatusServiceUnavailable && c.leaderWrite {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if status != c.want {
			t.Errorf("%s: status %d, want %d; body %.300s", what, status, c.want, body)
			return ""
		}
		return validateAgainstDocument(t, router, c, req, resp, body)
	}
	t.Errorf("%s: still %d after 15 s, want %d", what, status, c.want)
	return ""
}

func validateAgainstDocument(t *testing.T, router routers.Router, c apiCall, req *http.Request, resp *http.Response, body []byte) string {
	t.Helper()
	what := fmt.Sprintf("%s %s → %d", c.method, c.path, resp.StatusCode)
	req.Body = io.NopCloser(strings.NewReader(c.body))
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: not in the document: %v", what, err)
		return ""
	}
	reqInput := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if !c.invalidOnWire {
		if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil {
			t.Errorf("%s: the request breaks the document: %v", what, err)
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s: the answer breaks the document: %v\nbody: %.500s", what, err, body)
	}
	return fmt.Sprintf("%s %s %d", c.method, route.Path, resp.StatusCode)
}

// documentedAnswers lists "METHOD /path STATUS" for every response the
// document describes.
func documentedAnswers(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, fmt.Sprintf("%s %s %s", method, path, status))
			}
		}
	}
	slices.Sort(out)
	return out
}
