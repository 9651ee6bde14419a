package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sluicehq/sluice/api/check"
)

// ParseTrustedProxies reads a comma-separated list of CIDRs or bare
// addresses (a bare address trusts just itself), as --trusted-proxies takes
// it. An empty list trusts nobody.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
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

// clientIP is the address a forward-auth request is about. Only a peer in
// trusted may speak for someone else: from it, X-Forwarded-For (the
// right-most address not itself trusted, since every proxy appends the
// address it saw and only entries added by trusted hops are believable), or
// else X-Real-IP, is taken. From anyone else those headers are ignored, so
// a client cannot pick its own key by forging them.
func clientIP(r *http.Request, trusted []netip.Prefix) (string, error) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		// Not an IP peer (a unix socket, a test harness): nothing to trust.
		if host, _, splitErr := net.SplitHostPort(r.RemoteAddr); splitErr == nil {
			return host, nil
		}
		return r.RemoteAddr, nil
	}
	addr := peer.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr.String(), nil
	}
	if values := r.Header.Values("X-Forwarded-For"); len(values) > 0 {
		ip, found, err := rightmostUntrusted(values, trusted)
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

// rightmostUntrusted walks the X-Forwarded-For chain (all header lines, in
// order) from the right and returns the first address not in trusted; when
// every address is trusted, the left-most one, the origin of the chain.
// found is false for a chain with no addresses at all.
func rightmostUntrusted(values []string, trusted []netip.Prefix) (ip netip.Addr, found bool, err error) {
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
			if !isTrusted(ip, trusted) {
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

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
