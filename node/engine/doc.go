// Package engine is the decision path of a Sluice node: rules snapshot →
// applicable rules → bucket takes → all-or-nothing verdict, in local,
// global (slices of a Redis bucket), fallback and lease mode, plus quotas.
//
// It is a package of its own so that the hot path stays a straight line that
// never imports raft: decisions read an immutable rules snapshot through an
// atomic pointer, and the raft member (package node) swaps it when rules are
// applied. Redis is touched once per slice, never once per request.
package engine
