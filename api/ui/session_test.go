package ui

import (
	"strings"
	"testing"
	"time"
)

func TestSession(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewSession("s3cret", now)
	if !ValidSession("s3cret", s, now) || !ValidSession("s3cret", s, now.Add(SessionTTL-time.Second)) {
		t.Fatalf("fresh session %q refused", s)
	}
	if strings.Contains(s, "s3cret") {
		t.Errorf("session %q carries the token", s)
	}
	expiry, mac, _ := strings.Cut(s, ".")
	for name, c := range map[string]struct {
		token, value string
		at           time.Time
	}{
		"expired":            {"s3cret", s, now.Add(SessionTTL)},
		"other token":        {"other", s, now},
		"no token":           {"", NewSession("", now), now},
		"tampered MAC":       {"s3cret", expiry + "." + strings.ToUpper(mac), now},
		"extended expiry":    {"s3cret", "9" + expiry + "." + mac, now},
		"expiry beyond TTL":  {"s3cret", NewSession("s3cret", now.Add(time.Hour)), now},
		"empty":              {"s3cret", "", now},
		"no MAC":             {"s3cret", expiry, now},
		"not a number":       {"s3cret", "x." + mac, now},
		"the token as value": {"s3cret", "s3cret", now},
	} {
		if ValidSession(c.token, c.value, c.at) {
			t.Errorf("%s: session %q accepted", name, c.value)
		}
	}
}
