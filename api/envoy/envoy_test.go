package envoy_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/envoy"
	"github.com/sluicehq/sluice/fsm/rules"
	"github.com/sluicehq/sluice/node/engine"
)

const envoyRules = `{"rules": [
	{"name": "per-user", "match": {"domain": "edge"}, "key": ["user"], "limit": {"rate": 1, "per": "1h", "burst": 3}},
	{"name": "per-path", "match": {"domain": "edge"}, "key": ["path"], "limit": {"rate": 2, "per": "90s", "burst": 2}},
	{"name": "shadowed", "match": {"domain": "edge"}, "key": ["shadow"], "limit": {"rate": 1, "per": "1h"}, "shadow": true},
	{"name": "daily", "match": {"domain": "edge"}, "key": ["account"], "quota": {"limit": 1000, "per": "day"}},
	{"name": "per-client", "match": {"domain": "clients"}, "key": ["remote_address"], "limit": {"rate": 1, "per": "1h", "burst": 1}}]}`

// liveNode is a live engine behind both the gRPC service and the HTTP API.
type liveNode struct {
	rls     rlsv3.RateLimitServiceClient
	httpURL string
}

// startNode serves with no trusted proxies, like a node whose
// --trusted-proxies leaves out the test's loopback client.
func startNode(t *testing.T) liveNode { return startNodeTrusting(t, nil) }

func startNodeTrusting(t *testing.T, proxies clientip.Proxies) liveNode {
	t.Helper()
	set, err := rules.Parse([]byte(envoyRules))
	if err != nil {
		t.Fatal(err)
	}
	engine := engine.New()
	engine.SetRules(1, set)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := envoy.NewServer(engine, proxies)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	httpSrv, err := api.NewServer(api.Config{Engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpSrv.Handler())
	t.Cleanup(ts.Close)
	return liveNode{rls: rlsv3.NewRateLimitServiceClient(conn), httpURL: ts.URL}
}

// descriptor builds a descriptor from key, value pairs.
func descriptor(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func (n liveNode) should(t *testing.T, hits uint32, descs ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: descs, HitsAddend: hits})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if len(resp.Statuses) != len(descs) {
		t.Fatalf("%d statuses for %d descriptors", len(resp.Statuses), len(descs))
	}
	return resp
}

// checkHTTP asks /v1/check about attrs; the check costs one token.
func (n liveNode) checkHTTP(t *testing.T, attrs map[string]string) check.Decision {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"attributes": attrs})
	resp, err := http.Post(n.httpURL+"/v1/check", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d check.Decision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func headers(resp *rlsv3.RateLimitResponse) map[string]string {
	m := map[string]string{}
	for _, h := range resp.ResponseHeadersToAdd {
		m[h.Key] = h.Value
	}
	return m
}

func TestLimitsHoldPerDescriptor(t *testing.T) {
	n := startNode(t)
	for i := 0; i < 3; i++ {
		resp := n.should(t, 0, descriptor("user", "alice"))
		st := resp.Statuses[0]
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || st.LimitRemaining != uint32(2-i) {
			t.Fatalf("call %d: %v remaining %d", i, resp.OverallCode, st.LimitRemaining)
		}
		if cl := st.CurrentLimit; cl.GetName() != "per-user" || cl.GetRequestsPerUnit() != 1 ||
			cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR || cl.GetUnitMultiplier() != nil {
			t.Fatalf("call %d: current_limit %v, want per-user 1 per HOUR", i, cl)
		}
		if h := headers(resp); h["RateLimit-Limit"] != "1" || h["RateLimit-Remaining"] != strconv.Itoa(2-i) || h["Retry-After"] != "" {
			t.Fatalf("call %d: headers %v", i, h)
		}
	}
	resp := n.should(t, 0, descriptor("user", "alice"))
	st := resp.Statuses[0]
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || st.Code != rlsv3.RateLimitResponse_OVER_LIMIT ||
		st.LimitRemaining != 0 {
		t.Fatalf("fourth call: %v", resp)
	}
	// Three tokens gone at one per hour: the bucket is full again in ~3 h.
	if reset := st.DurationUntilReset.AsDuration(); reset < 179*time.Minute || reset > 3*time.Hour {
		t.Fatalf("duration_until_reset %v, want about 3h", reset)
	}
	if h := headers(resp); h["Retry-After"] == "" || h["RateLimit-Remaining"] != "0" || h["RateLimit-Reset"] == "" {
		t.Fatalf("over-limit headers %v", h)
	}
	if other := n.should(t, 0, descriptor("user", "bob")); other.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("another user was limited: %v", other)
	}
	// /v1/check sees the same bucket: alice is out, with the same limit.
	if d := n.checkHTTP(t, map[string]string{"domain": "edge", "user": "alice"}); d.Allowed || d.Rule != "per-user" || d.Limit != 1 {
		t.Fatalf("/v1/check for alice: %+v", d)
	}
}

