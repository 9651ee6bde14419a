package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/buckets/hitters"
	"github.com/sluicehq/sluice/fsm/rules"
)

// fakeEstimator answers every rule with its entry in byRule, and records
// which rules it was asked about.
type fakeEstimator struct {
	byRule map[string]admin.Throttled
	asked  []string
}

func (f *fakeEstimator) EstimateThrottled(_ context.Context, next rules.Rule) (admin.Throttled, error) {
	f.asked = append(f.asked, next.Name)
	return f.byRule[next.Name], nil
}

// A dry run answers the change against the rules in force, with estimates
// for the changed rules that keep their key, and applies nothing.
func TestDryRunAnswersTheChangeAndAppliesNothing(t *testing.T) {
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Version: 3, Rules: json.RawMessage(`[
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "per-user", "key": ["user"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "old", "key": ["ip"], "limit": {"rate": 1, "per": "1s"}}]`)}}
	est := &fakeEstimator{byRule: map[string]admin.Throttled{"per-ip": {Measure: admin.MeasureBucketState, ActiveKeys: 7, AtOnce: 2}}}
	gin.SetMode(gin.TestMode)
	r := gin.New()
	registerAdminRoutes(r, fake, est, newAdminAuth("", nil).guard(writeError))
	doc := `{"rules": [
		{"name": "per-ip", "key": ["ip"], "limit": {"rate": 5, "per": "1s"}},
		{"name": "per-user", "key": ["tenant"], "limit": {"rate": 10, "per": "1s"}},
		{"name": "fresh", "key": [], "limit": {"rate": 1, "per": "1s"}}]}`
	req := httptest.NewRequest(http.MethodPut, "/v1/rules?dry_run=true", strings.NewReader(doc))
	req.RemoteAddr = "127.0.0.1:5000"
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("dry run: %d %s", w.Code, w.Body)
	}
	var got admin.RulesDryRun
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !got.DryRun || got.Version != 3 || !reflect.DeepEqual(got.Added, []string{"fresh"}) || !reflect.DeepEqual(got.Removed, []string{"old"}) {
		t.Fatalf("dry run answer %s", w.Body)
	}
	if len(got.Changed) != 2 || got.Changed[0].Name != "per-ip" || got.Changed[0].Fields[0].Direction != rules.Lowered ||
		got.Changed[1].Name != "per-user" || got.Changed[1].Fields[0].Field != "key" {
		t.Fatalf("changed rules: %+v", got.Changed)
	}
	// per-user changed its key: its buckets do not carry over, so it has no estimate.
	if !reflect.DeepEqual(est.asked, []string{"per-ip"}) || got.Throttled["per-ip"].AtOnce != 2 || len(got.Throttled) != 1 {
		t.Fatalf("estimator asked about %v; throttled %+v", est.asked, got.Throttled)
	}
	if len(fake.setDocs) != 0 {
		t.Fatalf("a dry run applied rules: %v", fake.setDocs)
	}
}

// A dry run refuses invalid rules with the 400 a real PUT gives (both come
// from admin.ParseRules), and a dry_run that is not a boolean names itself.
func TestDryRunRefusesBadInput(t *testing.T) {
	fake := &fakeAdmin{rulesDoc: admin.RulesDoc{Version: 1, Rules: json.RawMessage(`[]`)}}
	h := adminRouter(fake, "")
	bad := `{"rules": [{"name": "r", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`
	_, parseErr := admin.ParseRules([]byte(bad))
	wantStatus, wantBody := errorResponse(parseErr)
	code, body := serve(t, h, adminCall{method: "PUT", path: "/v1/rules?dry_run=true", body: bad})
	if code != wantStatus || body["field"] != wantBody["field"] || body["field"] != "rules[0].limit.rate" {
		t.Fatalf("dry run of invalid rules: %d %v, want %d %v", code, body, wantStatus, wantBody)
	}
	code, body = serve(t, h, adminCall{method: "PUT", path: "/v1/rules?dry_run=maybe", body: `{"rules": []}`})
	if code != http.StatusBadRequest || body["field"] != "dry_run" {
		t.Fatalf("dry_run=maybe: %d %v", code, body)
	}
	if len(fake.setDocs) != 0 {
		t.Fatalf("bad dry runs applied rules: %v", fake.setDocs)
	}
	// dry_run=false is a real apply.
	if code, body = serve(t, h, adminCall{method: "PUT", path: "/v1/rules?dry_run=false", body: `{"rules": []}`}); code != 200 || len(fake.setDocs) != 1 {
		t.Fatalf("dry_run=false: %d %v, applied %v", code, body, fake.setDocs)
	}
}

// callerAdmin remembers the caller of the last SetRules.
type callerAdmin struct {
	fakeAdmin
	caller admin.Caller
}

func (c *callerAdmin) SetRules(ctx context.Context, doc []byte) (uint64, error) {
	c.caller, _ = admin.CallerOf(ctx)
	return 1, nil
}

