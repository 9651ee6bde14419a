package fsm

import (
	"maps"
	"slices"
	"strings"
)

// Member is one node of the cluster as recorded in the FSM.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// State is one immutable version of the replicated state. Nothing mutates a
// State once it is published; an apply builds a new one, sharing the parts
// it did not change.
type State struct {
	rulesVersion uint64
	rulesDoc     []byte
	members      map[string]Member
	// leases is rule → node → entry, replaced whole by every SetLeases.
	leases map[string]map[string]Lease
	// withheld is the sorted member ids of the latest SetLeases's Withheld.
	withheld []string
	// leaseGen counts the SetLeases applied (Lease.Gen).
	leaseGen uint64
}

var emptyState = &State{members: map[string]Member{}}

// Rules returns the rules document and its version (0 and nil before the
// first SetRules). The caller must not modify doc.
func (s *State) Rules() (version uint64, doc []byte) { return s.rulesVersion, s.rulesDoc }

// Member returns the member with the given id.
func (s *State) Member(id string) (Member, bool) {
	m, ok := s.members[id]
	return m, ok
}

// Members returns every member, sorted by id.
func (s *State) Members() []Member {
	out := slices.Collect(maps.Values(s.members))
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// MemberCount is the number of members.
func (s *State) MemberCount() int { return len(s.members) }

// Leases returns rule → node → lease entry. The caller must not modify it.
func (s *State) Leases() map[string]map[string]Lease { return s.leases }

// LeaseGen is the generation of the latest SetLeases: 0 before any.
func (s *State) LeaseGen() uint64 { return s.leaseGen }

// Withheld returns the sorted ids of the members whose shares the others
// keep out of Redis (LeaseProposal.Withheld). The caller must not modify it.
func (s *State) Withheld() []string { return s.withheld }

// WithheldShare is how much of rule the nodes in Withheld, other than
// self, may be admitting on their own at time t (Unix ns): each one's floor
// plus the largest extra its entries may still grant it (Lease.Reserved).
// A node in global mode draws rate·(1 − WithheldShare) from Redis. Ids no
// longer members are skipped: removed nodes are the membership term of ε.
func (s *State) WithheldShare(rule, self string, floor float64, t, skew int64) float64 {
	sum := 0.0
	for _, id := range s.withheld {
		if _, member := s.members[id]; !member || id == self {
			continue
		}
		sum += floor + s.leases[rule][id].Reserved(t, skew)
	}
	return sum
}

// clone returns a shallow copy; the caller replaces the fields it changes.
func (s *State) clone() *State {
	c := *s
	return &c
}

func cloneMembers(m map[string]Member) map[string]Member {
	c := make(map[string]Member, len(m)+1)
	maps.Copy(c, m)
	return c
}
