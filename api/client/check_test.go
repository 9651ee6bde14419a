package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
)

// The client is what the remote middleware plugs in.
var _ check.Decider = (*client.Client)(nil)

func ipRequest(ip string, cost int64) check.Request {
	return check.Request{Attributes: check.Attrs{{Name: "ip", Value: ip}, {Name: "route", Value: "/api"}}, Cost: cost}
}

func TestDecideAllowsThenDenies(t *testing.T) {
	node := startFakeNode(t, 3)
	c := client.New(node.srv.URL)
	ctx := context.Background()
	for i := range 3 {
		d, err := c.Decide(ctx, ipRequest("203.0.113.7", 1))
		if err != nil || !d.Allowed {
			t.Fatalf("call %d: %+v, %v; want allowed", i, d, err)
		}
		if d.Remaining != int64(2-i) || d.Rule != "per-ip" || len(d.Results) != 1 {
			t.Fatalf("call %d: decision %+v", i, d)
		}
	}
	d, err := c.Decide(ctx, ipRequest("203.0.113.7", 1))
	if err != nil {
		t.Fatalf("a 429 is a decision, got error %v", err)
	}
	if d.Allowed || d.RetryAfterMs <= 0 || d.Results[0].Allowed {
		t.Fatalf("fourth call: %+v, want denied with a retry time", d)
	}
	if got, _ := node.lastAsked(t).Attributes.Get("ip"); got != "203.0.113.7" {
		t.Fatalf("node saw ip %q", got)
	}
	// Another key has its own counter.
	if d, err := c.Decide(ctx, ipRequest("198.51.100.1", 2)); err != nil || !d.Allowed || d.Remaining != 1 {
		t.Fatalf("other key: %+v, %v", d, err)
	}
}

func TestDecideReportsNodeError(t *testing.T) {
	node := startFakeNode(t, 3)
	_, err := client.New(node.srv.URL).Decide(context.Background(), ipRequest("203.0.113.7", -4))
	var ce *client.CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want *client.CheckError", err, err)
	}
	if ce.Status != http.StatusBadRequest || ce.Field != "cost" || ce.Msg != "must be >= 1" {
		t.Fatalf("CheckError %+v", ce)
	}
}

func TestDecideReportsNonJSONError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream connect error", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL).Decide(context.Background(), ipRequest("203.0.113.7", 1))
	var ce *client.CheckError
	if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway || ce.Msg != "upstream connect error" {
		t.Fatalf("error %v", err)
	}
}

func TestDecideHonoursContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.New(srv.URL).Decide(ctx, ipRequest("203.0.113.7", 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want deadline exceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("call took %v despite a 30ms deadline", elapsed)
	}
}

func TestDecideBatchKeepsOrder(t *testing.T) {
	node := startFakeNode(t, 2)
	reqs := []check.Request{ipRequest("a", 1), ipRequest("b", 1), ipRequest("a", 1), ipRequest("a", 1), ipRequest("b", 3)}
	ds, err := client.New(node.srv.URL).DecideBatch(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, true, false, false}
	if len(ds) != len(want) {
		t.Fatalf("%d decisions for %d requests", len(ds), len(reqs))
	}
	for i := range want {
		if ds[i].Allowed != want[i] {
			t.Errorf("decision %d allowed=%v, want %v (key %s)", i, ds[i].Allowed, want[i], ds[i].Results[0].Key)
		}
	}
}

func TestDecideBatchReportsNodeError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"at most 1000 checks per batch","field":"requests"}`))
	}))
	defer srv.Close()
	_, err := client.New(srv.URL).DecideBatch(context.Background(), []check.Request{ipRequest("a", 1)})
	var ce *client.CheckError
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Field != "requests" {
		t.Fatalf("error %v", err)
	}
}

// Every answer — allowed, denied, refused — must leave the connection
// reusable, or a busy service opens a connection per request.
func TestConnectionsAreReused(t *testing.T) {
	node := startFakeNode(t, 10)
	c := client.New(node.srv.URL)
	ctx := context.Background()
	var allowed, denied, refused int
	for i := range 50 {
		cost := int64(1)
		if i%10 == 9 {
			cost = -1 // the node refuses it with 400
		}
		d, err := c.Decide(ctx, ipRequest("203.0.113.7", cost))
		switch {
		case err != nil:
			refused++
		case d.Allowed:
			allowed++
		default:
			denied++
		}
	}
	if allowed != 10 || denied != 35 || refused != 5 {
		t.Fatalf("allowed/denied/refused = %d/%d/%d, want 10/35/5", allowed, denied, refused)
	}
	if n := node.newConns.Load(); n != 1 {
		t.Fatalf("50 sequential calls opened %d connections, want 1", n)
	}
}