func TestHitsAddendIsTheCost(t *testing.T) {
	n := startNode(t)
	if st := n.should(t, 2, descriptor("user", "carol")).Statuses[0]; st.LimitRemaining != 1 {
		t.Fatalf("hits_addend 2 on burst 3: remaining %d, want 1", st.LimitRemaining)
	}
	// A descriptor's own hits_addend overrides the request's.
	d := descriptor("user", "dave")
	d.HitsAddend = wrapperspb.UInt64(3)
	if st := n.should(t, 1, d).Statuses[0]; st.Code != rlsv3.RateLimitResponse_OK || st.LimitRemaining != 0 {
		t.Fatalf("descriptor hits_addend 3 on burst 3: %v", st)
	}
	// What gRPC spent, /v1/check sees: carol has 1 token, which this check takes.
	if got := n.checkHTTP(t, map[string]string{"domain": "edge", "user": "carol"}); !got.Allowed || got.Remaining != 0 {
		t.Fatalf("/v1/check after hits_addend 2: %+v, want allowed with 0 left", got)
	}
	if st := n.should(t, 4, descriptor("user", "erin")).Statuses[0]; st.Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("hits above burst: %v, want OVER_LIMIT", st)
	}
}

func TestQuotaRuleIsReportedPerCalendarUnit(t *testing.T) {
	n := startNode(t)
	st := n.should(t, 10, descriptor("account", "acme")).Statuses[0]
	if cl := st.CurrentLimit; st.Code != rlsv3.RateLimitResponse_OK || st.LimitRemaining != 990 ||
		cl.GetName() != "daily" || cl.GetRequestsPerUnit() != 1000 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_DAY {
		t.Fatalf("quota status %v, want OK, 990 left of 1000 per DAY", st)
	}
}

func TestDeniedRequestConsumesNothing(t *testing.T) {
	n := startNode(t)
	n.should(t, 2, descriptor("path", "/busy")) // per-path burst 2: now empty
	resp := n.should(t, 0, descriptor("user", "frank"), descriptor("path", "/busy"))
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT ||
		resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("statuses %v", resp)
	}
	if resp.Statuses[0].LimitRemaining != 3 {
		t.Fatalf("frank's status reports %d left, want 3 (refunded)", resp.Statuses[0].LimitRemaining)
	}
	if cl := resp.Statuses[1].CurrentLimit; cl.GetRequestsPerUnit() != 2 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND ||
		cl.GetUnitMultiplier().GetValue() != 90 {
		t.Fatalf("per-path current_limit %v, want 2 per 90 SECOND", cl)
	}
	if h := headers(resp); h["RateLimit-Limit"] != "2" || h["RateLimit-Remaining"] != "0" || h["Retry-After"] != "45" {
		t.Fatalf("headers %v, want the over-limit descriptor's (retry in 45 s)", h)
	}
	if d := n.checkHTTP(t, map[string]string{"domain": "edge", "user": "frank"}); d.Remaining != 2 {
		t.Fatalf("frank after the denied request: %+v, want 3 left before this check", d)
	}
}

func TestUnknownDescriptorIsAllowed(t *testing.T) {
	n := startNode(t)
	for i := 0; i < 5; i++ {
		resp := n.should(t, 0, descriptor("remote_address", "203.0.113.7"), descriptor("shadow", "s"))
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit != nil ||
			resp.Statuses[1].CurrentLimit != nil || len(resp.ResponseHeadersToAdd) != 0 {
			t.Fatalf("call %d: %v, want OK with no limits or headers", i, resp)
		}
	}
	// Rules match on domain: the same user in another domain is unlimited.
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		resp, err := n.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "other", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "gina")}})
		if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("other domain call %d: %v %v", i, resp, err)
		}
	}
}

