package admin

import (
	"context"
	"strings"
)

// Caller is who made an admin call, for the audit log of rule changes: the
// client's address and how the admin guard admitted it.
type Caller struct {
	Addr string `json:"addr"`
	// Auth is AuthToken, AuthLoopback, AuthNodeCert or AuthSession: the
	// token is one shared secret, so it names no person, only that the
	// caller held it.
	Auth string `json:"auth"`
	// Via is the node that forwarded the call and named Addr and Auth
	// ("auth addr" as that node was admitted); "" for a direct call. The
	// header naming the original caller is only as trustworthy as whoever
	// sent it, so the audit log always shows who that was.
	Via string `json:"via,omitempty"`
}

// How the admin guard admitted a caller.
const (
	AuthToken    = "admin-token"
	AuthLoopback = "loopback"
	AuthNodeCert = "node-certificate"
	AuthSession  = "status-page-session" // read-only: GET routes only
)

// CallerHeader carries the original caller ("auth addr") of a call one node
// forwards to the leader, so the leader's audit log names the client rather
// than the forwarding node. Only admitted callers reach the code that reads
// it, and the forwarder is recorded beside it (Caller.Via).
const CallerHeader = "X-Sluice-Caller"

// String is the header form of c.
func (c Caller) String() string { return c.Auth + " " + c.Addr }

// maxCallerHeader bounds the header form: an auth name and a host:port.
const maxCallerHeader = 512

// ParseCaller reads the header form; ok is false for anything else.
func ParseCaller(s string) (c Caller, ok bool) {
	if len(s) > maxCallerHeader {
		return Caller{}, false
	}
	c.Auth, c.Addr, ok = strings.Cut(s, " ")
	return c, ok && c.Auth != "" && c.Addr != ""
}

type callerKey struct{}

// WithCaller records who made the call ctx carries.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf returns who made the call ctx carries, if recorded.
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
