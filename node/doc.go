// Package node is a Sluice node's raft member: it replicates rules,
// membership and leases, forwards writes made on a follower to the leader,
// keeps the voting core at its size (autopilot), allocates leases while
// leading, and implements admin.Admin for the HTTP layer.
//
// The decision engine lives in node/engine and never imports this package:
// the member tells it what it needs through the callbacks in Config (rules,
// shares, cluster size), so the decision path never waits on Raft. See
// docs/DESIGN.md for the full picture.
package node
