package clientip_test

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
)

func TestParse(t *testing.T) {
	got, err := clientip.Parse(" 127.0.0.0/8, ::1 ,10.1.2.3/8,192.0.2.1,")
	if err != nil {
		t.Fatal(err)
	}
	want := clientip.Proxies{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := clientip.Parse("127.0.0.1/33"); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

func mustParse(t *testing.T, list string) clientip.Proxies {
	t.Helper()
	p, err := clientip.Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOf(t *testing.T) {
	proxies := mustParse(t, "10.0.0.0/8, ::1")
	cases := []struct {
		name, peer string
		headers    []string
		want       string
	}{
		{"untrusted peer: XFF ignored", "127.0.0.1:1", []string{"X-Forwarded-For", "203.0.113.7"}, "127.0.0.1"},
		{"untrusted peer: X-Real-IP ignored", "127.0.0.1:1", []string{"X-Real-IP", "203.0.113.7"}, "127.0.0.1"},
		{"untrusted peer: malformed XFF ignored too", "127.0.0.1:1", []string{"X-Forwarded-For", "nonsense"}, "127.0.0.1"},
		{"trusted peer: XFF believed", "10.1.1.1:1", []string{"X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"trusted peer: walks past trusted hops only", "10.1.1.1:1",
			[]string{"X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"trusted peer: X-Real-IP without XFF", "10.1.1.1:1", []string{"X-Real-IP", "203.0.113.8"}, "203.0.113.8"},
		{"IPv6 trusted peer", "[::1]:1", []string{"X-Forwarded-For", "2001:db8::1"}, "2001:db8::1"},
		{"no IP peer", "pipe", []string{"X-Forwarded-For", "203.0.113.7"}, "pipe"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		for i := 0; i < len(tc.headers); i += 2 {
			r.Header.Add(tc.headers[i], tc.headers[i+1])
		}
		got, err := proxies.Of(r)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestOfNamesTheMalformedHeader(t *testing.T) {
	proxies := mustParse(t, "10.0.0.0/8")
	for _, header := range []string{"X-Forwarded-For", "X-Real-IP"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:1"
		r.Header.Set(header, "not-an-ip")
		_, err := proxies.Of(r)
		var fe *check.FieldError
		if !errors.As(err, &fe) || fe.Field != header {
			t.Errorf("%s: err %v, want a FieldError naming it", header, err)
		}
	}
}

func TestNobodyTrustedByDefault(t *testing.T) {
	var none clientip.Proxies
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	if got, _ := none.Of(r); got != "127.0.0.1" {
		t.Fatalf("zero Proxies believed XFF: %q", got)
	}
	if got := none.Claimed("127.0.0.1:1", "203.0.113.7"); got != "127.0.0.1" {
		t.Fatalf("zero Proxies believed a claim: %q", got)
	}
}

func TestClaimed(t *testing.T) {
	proxies := mustParse(t, "10.0.0.0/8")
	cases := []struct{ peer, claim, want string }{
		{"10.2.3.4:5000", "203.0.113.7", "203.0.113.7"},
		{"[::ffff:10.2.3.4]:5000", "203.0.113.7", "203.0.113.7"},
		{"192.0.2.1:5000", "203.0.113.7", "192.0.2.1"},
		{"[2001:db8::5]:5000", "203.0.113.7", "2001:db8::5"},
		{"", "203.0.113.7", ""},
	}
	for _, tc := range cases {
		if got := proxies.Claimed(tc.peer, tc.claim); got != tc.want {
			t.Errorf("peer %q claims %q: %q, want %q", tc.peer, tc.claim, got, tc.want)
		}
	}
}
