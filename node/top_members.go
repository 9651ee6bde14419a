package node

import (
	"context"

	"github.com/sluicehq/sluice/api/admin"
)

// ID is this node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Members lists every member with its HTTP address, as this node knows
// them, for calls that ask each member (GET /v1/top).
func (n *Node) Members() []admin.NodeStatus { return n.localStatus().Nodes }

// FetchTop asks the member at httpAddr for its own heavy-hitter summaries,
// authenticated like the other node-to-node calls.
func (n *Node) FetchTop(ctx context.Context, httpAddr, rule, window string, k int) (admin.NodeTop, error) {
	return n.leader.Top(ctx, httpAddr, rule, window, k)
}
