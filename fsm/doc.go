// Package fsm is the replicated state machine of a Sluice cluster (SPEC §7):
// the rules document and its version, the member directory (raft and HTTP
// address per node) and the lease table (each node's share of each rule,
// leases.go). Raft applies the same typed commands in the same
// order on every node, so every replica ends in the same state.
//
// Commands are an append-only envelope (one type byte + payload); a replica
// that meets an entry it cannot decode panics rather than diverge silently.
// Readers never share a lock with Apply: they load an immutable *State
// through an atomic pointer that each apply replaces (copy on write).
package fsm
