package platform

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock is a Clock that stands still.
type fakeClock struct{ now time.Time }

func (c fakeClock) Now() time.Time { return c.now }

// dnsServer is a small recursive-resolver stand-in on loopback, serving a
// zone the way a real recursive resolver answers a stub: CNAME chains
// chased within the answer, NXDOMAIN for unknown names, NODATA with the
// zone's SOA for known names without the asked type.
type dnsServer struct {
	addr    string
	records map[string][]dns.RR // by lower-case owner name

	// lazy owners are answered with their CNAME only, as some servers do,
	// so the client has to ask for the target itself.
	lazy map[string]bool
	// truncated owners get a truncated, empty answer over UDP.
	truncated map[string]bool
	rcode     int // if set, every answer has this rcode

	mu      sync.Mutex // held while serving; guards all fields
	queries []string   // "name type net"
}

// configure changes the server's behaviour safely while it runs.
func (s *dnsServer) configure(f func(s *dnsServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func newDNSServer(t *testing.T, zone ...string) *dnsServer {
	t.Helper()
	s := &dnsServer{records: map[string][]dns.RR{}, lazy: map[string]bool{}, truncated: map[string]bool{}}
	for _, z := range zone {
		rr, err := dns.NewRR(z)
		if err != nil {
			t.Fatalf("dns.NewRR(%q): %v", z, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// TCP on the same port, for truncated answers.
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("loopback port %s taken for TCP; rerun: %v", pc.LocalAddr(), err)
	}
	s.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = srv.ActivateAndServe()
		}()
		<-started
	}
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
		wg.Wait()
	})
	return s
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	network := w.RemoteAddr().Network()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]+" "+network)

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	defer func() { _ = w.WriteMsg(resp) }()
	if s.rcode != 0 {
		resp.Rcode = s.rcode
		return
	}
	name := strings.ToLower(q.Name)
	if s.truncated[name] && network == "udp" {
		resp.Truncated = true
		return
	}
	for hops := 0; hops < 20; hops++ {
		rrs, ok := s.records[name]
		if !ok {
			if hops == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			return
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == q.Qtype:
				resp.Answer = append(resp.Answer, rr)
				found = true
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if found {
			return
		}
		if cname == nil {
			soa, _ := dns.NewRR("example. 60 IN SOA ns.example. admin.example. 1 7200 3600 1209600 60")
			resp.Ns = append(resp.Ns, soa)
			return
		}
		resp.Answer = append(resp.Answer, cname)
		if s.lazy[name] {
			return
		}
		name = strings.ToLower(cname.Target)
	}
}

func (s *dnsServer) queried(q string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, got := range s.queries {
		if got == q {
			n++
		}
	}
	return n
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func entryTimeouts(tg Targets) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, e := range tg.Entries {
		m[e.Prefix.String()] = e.Timeout
	}
	return m
}

