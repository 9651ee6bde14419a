package node

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Autopilot is the leader's membership housekeeping (Consul's idea): it
// keeps the voting core at its size by promoting caught-up non-voters.

// autopilotEvery is how often the leader looks over the membership.
const autopilotEvery = time.Second

func (n *Node) runAutopilot() {
	tick := time.NewTicker(autopilotEvery)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
			if n.IsLeader() {
				n.fillCore()
			}
		}
	}
}

// fillCore promotes caught-up non-voters, in id order, while the core is
// below its size.
func (n *Node) fillCore() {
	var nonvoters []string
	for _, s := range n.servers() {
		if s.Suffrage != raft.Voter {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	slices.Sort(nonvoters)
	for _, id := range nonvoters {
		n.tryPromote(id)
	}
}
