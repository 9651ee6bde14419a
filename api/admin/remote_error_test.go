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
