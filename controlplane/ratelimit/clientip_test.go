package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// testTrusted are the proxies the ClientIP tests trust.
var testTrusted = mustParseTrusted("10.0.0.0/8, 198.51.100.7, 2001:db8:ffff::/48")

func mustParseTrusted(s string) []netip.Prefix {
	p, err := ParseTrustedProxies(s)
	if err != nil {
		panic(err)
	}
	return p
}

func newRequest(remoteAddr string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/keys", nil)
	r.RemoteAddr = remoteAddr
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer", "203.0.113.5:41000", nil, "203.0.113.5"},
		{"spoofed XFF from untrusted peer", "203.0.113.5:41000", []string{"10.1.1.1"}, "203.0.113.5"},
		{"spoofed chain from untrusted peer", "203.0.113.5:41000", []string{"1.2.3.4, 10.0.0.9"}, "203.0.113.5"},
		{"one trusted proxy", "10.0.0.1:443", []string{"203.0.113.5"}, "203.0.113.5"},
		{"client's own XFF left of proxy's entry", "10.0.0.1:443", []string{"1.2.3.4, 203.0.113.5"}, "203.0.113.5"},
		{"client claims a trusted address", "10.0.0.1:443", []string{"10.9.9.9, 203.0.113.5"}, "203.0.113.5"},
		{"chain of trusted proxies", "10.0.0.1:443", []string{"9.9.9.9, 203.0.113.5, 10.2.2.2, 198.51.100.7"}, "203.0.113.5"},
		{"untrusted hop mid-chain ends the walk", "10.0.0.1:443", []string{"203.0.113.5, 192.0.2.66, 10.2.2.2"}, "192.0.2.66"},
		{"multiple headers", "10.0.0.1:443", []string{"1.1.1.1, 203.0.113.5", "10.2.2.2", "10.3.3.3"}, "203.0.113.5"},
		{"multiple headers, client in last", "10.0.0.1:443", []string{"1.1.1.1", "10.2.2.2, 203.0.113.5"}, "203.0.113.5"},
		{"spaces and tabs", "10.0.0.1:443", []string{"  1.1.1.1 ,\t203.0.113.5\t,  10.2.2.2  "}, "203.0.113.5"},
		{"empty entries skipped", "10.0.0.1:443", []string{",203.0.113.5,, ,10.2.2.2,", ""}, "203.0.113.5"},
		{"every hop trusted: leftmost", "10.0.0.1:443", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"trusted peer, no XFF", "10.0.0.1:443", nil, "10.0.0.1"},
		{"trusted peer, empty XFF", "10.0.0.1:443", []string{""}, "10.0.0.1"},
		{"garbage as the last hop: peer", "10.0.0.1:443", []string{"203.0.113.5, unknown"}, "10.0.0.1"},
		{"garbage behind a trusted hop: that hop", "10.0.0.1:443", []string{"203.0.113.5, 300.1.1.1, 10.2.2.2"}, "10.2.2.2"},
		{"garbage left of the client is never reached", "10.0.0.1:443", []string{"<script>, 203.0.113.5"}, "203.0.113.5"},
		{"only garbage", "10.0.0.1:443", []string{"\x00\xff, ;;;"}, "10.0.0.1"},
		{"hops with ports", "10.0.0.1:443", []string{"203.0.113.5:5555, 10.2.2.2:80"}, "203.0.113.5"},
		{"IPv6 peer", "[2001:db8::1]:443", []string{"203.0.113.5"}, "2001:db8::1"},
		{"IPv6 trusted proxy", "[2001:db8:ffff::1]:443", []string{"2001:db8:1::42"}, "2001:db8:1::42"},
		{"IPv6 hop with port and upper case", "[2001:db8:ffff::1]:443", []string{"[2001:DB8:1::42]:443"}, "2001:db8:1::42"},
		{"IPv6 hop in brackets", "[2001:db8:ffff::1]:443", []string{"[2001:db8:1::42]"}, "2001:db8:1::42"},
		{"mixed families", "[2001:db8:ffff::1]:443", []string{"203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"IPv4-mapped peer is trusted as IPv4", "[::ffff:10.0.0.1]:443", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"IPv4-mapped untrusted peer", "[::ffff:203.0.113.5]:443", nil, "203.0.113.5"},
		{"zone dropped", "[fe80::1%eth0]:443", nil, "fe80::1"},
		{"RemoteAddr without port", "203.0.113.5", []string{"10.1.1.1"}, "203.0.113.5"},
		{"trusted RemoteAddr without port", "10.0.0.1", []string{"203.0.113.5"}, "203.0.113.5"},
		{"RemoteAddr not an address", "@", []string{"203.0.113.5"}, "invalid IP"},
		{"RemoteAddr empty", "", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ClientIP(newRequest(tt.remote, tt.xff...), testTrusted)
			if got.String() != tt.want {
				t.Errorf("ClientIP(RemoteAddr %q, XFF %q) = %v; want %v", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestClientIPTrustsNobodyByDefault(t *testing.T) {
	t.Parallel()
	r := newRequest("10.0.0.1:443", "203.0.113.5")
	if got, want := ClientIP(r, nil), netip.MustParseAddr("10.0.0.1"); got != want {
		t.Errorf("ClientIP(trusted nil) = %v; want %v", got, want)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // the prefixes joined by spaces
	}{
		{"", ""},
		{" , ", ""},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{" 10.0.0.0/8 , 2001:db8::/32,192.0.2.7, ::1 ,", "10.0.0.0/8 2001:db8::/32 192.0.2.7/32 ::1/128"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
	}
	for _, tt := range tests {
		got, err := ParseTrustedProxies(tt.in)
		if err != nil {
			t.Errorf("ParseTrustedProxies(%q) error: %v", tt.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tt.want {
			t.Errorf("ParseTrustedProxies(%q) = %v; want %v", tt.in, s, tt.want)
		}
	}
}

func TestParseTrustedProxiesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{"10.0.0.300", `trusted proxy 1 "10.0.0.300"`},
		{"10.0.0.0/8, 10.0.0.1/8", `trusted proxy 2 "10.0.0.1/8": host bits set; the network is 10.0.0.0/8`},
		{"10.0.0.0/33", `"10.0.0.0/33"`},
		{"fe80::1%eth0", `zone "eth0" not allowed`},
		{"proxy.internal", `trusted proxy 1 "proxy.internal"`},
		{"10.0.0.0/8 192.0.2.1", `"10.0.0.0/8 192.0.2.1"`},
	}
	for _, tt := range tests {
		got, err := ParseTrustedProxies(tt.in)
		if err == nil {
			t.Errorf("ParseTrustedProxies(%q) = %v; want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseTrustedProxies(%q) error = %q; want it to contain %q", tt.in, err, tt.wantErr)
		}
		if !strings.HasPrefix(err.Error(), "parsing trusted proxy") {
			t.Errorf("ParseTrustedProxies(%q) error = %q; want lowercase context first", tt.in, err)
		}
	}
}

// FuzzClientIP checks that ClientIP never panics and only ever answers the
// peer or an address that is in the header, and the header only through a
// trusted peer. Newlines in xff separate X-Forwarded-For headers.
func FuzzClientIP(f *testing.F) {
	for _, seed := range [][2]string{
		{"203.0.113.5:1", "10.0.0.1"},
		{"10.0.0.1:443", "1.2.3.4, 203.0.113.5, 10.2.2.2"},
		{"10.0.0.1:443", "1.2.3.4\n10.2.2.2, 203.0.113.5"},
		{"[2001:db8:ffff::1]:443", "[2001:DB8::42]:1, garbage, ::ffff:10.0.0.3"},
		{"[::ffff:10.0.0.1]:443", " ,\t, 198.51.100.7:80 ,"},
		{"10.0.0.1", "fe80::1%eth0, [fe80::2%1]:9"},
		{"@", "203.0.113.5"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, remoteAddr, xff string) {
		headers := strings.Split(xff, "\n")
		got := ClientIP(newRequest(remoteAddr, headers...), testTrusted)

		peer := oracleParse(remoteAddr)
		if got == peer {
			return
		}
		if !peer.IsValid() || !isTrusted(peer, testTrusted) {
			t.Fatalf("ClientIP(%q, XFF %q) = %v; want the untrusted peer %v", remoteAddr, headers, got, peer)
		}
		var inHeader []netip.Addr
		for _, h := range headers {
			for _, hop := range strings.Split(h, ",") {
				if a := oracleParse(strings.Trim(hop, " \t")); a.IsValid() {
					inHeader = append(inHeader, a)
				}
			}
		}
		if !slices.Contains(inHeader, got) {
			t.Fatalf("ClientIP(%q, XFF %q) = %v; want the peer %v or one of %v", remoteAddr, headers, got, peer, inHeader)
		}
	})
}

// oracleParse is the fuzz test's own reading of one address, written
// separately from parseHop: optional port and brackets; normalized.
func oracleParse(s string) netip.Addr {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a = ap.Addr()
	} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		a, _ = netip.ParseAddr(strings.TrimSuffix(inner, "]"))
	} else {
		a, _ = netip.ParseAddr(s)
	}
	return a.WithZone("").Unmap()
}

func BenchmarkClientIP(b *testing.B) {
	r := newRequest("10.0.0.1:443", "1.2.3.4, 203.0.113.5", "10.2.2.2, 198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		ClientIP(r, testTrusted)
	}
}