// The guard tells the node who called and how they were admitted; a call a
// node forwarded names the original caller.
func TestAdminGuardRecordsTheCaller(t *testing.T) {
	for _, tc := range []struct {
		token, auth, remote string
		header              map[string]string
		want                admin.Caller
	}{
		{remote: "127.0.0.1:4000", want: admin.Caller{Addr: "127.0.0.1:4000", Auth: admin.AuthLoopback}},
		{token: "s3cret", auth: "Bearer s3cret", remote: "192.0.2.9:4000", want: admin.Caller{Addr: "192.0.2.9:4000", Auth: admin.AuthToken}},
		{token: "s3cret", auth: "Bearer s3cret", remote: "192.0.2.7:4000",
			header: map[string]string{admin.ForwardedHeader: "1", admin.CallerHeader: "admin-token 198.51.100.3:999"},
			want:   admin.Caller{Addr: "198.51.100.3:999", Auth: admin.AuthToken, Via: "admin-token 192.0.2.7:4000"}},
		// A caller header past its bound is ignored.
		{token: "s3cret", auth: "Bearer s3cret", remote: "192.0.2.7:4000",
			header: map[string]string{admin.ForwardedHeader: "1", admin.CallerHeader: "admin-token " + strings.Repeat("x", 600)},
			want:   admin.Caller{Addr: "192.0.2.7:4000", Auth: admin.AuthToken}},
		// Not forwarded: a caller header is ignored.
		{token: "s3cret", auth: "Bearer s3cret", remote: "192.0.2.7:4000",
			header: map[string]string{admin.CallerHeader: "loopback 127.0.0.1:1"},
			want:   admin.Caller{Addr: "192.0.2.7:4000", Auth: admin.AuthToken}},
	} {
		a := &callerAdmin{}
		h := adminRouter(a, tc.token)
		req := httptest.NewRequest(http.MethodPut, "/v1/rules", strings.NewReader(`{"rules": []}`))
		req.RemoteAddr = tc.remote
		req.Header.Set("Authorization", tc.auth)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || a.caller != tc.want {
			t.Errorf("%+v: %d, caller %+v, want %+v", tc, w.Code, a.caller, tc.want)
		}
	}
}

// fakeTopNode is a one-member cluster whose own summaries are fixed.
type fakeTopNode struct{ rules []admin.RuleHitters }

func (f fakeTopNode) Top(string, time.Duration) ([]admin.RuleHitters, error) { return f.rules, nil }
func (f fakeTopNode) ID() string                                             { return "n1" }
func (f fakeTopNode) Members() []admin.NodeStatus                            { return []admin.NodeStatus{{ID: "n1"}} }
func (f fakeTopNode) FetchTop(context.Context, string, string, string, int) (admin.NodeTop, error) {
	return admin.NodeTop{}, nil
}

// The demand estimate counts a key when its last-minute admitted plus
// denied cost, less both errors, exceeds burst + rate·60 s; quotas go to
// the engine's bucket state.
func TestDemandEstimatorCountsKeysOverTheMinutesAllowance(t *testing.T) {
	node := fakeTopNode{rules: []admin.RuleHitters{{Rule: "r",
		Admitted: hitters.Summary{Total: 130, Entries: []hitters.Entry{{Key: "a", Count: 60}, {Key: "b", Count: 40}, {Key: "c", Count: 30, Error: 2}}},
		Denied:   hitters.Summary{Total: 15, Entries: []hitters.Entry{{Key: "a", Count: 10}, {Key: "c", Count: 5, Error: 2}}},
	}}}
	engine := &fakeEstimator{byRule: map[string]admin.Throttled{"q": {Measure: admin.MeasureBucketState, ActiveKeys: 4, AtOnce: 1}}}
	est := demandEstimator{top: &top.Service{Local: node, Cluster: node, Timeout: time.Second}, engine: engine}
	limit := func(burst int64) rules.Rule {
		// 1 token per 2 s: 30 a minute on top of the burst.
		return rules.Rule{Name: "r", Key: []string{"k"}, Limit: &rules.Limit{Rate: 1, Per: rules.Duration(2 * time.Second), Burst: burst}}
	}
	// Demand: a 70, b 40, c 35 less 4 of error = 31, which an allowance
	// of 31 (burst 1) admits: only what certainly exceeds it counts.
	for burst, want := range map[int64]int{1: 2, 10: 1, 39: 1, 40: 0} {
		got, err := est.EstimateThrottled(context.Background(), limit(burst))
		if err != nil || got.Measure != admin.MeasureDemand || got.ActiveKeys != 3 || got.AtOnce != want {
			t.Errorf("burst %d (allowance %d a minute): %+v %v, want %d of 3 throttled", burst, burst+30, got, err, want)
		}
	}
	q := rules.Rule{Name: "q", Key: []string{"k"}, Quota: &rules.Quota{Limit: 5, Per: rules.Day}}
	if got, err := est.EstimateThrottled(context.Background(), q); err != nil || got != engine.byRule["q"] {
		t.Errorf("quota: %+v %v, want the engine's bucket-state estimate", got, err)
	}
}