func TestResolver(t *testing.T) {
	t.Parallel()
	srv := newDNSServer(t,
		"a.example.com. 300 IN A 192.0.2.1",
		"a.example.com. 120 IN AAAA 2001:db8::1",
		"short.example.com. 5 IN A 192.0.2.2",
		"www.example.com. 600 IN CNAME edge.cdn.example.net.",
		"edge.cdn.example.net. 90 IN CNAME e1.cdn.example.net.",
		"e1.cdn.example.net. 200 IN A 192.0.2.3",
		"lazy.example.com. 100 IN CNAME target.example.org.",
		"target.example.org. 400 IN A 192.0.2.4",
		"hosts.example.com. 300 IN A 192.0.2.99",
		"big.example.com. 3600 IN A 192.0.2.5",
		"shared.example.com. 3600 IN A 192.0.2.1",
		"loop.example.com. 300 IN CNAME loop2.example.com.",
		"loop2.example.com. 300 IN CNAME loop.example.com.",
		"sinkholed.example.com. 300 IN A 0.0.0.0",
		"v4only.example.com. 300 IN A 192.0.2.6",
	)
	srv.configure(func(s *dnsServer) {
		s.lazy["lazy.example.com."] = true
		s.truncated["big.example.com."] = true
	})
	hosts := writeFile(t, strings.Join([]string{
		"# hosts file",
		"127.0.0.1 localhost",
		"192.0.2.50 Hosts.Example.com alias.example.com # trailing comment",
		"2001:db8::50 hosts.example.com",
		"::1 local.example.com",
	}, "\n"))

	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	r := NewResolver(ResolverOptions{
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
		Clock:       fakeClock{now},
		HostsPath:   hosts,
		Nameservers: []string{srv.addr},
	})
	policy := Policy{
		Domains: []string{
			"a.example.com", "short.example.com", "WWW.example.com.", "lazy.example.com",
			"hosts.example.com", "big.example.com", "shared.example.com", "missing.example.com",
			"loop.example.com", "sinkholed.example.com", "local.example.com", "v4only.example.com",
			"*.openai.azure.com", "not a domain",
		},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
	}
	res, err := r.Resolve(context.Background(), policy)
	if err != nil {
		t.Fatalf("Resolve() error = %v", err)
	}

	got := entryTimeouts(res.Targets)
	want := map[string]time.Duration{
		"198.51.100.0/24":  0,                 // static CIDR
		"192.0.2.1/32":     2 * time.Hour,     // a: 300s A, but shared: 3600s
		"2001:db8::1/128":  240 * time.Second, // AAAA TTL 120s, x2
		"192.0.2.2/32":     120 * time.Second, // 5s raised to the 60s floor, x2
		"192.0.2.3/32":     180 * time.Second, // smallest TTL on the chain: 90s
		"192.0.2.4/32":     200 * time.Second, // lazy: CNAME 100s, target asked for
		"192.0.2.50/32":    10 * time.Minute,  // hosts file: 5m x2
		"2001:db8::50/128": 10 * time.Minute,
		"192.0.2.5/32":     2 * time.Hour, // truncated over UDP, answered over TCP
		"192.0.2.6/32":     600 * time.Second,
	}
	for p, w := range want {
		if g, ok := got[p]; !ok || g != w {
			t.Errorf("Resolve() entry %s timeout = %v (present %v); want %v", p, g, ok, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("Resolve() has unexpected entry %s", p)
		}
	}
	if len(res.Targets.Entries) != len(got) {
		t.Errorf("Resolve() has %d entries for %d prefixes; want one entry per prefix", len(res.Targets.Entries), len(got))
	}

	byDomain := map[string]DomainResult{}
	for _, d := range res.Domains {
		byDomain[d.Domain] = d
	}
	if len(res.Domains) != len(policy.Domains) {
		t.Fatalf("Resolve() has %d domain results; want %d", len(res.Domains), len(policy.Domains))
	}
	for _, tc := range []struct {
		domain  string
		source  AddrSource
		ttl     time.Duration
		addrs   []string
		wantErr error
	}{
		{domain: "a.example.com", source: SourceDNS, ttl: 120 * time.Second, addrs: []string{"192.0.2.1", "2001:db8::1"}},
		{domain: "WWW.example.com.", source: SourceDNS, ttl: 90 * time.Second, addrs: []string{"192.0.2.3"}},
		{domain: "hosts.example.com", source: SourceHosts, ttl: 5 * time.Minute, addrs: []string{"192.0.2.50", "2001:db8::50"}},
		{domain: "sinkholed.example.com", source: SourceDNS, ttl: 5 * time.Minute},
		{domain: "local.example.com", source: SourceHosts, ttl: 5 * time.Minute},
		{domain: "missing.example.com", source: SourceDNS, wantErr: errNXDomain},
		{domain: "loop.example.com", source: SourceDNS, wantErr: errAny},
		{domain: "*.openai.azure.com", wantErr: ErrWildcardDomain},
		{domain: "not a domain", wantErr: ErrInvalidDestination},
	} {
		d := byDomain[tc.domain]
		var addrs []string
		for _, a := range d.Addrs {
			addrs = append(addrs, a.String())
		}
		switch {
		case tc.wantErr == nil && d.Err != nil:
			t.Errorf("%s: Err = %v; want nil", tc.domain, d.Err)
		case tc.wantErr == errAny && d.Err == nil:
			t.Errorf("%s: Err = nil; want an error", tc.domain)
		case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(d.Err, tc.wantErr):
			t.Errorf("%s: Err = %v; want %v", tc.domain, d.Err, tc.wantErr)
		}
		if d.Source != tc.source || d.TTL != tc.ttl || !slices.Equal(addrs, tc.addrs) {
			t.Errorf("%s: source %q ttl %v addrs %v; want %q %v %v", tc.domain, d.Source, d.TTL, addrs, tc.source, tc.ttl, tc.addrs)
		}
	}
	if srv.queried("hosts.example.com. A udp") != 0 {
		t.Error("a name in the hosts file was asked of DNS")
	}
	if srv.queried("target.example.org. A udp") != 1 {
		t.Error("the target of a CNAME left unresolved by the server was not asked for")
	}
	if srv.queried("big.example.com. A tcp") != 1 {
		t.Error("a truncated answer was not retried over TCP")
	}

	// The earliest expiry: short.example.com's floored 60s, as is the
	// retry of the failed names.
	if want := now.Add(time.Minute); !res.NextRefresh.Equal(want) {
		t.Errorf("NextRefresh = %v; want %v", res.NextRefresh, want)
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "missing.example.com") || strings.Contains(err.Error(), "azure") {
		t.Errorf("Resolution.Err() = %v; want the failed domains but not the wildcard", err)
	}
	if !strings.Contains(logs.String(), "missing.example.com") {
		t.Errorf("failed domain was not logged; logs:\n%s", logs.String())
	}
}

// errAny stands for "some error" in test tables.
var errAny = errors.New("any error")

func TestResolverNameserverFallback(t *testing.T) {
	t.Parallel()
	good := newDNSServer(t, "api.example.com. 300 IN A 192.0.2.1")
	failing := newDNSServer(t)
	failing.configure(func(s *dnsServer) { s.rcode = dns.RcodeServerFailure })
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	r := NewResolver(ResolverOptions{
		HostsPath:    filepath.Join(t.TempDir(), "no-hosts"),
		Nameservers:  []string{failing.addr, silent.LocalAddr().String(), good.addr},
		QueryTimeout: 200 * time.Millisecond,
	})
	res, err := r.Resolve(context.Background(), Policy{Domains: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Domains[0]; d.Err != nil || len(d.Addrs) != 1 || d.Addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("Resolve via fallback nameservers = %+v; want 192.0.2.1", d)
	}

	// All failing: an error per domain, not for the call.
	r = NewResolver(ResolverOptions{
		HostsPath:    filepath.Join(t.TempDir(), "no-hosts"),
		Nameservers:  []string{failing.addr},
		QueryTimeout: 200 * time.Millisecond,
	})
	res, err = r.Resolve(context.Background(), Policy{
		Domains: []string{"api.example.com"},
		CIDRs:   []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
	})
	if err != nil {
		t.Fatalf("Resolve() error = %v; want per-domain errors only", err)
	}
	if res.Domains[0].Err == nil || !strings.Contains(res.Domains[0].Err.Error(), "SERVFAIL") {
		t.Errorf("Domains[0].Err = %v; want SERVFAIL", res.Domains[0].Err)
	}
	if len(res.Targets.Entries) != 1 {
		t.Errorf("Targets = %v; want just the CIDR", res.Targets.Entries)
	}
}

func TestResolverCanceled(t *testing.T) {
	t.Parallel()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r := NewResolver(ResolverOptions{
		HostsPath:   filepath.Join(t.TempDir(), "no-hosts"),
		Nameservers: []string{silent.LocalAddr().String()},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := r.Resolve(ctx, Policy{Domains: []string{"a.example.com", "b.example.com"}})
	// The queries' socket deadlines and the context's timer fire together;
	// either may be seen first.
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve() error = %v; want nil or context.DeadlineExceeded", err)
	}
	for _, d := range res.Domains {
		if d.Err == nil {
			t.Errorf("%s: Err = nil; want the deadline", d.Domain)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Resolve() took %v after its context ended", took)
	}
}

func TestResolverReadsResolvConf(t *testing.T) {
	t.Parallel()
	conf := writeFile(t, "# generated\nsearch corp.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n")
	r := NewResolver(ResolverOptions{ResolvConfPath: conf})
	if got, want := r.servers(), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("servers() = %v; want %v", got, want)
	}
	r = NewResolver(ResolverOptions{ResolvConfPath: filepath.Join(t.TempDir(), "missing")})
	if got, want := r.servers(), []string{"127.0.0.1:53"}; !slices.Equal(got, want) {
		t.Errorf("servers() without resolv.conf = %v; want %v", got, want)
	}
}
