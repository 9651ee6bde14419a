package node

import "time"

// Lease mode (docs/DESIGN.md, Safety §7): a cluster without Redis decides
// at each node's leased share while it has more than one member. The node
// tells its engine which mode to use (Config.OnClustered): lease mode as
// soon as a second member may exist, local mode only once this node is
// the only member and no other node may still be using a lease.

// updateMode tells the engine whether this node is alone now.
func (n *Node) updateMode() {
	if n.cfg.OnClustered != nil {
		n.cfg.OnClustered(!n.alone(time.Now()))
	}
}

// alone reports whether this node may decide at the full limit: it is the
// only server in the raft configuration and the only member, and no other
// node's lease entry may still be in use by any clock within the max skew.
// A node not (yet) in the configuration, such as one that is joining, is
// not alone. A removed node that never learns of it keeps deciding at its
// floor: the membership term of ε.
func (n *Node) alone(now time.Time) bool {
	if n.joining.Load() > 0 {
		return false // a server is being added
	}
	s := n.fsm.State()
	for _, m := range s.Members() {
		if m.ID != n.cfg.ID {
			return false
		}
	}
	wall, skew := now.UnixNano(), int64(n.cfg.MaxClockSkew)
	for _, entries := range s.Leases() {
		for id, l := range entries {
			if id != n.cfg.ID && l.Reserved(wall, skew) > 0 {
				return false
			}
		}
	}
	// Last: reading the raft configuration is a round trip through raft's
	// main loop, which a node of a cluster need not make every poll.
	servers := n.servers()
	return len(servers) == 1 && string(servers[0].ID) == n.cfg.ID
}

// MemberCount is the cluster size as this node counts it for floors.
func (n *Node) MemberCount() int { return n.memberCount(n.fsm.State()) }
