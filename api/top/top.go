// Package top answers "who is being limited" for the whole cluster (GET
// /v1/top): it asks every member for its own heavy-hitter summaries (GET
// /v1/internal/top), merges them with this node's, and ranks the keys. It
// knows the cluster only through the small Cluster interface, so the HTTP
// layer stays free of raft, and the merge, with its error bounds, lives in
// buckets/hitters.
package top

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/buckets/hitters"
)

// Windows are the windows a query may ask for, by their wire names.
var Windows = map[string]time.Duration{"10s": hitters.Short, "1m": hitters.Long}

// Sides a query may rank by.
const (
	ByDenied   = "denied"
	ByAdmitted = "admitted"
)

// MaxK bounds the keys per rule a query may ask for.
const MaxK = 1000

// peerK is how many entries per side a member is asked for when the
// answer wants k: more than k, so that a key just below a member's top k
// still counts with its own count rather than the member's floor.
func peerK(k int) int { return min(4*k, MaxK) }

// Query is one GET /v1/top, validated by the HTTP layer.
type Query struct {
	Rule   string // "" for every rule
	Window string // a key of Windows
	By     string // ByDenied or ByAdmitted
	K      int    // 1..MaxK
	Local  bool   // this node only
}

// Local is this node's own summaries: the engine.
type Local interface {
	Top(rule string, window time.Duration) ([]admin.RuleHitters, error)
}

// Cluster is what gathering needs from the node: who the members are and
// a call to one's /v1/internal/top (authenticated like the other
// node-to-node calls).
type Cluster interface {
	// ID is this node's ID.
	ID() string
	// Members lists every member, this node included.
	Members() []admin.NodeStatus
	// FetchTop asks the member at httpAddr for its own summaries.
	FetchTop(ctx context.Context, httpAddr, rule, window string, k int) (admin.NodeTop, error)
}

// Service answers top queries.
type Service struct {
	Local   Local
	Cluster Cluster
	// Timeout bounds the wait for the members' answers; a member that has
	// not answered by then is listed as missing.
	Timeout time.Duration
}

// Node returns this node's own summaries for window, each side cut to its
// k largest entries (GET /v1/internal/top).
func (s *Service) Node(rule, window string, k int) (admin.NodeTop, error) {
	rules, err := s.Local.Top(rule, Windows[window])
	if err != nil {
		return admin.NodeTop{}, err
	}
	for i := range rules {
		rules[i].Admitted.Truncate(k)
		rules[i].Denied.Truncate(k)
	}
	return admin.NodeTop{Node: s.Cluster.ID(), Rules: rules}, nil
}

// Top answers q: this node's summaries, merged with every other member's
// unless q.Local.
func (s *Service) Top(ctx context.Context, q Query) (admin.Top, error) {
	own, err := s.Local.Top(q.Rule, Windows[q.Window])
	if err != nil {
		return admin.Top{}, err
	}
	parts := []admin.NodeTop{{Node: s.Cluster.ID(), Rules: own}}
	var missing []string
	if !q.Local {
		peers, lost := s.gather(ctx, q)
		parts, missing = append(parts, peers...), lost
	}
	return rank(q, parts, missing), nil
}

// gather asks every other member at once and waits at most Timeout.
func (s *Service) gather(ctx context.Context, q Query) (answered []admin.NodeTop, missing []string) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range s.Cluster.Members() {
		if m.ID == s.Cluster.ID() {
			continue
		}
		wg.Go(func() {
			nt, err := s.Cluster.FetchTop(ctx, m.HTTPAddr, q.Rule, q.Window, peerK(q.K))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, m.ID)
				return
			}
			nt.Node = m.ID // the member list names it, whatever it answers
			answered = append(answered, nt)
		})
	}
	wg.Wait()
	return answered, missing
}

// rank merges the nodes' summaries rule by rule (in this node's rules
// order) and keeps each rule's q.K keys with the most q.By cost.
func rank(q Query, parts []admin.NodeTop, missing []string) admin.Top {
	out := admin.Top{Window: q.Window, By: q.By, K: q.K, Nodes: []string{}, Missing: sorted(missing), Rules: []admin.RuleTop{}}
	byRule := make(map[string][]nodeRule)
	for _, p := range parts {
		out.Nodes = append(out.Nodes, p.Node)
		for _, r := range p.Rules {
			byRule[r.Rule] = append(byRule[r.Rule], nodeRule{p.Node, r})
		}
	}
	slices.Sort(out.Nodes)
	for _, r := range parts[0].Rules {
		out.Rules = append(out.Rules, rankRule(q, r.Rule, byRule[r.Rule]))
	}
	return out
}

type nodeRule struct {
	node string
	admin.RuleHitters
}

func rankRule(q Query, rule string, nodes []nodeRule) admin.RuleTop {
	var admitted, denied []hitters.Summary
	for _, n := range nodes {
		admitted, denied = append(admitted, n.Admitted), append(denied, n.Denied)
	}
	a, d := hitters.Merge(admitted...), hitters.Merge(denied...)
	ranked, other := &d, &a
	if q.By == ByAdmitted {
		ranked, other = &a, &d
	}
	ranked.Truncate(q.K)
	out := admin.RuleTop{Rule: rule, Admitted: a.Total, Denied: d.Total, Keys: make([]admin.KeyTop, 0, len(ranked.Entries))}
	for _, e := range ranked.Entries {
		count, err, _ := other.Lookup(e.Key)
		k := admin.KeyTop{Key: e.Key, Error: max(e.Error, err), Nodes: seenBy(nodes, e.Key)}
		k.Admitted, k.Denied = count, e.Count
		if q.By == ByAdmitted {
			k.Admitted, k.Denied = e.Count, count
		}
		out.Keys = append(out.Keys, k)
	}
	return out
}

// seenBy lists the nodes whose summaries (either side) list key.
func seenBy(nodes []nodeRule, key string) []string {
	seen := []string{}
	for i := range nodes {
		_, _, a := nodes[i].Admitted.Lookup(key)
		_, _, d := nodes[i].Denied.Lookup(key)
		if a || d {
			seen = append(seen, nodes[i].node)
		}
	}
	return sorted(seen)
}

func sorted(s []string) []string {
	if s == nil {
		return []string{}
	}
	slices.SortFunc(s, cmp.Compare)
	return s
}
