// Package node is a Sluice node: the decision Engine (the hot path, which
// never waits on Raft or blocks on Redis) and the Node that wires Raft,
// membership, leases and Redis health around it.
//
// Decisions read an immutable rules snapshot through an atomic pointer; Raft
// applies swap that pointer. See docs/DESIGN.md for the full picture.
package node