func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	n := startNode(t)
	negative := descriptor("user", "x")
	negative.IsNegativeHits = true
	cases := map[string]*rlsv3.RateLimitRequest{
		"empty domain":     {Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "x")}},
		"no descriptors":   {Domain: "edge"},
		"no entries":       {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{{}}},
		"empty key":        {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "x", "", "v")}},
		"duplicate key":    {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "x", "user", "y")}},
		"domain as a key":  {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("domain", "other")}},
		"negative hits":    {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{negative}},
		"later descriptor": {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "hank"), descriptor("", "v")}},
		"long value":       {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "hank"), descriptor("user", strings.Repeat("x", check.MaxValueBytes+1))}},
		"long domain":      {Domain: strings.Repeat("d", check.MaxValueBytes+1), Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "hank")}},
		"too many entries": {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "hank"), manyEntries(check.MaxAttributes)}},
		"long key":         {Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("user", "hank", strings.Repeat("k", check.MaxNameBytes+1), "v")}},
	}
	wantPath := map[string]string{
		"long value":       "descriptors[1].entries[0].value: value of 4097 bytes is longer than 4096",
		"long domain":      "domain: value of 4097 bytes",
		"too many entries": "descriptors[1].entries: more than 64 attributes",
		"long key":         "descriptors[0].entries[1].key: attribute name of 257 bytes is longer than 256",
	}
	for name, req := range cases {
		_, err := n.rls.ShouldRateLimit(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), wantPath[name]) {
			t.Errorf("%s: err %v, want InvalidArgument %q", name, err, wantPath[name])
		}
	}
	// 63 entries plus the domain are the most one descriptor may carry.
	if st := n.should(t, 0, manyEntries(check.MaxAttributes-1)).Statuses[0]; st.Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("63 entries: %v, want OK", st)
	}
	// The rejected request with a valid first descriptor spent nothing.
	if st := n.should(t, 0, descriptor("user", "hank")).Statuses[0]; st.LimitRemaining != 2 {
		t.Fatalf("hank after a rejected request: remaining %d, want 2", st.LimitRemaining)
	}
}

// clientCall asks about one request from the client Envoy names in
// remote_address, in the "clients" domain (one token per client per hour).
func (n liveNode) clientCall(t *testing.T, client string) rlsv3.RateLimitResponse_Code {
	t.Helper()
	resp, err := n.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "clients",
		Descriptors: []*ratelimitv3.RateLimitDescriptor{descriptor("remote_address", client)}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.OverallCode
}

// An untrusted peer cannot pick the client's bucket with remote_address:
// every claim it makes counts against its own address.
func TestRemoteAddressFromUntrustedPeerIsThePeer(t *testing.T) {
	n := startNode(t)
	if code := n.clientCall(t, "203.0.113.1"); code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("first call: %v, want OK", code)
	}
	for i, forged := range []string{"203.0.113.2", "198.51.100.7", "2001:db8::1"} {
		if code := n.clientCall(t, forged); code != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("forged remote_address %d (%s): %v, want OVER_LIMIT (the peer's one token is spent)", i, forged, code)
		}
	}
}

// A trusted Envoy's remote_address is the client: clients have their own
// buckets.
func TestRemoteAddressFromTrustedPeerIsBelieved(t *testing.T) {
	trusted, err := clientip.Parse("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeTrusting(t, trusted)
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		if code := n.clientCall(t, client); code != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%s's first call: %v, want OK", client, code)
		}
	}
	if code := n.clientCall(t, "203.0.113.1"); code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("203.0.113.1's second call: %v, want OVER_LIMIT", code)
	}
}

// manyEntries is a descriptor of n distinct entries.
func manyEntries(n int) *ratelimitv3.RateLimitDescriptor {
	var kv []string
	for i := range n {
		kv = append(kv, "k"+strconv.Itoa(i), "v")
	}
	return descriptor(kv...)
}
