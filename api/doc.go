// Package api is a node's HTTP surface (SPEC §5, §6): the check and batch
// endpoints, /ping guarded by Sluice's own gin middleware, health, metrics
// and the admin routes.
//
// It depends only on the small interfaces it declares or imports from leaf
// packages (check.Decider-like engines, admin.Admin), never on raft, so the
// HTTP layer can be tested and reasoned about on its own. Errors are mapped to
// status codes in exactly one place, errors.go.
package api
