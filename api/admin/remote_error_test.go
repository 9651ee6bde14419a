package admin

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// An answer that is not the admin API's JSON (a proxy's error page) keeps
// its status's sentinel and a short, printable message.
func TestDecodeErrorOfAForeignBody(t *testing.T) {
	page := "<html>" + strings.Repeat("x", 500) + "</html>"
	err := DecodeError(http.StatusServiceUnavailable, []byte(page))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoLeader) || len(err.Msg) != maxQuotedBody {
		t.Fatalf("DecodeError(503, page) = %q (%d bytes)", err.Msg, len(err.Msg))
	}
	if err := DecodeError(http.StatusBadGateway, nil); err.Msg != "502 Bad Gateway" || len(err.Unwrap()) != 0 {
		t.Fatalf("DecodeError(502, empty) = %q, causes %v", err.Msg, err.Unwrap())
	}
}

// Membership refusals keep their sentinels across a forwarding hop, so a
// joiner can tell "not reachable yet" (retry) from a refusal.
func TestDecodeErrorOfMembershipRefusals(t *testing.T) {
	if err := DecodeError(http.StatusConflict, []byte(`{"error":"conflict: n1 is the last voter"}`)); !errors.Is(err, ErrConflict) {
		t.Fatalf("409 decodes to %v", err.Unwrap())
	}
	if err := DecodeError(http.StatusUnprocessableEntity, []byte(`{"error":"raft address unreachable","field":"raft_addr"}`)); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("422 decodes to %v", err.Unwrap())
	}
}
