// Package clientip is Sluice's one notion of "the client's address". Every
// entry point that keys limits on the client — /v1/forward-auth, /ping and
// the gin middleware, the Envoy rate limit service — asks it, so that a
// header or descriptor a client can forge never picks (or drains) a bucket:
// a claim about someone else's address is believed only from a peer in
// the operator's trusted proxies (--trusted-proxies), and then only as far
// as the chain of trusted hops reaches.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sluicehq/sluice/api/check"
)

// Proxies are the peers trusted to speak for someone else. The zero value
// trusts nobody: every client is its TCP peer.
type Proxies []netip.Prefix

// Parse reads a comma-separated list of CIDRs or bare addresses (a bare
// address trusts just itself), as --trusted-proxies takes it. An empty list
// trusts nobody.
func Parse(list string) (Proxies, error) {
	var out Proxies
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", item)
		}
		addr = addr.Unmap()
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}

// Contains reports whether ip is a trusted proxy.
func (p Proxies) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, prefix := range p {
		if prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// Of is the address HTTP request r is about. Only a trusted peer may speak
// for someone else: from it, X-Forwarded-For (the right-most address not
// itself trusted, since every proxy appends the address it saw and only
// entries added by trusted hops are believable), or else X-Real-IP, is
// taken. From anyone else those headers are ignored, so a client cannot
// pick its own key by forging them. A malformed header from a trusted peer
// is a *check.FieldError naming it.
func (p Proxies) Of(r *http.Request) (string, error) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		// Not an IP peer (a unix socket, a test harness): nothing to trust.
		if host, _, splitErr := net.SplitHostPort(r.RemoteAddr); splitErr == nil {
			return host, nil
		}
		return r.RemoteAddr, nil
	}
	addr := peer.Addr().Unmap()
	if !p.Contains(addr) {
		return addr.String(), nil
	}
	if values := r.Header.Values("X-Forwarded-For"); len(values) > 0 {
		ip, found, err := p.rightmostUntrusted(values)
		if err != nil {
			return "", &check.FieldError{Field: "X-Forwarded-For", Msg: err.Error()}
		}
		if found {
			return ip.String(), nil
		}
	}
	if v := strings.TrimSpace(r.Header.Get("X-Real-IP")); v != "" {
		ip, err := parseForwardedAddr(v)
		if err != nil {
			return "", &check.FieldError{Field: "X-Real-IP", Msg: err.Error()}
		}
		return ip.String(), nil
	}
	return addr.String(), nil
}

// Claimed is the client address when a peer at peerAddr (a gRPC peer's
// net.Addr string, "host:port") claims it is claim: the claim from a trusted
// peer, else the peer's own address — the same rule Of applies to
// X-Forwarded-For, for callers (the Envoy rate limit service) whose peer
// hands the client's address over in a field of its own.
func (p Proxies) Claimed(peerAddr, claim string) string {
	peer, err := netip.ParseAddrPort(peerAddr)
	if err != nil {
		if host, _, splitErr := net.SplitHostPort(peerAddr); splitErr == nil {
			return host
		}
		return peerAddr
	}
	if addr := peer.Addr().Unmap(); !p.Contains(addr) {
		return addr.String()
	}
	return claim
}

// rightmostUntrusted walks the X-Forwarded-For chain (all header lines, in
// order) from the right and returns the first address not trusted; when
// every address is trusted, the left-most one, the origin of the chain.
// found is false for a chain with no addresses at all.
func (p Proxies) rightmostUntrusted(values []string) (ip netip.Addr, found bool, err error) {
	for v := len(values) - 1; v >= 0; v-- {
		rest := values[v]
		for rest != "" {
			var item string
			if i := strings.LastIndexByte(rest, ','); i >= 0 {
				rest, item = rest[:i], rest[i+1:]
			} else {
				rest, item = "", rest
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if ip, err = parseForwardedAddr(item); err != nil {
				return netip.Addr{}, false, err
			}
			found = true
			if !p.Contains(ip) {
				return ip, true, nil
			}
		}
	}
	return ip, found, nil
}

// parseForwardedAddr reads one forwarded address; some proxies add the
// client's port ("203.0.113.7:51234", "[2001:db8::1]:443").
func parseForwardedAddr(s string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap(), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
}
