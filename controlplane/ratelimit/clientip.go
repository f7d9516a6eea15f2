package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address of the client that made r. X-Forwarded-For is
// believed only when the direct peer is in trusted, and then only as far as
// trusted proxies vouch for it: the list (every X-Forwarded-For header, in
// order) is walked from the right, skipping trusted proxies, and the first
// untrusted hop is the client. A client that sends its own X-Forwarded-For
// only adds entries to the left of the one its first proxy appends, so it
// cannot choose its address. If every hop is trusted, the leftmost is the
// client; a hop that does not parse stops the walk at the last hop that did
// (or the peer), since nothing beyond it can be vouched for. Empty entries
// are skipped, and entries may carry a port ("192.0.2.1:443", "[2001:db8::1]:443").
//
// Addresses are normalized: IPv4-mapped IPv6 becomes IPv4 and zones are
// dropped. The result is the zero Addr only when r.RemoteAddr (host:port or a
// bare address) is not an IP address, as with a Unix socket.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHop(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			hop := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				hop, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			hop = strings.Trim(hop, " \t")
			if hop == "" {
				continue
			}
			a := parseHop(hop)
			if !a.IsValid() {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return client
			}
		}
	}
	return client
}

// parseHop parses an address with or without a port, normalized. It picks
// the parser by shape rather than trying each in turn, because a failed
// parse allocates its error: an IPv6 address has at least two colons, so
// exactly one means IPv4 with a port.
func parseHop(s string) netip.Addr {
	var (
		a   netip.Addr
		err error
	)
	switch bracketed := strings.HasPrefix(s, "["); {
	case bracketed && strings.HasSuffix(s, "]"):
		a, err = netip.ParseAddr(s[1 : len(s)-1])
	case bracketed || strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies parses a comma-separated list of proxy networks, such
// as a flag value "10.0.0.0/8, 2001:db8::/32, 192.0.2.7"; a bare address is a
// single host (/32 or /128). An empty string means no trusted proxies.
// Networks with host bits set ("10.0.0.1/8") are refused rather than guessed
// at, since trusting a wider network than meant lets clients spoof addresses.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		p, err := parseTrustedProxy(field)
		if err != nil {
			return nil, fmt.Errorf("parsing trusted proxy %d %q: %w", i+1, field, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseTrustedProxy(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("zone %q not allowed", a.Zone())
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set; the network is %s", m)
	}
	// ClientIP unmaps addresses, so an IPv4-mapped network must be IPv4 to match.
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}
