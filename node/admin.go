package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/fsm"
)

// ClusterStatus answers with the leader's view of the cluster (only the
// leader sees which followers answer heartbeats); when the leader cannot be
// asked, with this node's own view.
// RulesVersion and Warning are always this node's own.
func (n *Node) ClusterStatus(ctx context.Context) (admin.ClusterStatus, error) {
	st, asked := admin.ClusterStatus{}, false
	if !n.IsLeader() {
		if leader := n.LeaderHTTPAddr(); leader != "" {
			var err error
			st, err = n.leader.ClusterStatus(ctx, leader)
			asked = err == nil
			if err != nil {
				n.logger.Debug("leader's cluster view unavailable; answering with ours", "err", err)
			}
		}
	}
	if !asked {
		st = n.localStatus()
	}
	st.RulesVersion, st.Warning = n.RulesVersion(), ""
	if err := n.Ready(); err != nil {
		st.Warning = err.Error()
	}
	return st, nil
}

func (n *Node) localStatus() admin.ClusterStatus {
	leaderID := n.LeaderID()
	leading := n.IsLeader()
	state, now := n.fsm.State(), time.Now()
	st := admin.ClusterStatus{Leader: leaderID, Term: n.raft.CurrentTerm(), Nodes: []admin.NodeStatus{}}
	for _, s := range n.servers() {
		id := string(s.ID)
		m, _ := state.Member(id)
		ns := admin.NodeStatus{
			ID: id, RaftAddr: string(s.Address), HTTPAddr: m.HTTPAddr,
			Voter: s.Suffrage == raft.Voter, State: "follower",
		}
		switch {
		case id == leaderID:
			ns.State = "leader"
		case leaderID == "":
			ns.State = "unknown"
		}
		switch {
		case id == n.cfg.ID:
			ns.Healthy = true
		case leading:
			ns.Healthy = n.alive(id, now)
		case id == leaderID:
			ns.Healthy = time.Since(n.raft.LastContact()) < 3*n.raft.ReloadableConfig().HeartbeatTimeout
		}
		st.Nodes = append(st.Nodes, ns)
	}
	slices.SortFunc(st.Nodes, func(a, b admin.NodeStatus) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// Rules returns the rules this node decides on: the "rules" array of the
// document and its version (0 and an empty array before any rules).
func (n *Node) Rules(context.Context) (admin.RulesDoc, error) {
	out := admin.RulesDoc{Rules: json.RawMessage("[]")}
	known := n.rules.Load()
	if known == nil {
		return out, nil
	}
	version, doc := known.Version, known.Doc
	out.Version = version
	var d struct {
		Rules json.RawMessage `json:"rules"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return admin.RulesDoc{}, fmt.Errorf("stored rules document version %d: %w", version, err)
	}
	if len(d.Rules) > 0 && string(d.Rules) != "null" {
		out.Rules = d.Rules
	}
	return out, nil
}

// SetRules validates doc and replaces the cluster's rules, returning the new
// version. Invalid documents fail with an error that is admin.ErrInvalid and
// carries the *rules.ValidationError listing every bad field. The leader
// logs every apply with its caller (rules_audit.go).
func (n *Node) SetRules(ctx context.Context, doc []byte) (uint64, error) {
	next, err := admin.ParseRules(doc)
	if err != nil {
		n.rulesApplies.WithLabelValues(applyRejected).Inc()
		return 0, err
	}
	var version uint64
	err = n.onLeader(ctx,
		func() error {
			prev := n.rules.Load()
			resp, err := n.apply(fsm.EncodeSetRules(doc))
			if err != nil {
				n.rulesApplies.WithLabelValues(applyFailed).Inc()
				return err
			}
			version = resp.(uint64)
			n.auditRules(ctx, prev, next, version)
			return nil
		},
		func(ctx context.Context, leader string) (err error) {
			version, err = n.leader.SetRules(ctx, leader, doc)
			return err
		})
	return version, err
}
