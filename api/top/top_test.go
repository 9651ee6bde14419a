package top

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/buckets/hitters"
)

func summary(total, floor int64, entries ...hitters.Entry) hitters.Summary {
	return hitters.Summary{Total: total, Floor: floor, Entries: entries}
}

// nodeTops are three nodes' summaries of rule "api": 203.0.113.7 denied on
// n1 and n2, 198.51.100.1 admitted mostly on n3, whose denied summary is
// full (floor 2).
func nodeTops() map[string]admin.NodeTop {
	return map[string]admin.NodeTop{
		"n1": {Node: "n1", Rules: []admin.RuleHitters{{Rule: "api",
			Admitted: summary(100, 0, hitters.Entry{Key: "198.51.100.1", Count: 60}, hitters.Entry{Key: "203.0.113.7", Count: 40}),
			Denied:   summary(30, 0, hitters.Entry{Key: "203.0.113.7", Count: 30})}}},
		"n2": {Node: "n2", Rules: []admin.RuleHitters{{Rule: "api",
			Admitted: summary(10, 0, hitters.Entry{Key: "203.0.113.7", Count: 10}),
			Denied:   summary(25, 0, hitters.Entry{Key: "203.0.113.7", Count: 20, Error: 1}, hitters.Entry{Key: "192.0.2.9", Count: 5})}}},
		"n3": {Node: "n3", Rules: []admin.RuleHitters{{Rule: "api",
			Admitted: summary(500, 0, hitters.Entry{Key: "198.51.100.1", Count: 500}),
			Denied:   summary(9, 2, hitters.Entry{Key: "192.0.2.9", Count: 7, Error: 2})}}},
	}
}

// fakeCluster answers FetchTop from nodeTops by address (= node ID); the
// addresses in down fail.
type fakeCluster struct {
	tops map[string]admin.NodeTop
	down map[string]bool
}

func (c fakeCluster) ID() string { return "n1" }
func (c fakeCluster) Members() []admin.NodeStatus {
	return []admin.NodeStatus{{ID: "n1", HTTPAddr: "n1"}, {ID: "n2", HTTPAddr: "n2"}, {ID: "n3", HTTPAddr: "n3"}}
}
func (c fakeCluster) FetchTop(_ context.Context, addr, rule, window string, k int) (admin.NodeTop, error) {
	if c.down[addr] {
		return admin.NodeTop{}, errors.New("no answer")
	}
	return c.tops[addr], nil
}

type fakeLocal []admin.RuleHitters

func (l fakeLocal) Top(rule string, _ time.Duration) ([]admin.RuleHitters, error) {
	if rule != "" && rule != "api" {
		return nil, admin.ErrUnknownRule
	}
	return l, nil
}

func service(down ...string) *Service {
	tops := nodeTops()
	c := fakeCluster{tops: tops, down: map[string]bool{}}
	for _, d := range down {
		c.down[d] = true
	}
	return &Service{Local: fakeLocal(tops["n1"].Rules), Cluster: c, Timeout: time.Second}
}

func TestTopMergesEveryMember(t *testing.T) {
	got, err := service().Top(context.Background(), Query{Window: "1m", By: ByDenied, K: 20})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Nodes, got.Missing) != "[n1 n2 n3] []" || len(got.Rules) != 1 {
		t.Fatalf("nodes %v missing %v rules %d", got.Nodes, got.Missing, len(got.Rules))
	}
	r := got.Rules[0]
	if r.Admitted != 610 || r.Denied != 64 {
		t.Fatalf("rule totals %d admitted %d denied, want 610 and 64", r.Admitted, r.Denied)
	}
	// 203.0.113.7: denied 30 + 20 + n3's floor 2 (error 1 + 2); admitted
	// 40 + 10 + 0 exactly. 192.0.2.9: denied n1's floor 0 + 5 + 7 (error 2);
	// admitted on no node: 0, since no admitted summary is full.
	want := "[{203.0.113.7 50 52 3 [n1 n2]} {192.0.2.9 0 12 2 [n2 n3]}]"
	if fmt.Sprint(r.Keys) != want {
		t.Fatalf("keys by denied:\n got %v\nwant %s", r.Keys, want)
	}
}

func TestTopByAdmittedAndK(t *testing.T) {
	got, err := service().Top(context.Background(), Query{Rule: "api", Window: "10s", By: ByAdmitted, K: 1})
	if err != nil {
		t.Fatal(err)
	}
	// 198.51.100.1 leads admitted; its denied: n3's floor 2 counts against it.
	want := "[{198.51.100.1 560 2 2 [n1 n3]}]"
	if fmt.Sprint(got.Rules[0].Keys) != want || got.K != 1 || got.By != ByAdmitted || got.Window != "10s" {
		t.Fatalf("got %+v, want keys %s", got, want)
	}
}

func TestTopListsMembersThatDoNotAnswer(t *testing.T) {
	got, err := service("n3").Top(context.Background(), Query{Window: "1m", By: ByDenied, K: 20})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Nodes, got.Missing) != "[n1 n2] [n3]" || got.Rules[0].Denied != 55 {
		t.Fatalf("with n3 down: nodes %v missing %v denied %d", got.Nodes, got.Missing, got.Rules[0].Denied)
	}
	local, err := service().Top(context.Background(), Query{Window: "1m", By: ByDenied, K: 20, Local: true})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(local.Nodes, local.Missing, local.Rules[0].Keys) != "[n1] [] [{203.0.113.7 40 30 0 [n1]}]" {
		t.Fatalf("scope=local: %+v", local)
	}
	if _, err := service().Top(context.Background(), Query{Rule: "nope", Window: "1m", By: ByDenied, K: 20}); !errors.Is(err, admin.ErrUnknownRule) {
		t.Fatalf("unknown rule: %v", err)
	}
}

func TestNodeCutsEachSide(t *testing.T) {
	s := service()
	s.Local = fakeLocal(nodeTops()["n2"].Rules)
	got, err := s.Node("api", "1m", 1)
	if err != nil {
		t.Fatal(err)
	}
	d := got.Rules[0].Denied
	if got.Node != "n1" || len(d.Entries) != 1 || d.Floor != 5 || d.Total != 25 {
		t.Fatalf("node answer cut to 1: %+v", got)
	}
}
