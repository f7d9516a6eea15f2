package platform

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Policy names what a lock blocks: domains, resolved on the device, and
// networks, blocked as they are.
type Policy struct {
	// Domains are host names as ValidateDomain accepts them.
	Domains []string
	// CIDRs are networks as ParseCIDR returns them.
	CIDRs []netip.Prefix
}

// ResolverOptions configure a Resolver; the zero value resolves like the
// system does, from /etc/hosts and /etc/resolv.conf.
type ResolverOptions struct {
	// Logger receives per-domain failures; nil discards.
	Logger *slog.Logger
	// Clock dates the results; nil means the system clock.
	Clock Clock
	// HostsPath is the hosts file consulted before DNS; default /etc/hosts.
	HostsPath string
	// ResolvConfPath names the nameservers; default /etc/resolv.conf.
	ResolvConfPath string
	// Nameservers ("host:port") replace those from ResolvConfPath when set.
	Nameservers []string
	// MinTTL is the floor under DNS TTLs, so that a name with a tiny TTL
	// does not force constant refreshes; default one minute.
	MinTTL time.Duration
	// HostsTTL is how long hosts-file answers are trusted, since the file
	// has no TTLs; default five minutes.
	HostsTTL time.Duration
	// Grace multiplies the TTL to give an entry's timeout, so that one
	// late or failed refresh does not let addresses lapse; default 2.
	Grace int
	// QueryTimeout bounds one query to one nameserver; default two seconds.
	QueryTimeout time.Duration
	// Parallel bounds the domains resolved at once; default 16.
	Parallel int
}

// Resolver turns a Policy into Targets the way the device itself would
// resolve the names, keeping the TTLs so that the addresses age out of the
// block on their own unless refreshed.
//
// Names found in the hosts file take the hosts file's addresses only, as
// with glibc's default "hosts: files dns". Other names are asked of the
// nameservers in resolv.conf, in order, for A and AAAA records, following
// CNAME chains; a name's TTL is the smallest along its chain. Search
// domains do not apply: policy names are fully qualified.
//
// Loopback and unspecified addresses are never blocked (a name sinkholed to
// 127.0.0.1 or 0.0.0.0 is already unreachable, and blocking loopback would
// break the device).
type Resolver struct {
	log            *slog.Logger
	clock          Clock
	hostsPath      string
	resolvConfPath string
	nameservers    []string
	minTTL         time.Duration
	hostsTTL       time.Duration
	grace          int
	queryTimeout   time.Duration
	parallel       int
}

// NewResolver returns a Resolver configured by opts.
func NewResolver(opts ResolverOptions) *Resolver {
	r := &Resolver{
		log:            opts.Logger,
		clock:          clockOrSystem(opts.Clock),
		hostsPath:      orDefault(opts.HostsPath, "/etc/hosts"),
		resolvConfPath: orDefault(opts.ResolvConfPath, "/etc/resolv.conf"),
		nameservers:    slices.Clone(opts.Nameservers),
		minTTL:         orDefault(opts.MinTTL, time.Minute),
		hostsTTL:       orDefault(opts.HostsTTL, 5*time.Minute),
		grace:          orDefault(opts.Grace, 2),
		queryTimeout:   orDefault(opts.QueryTimeout, 2*time.Second),
		parallel:       orDefault(opts.Parallel, 16),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// AddrSource says where a domain's addresses came from.
type AddrSource string

// The sources of a domain's addresses.
const (
	SourceHosts AddrSource = "hosts"
	SourceDNS   AddrSource = "dns"
)

// DomainResult is what resolving one policy domain gave.
type DomainResult struct {
	// Domain is the name as the policy gave it.
	Domain string
	// Addrs are the addresses that will be blocked for it.
	Addrs []netip.Addr
	// Source says where Addrs came from.
	Source AddrSource
	// TTL is how long the answer is good for, after the MinTTL floor (the
	// hosts TTL for hosts-file names). Zero if the name did not resolve.
	TTL time.Duration
	// Err says why the name gave no addresses; nil on success, including
	// a name that exists but has only loopback or no addresses.
	// ErrWildcardDomain and ErrInvalidDestination mark names that will
	// never resolve; other errors may clear on the next refresh.
	Err error
}

// Resolution is a policy turned into targets, with what happened to each
// domain and when to look again.
type Resolution struct {
	// Targets are the policy's CIDRs (no timeout) and the domains'
	// addresses (timeout: Grace times their TTL).
	Targets Targets
	// Domains has one result per policy domain, in policy order.
	Domains []DomainResult
	// NextRefresh is when the earliest answer expires (failed names are
	// retried after MinTTL); zero if the policy has nothing to refresh.
	NextRefresh time.Time
}

// Err joins the per-domain errors other than wildcards, for logging; nil
// if every resolvable domain resolved.
func (r Resolution) Err() error {
	var errs []error
	for _, d := range r.Domains {
		if d.Err != nil && !errors.Is(d.Err, ErrWildcardDomain) {
			errs = append(errs, d.Err)
		}
	}
	return errors.Join(errs...)
}

// Resolve resolves the policy's domains and adds its CIDRs. A domain that
// fails is logged and reported in its DomainResult; the others still
// count. The error is non-nil only when ctx ends first.
func (r *Resolver) Resolve(ctx context.Context, p Policy) (Resolution, error) {
	now := r.clock.Now()
	hosts, err := readHosts(r.hostsPath)
	if err != nil {
		// Without the hosts file, names it would have answered go to DNS;
		// that is the best remaining guess at what the device would do.
		r.log.Warn("reading hosts file", "path", r.hostsPath, "err", err)
	}
	servers := r.servers()

	res := Resolution{Domains: make([]DomainResult, len(p.Domains))}
	type timed struct {
		addrs []netip.Addr
		ttl   time.Duration
	}
	perDomain := make([][]timed, len(p.Domains))
	sem := make(chan struct{}, r.parallel)
	var wg sync.WaitGroup
	for i, d := range p.Domains {
		res.Domains[i].Domain = d
		if err := ValidateDomain(d); err != nil {
			res.Domains[i].Err = err
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(d, "."))
		if strings.HasPrefix(name, "*.") {
			res.Domains[i].Err = fmt.Errorf("domain %s: %w", d, ErrWildcardDomain)
			continue
		}
		if addrs, ok := hosts[name]; ok {
			res.Domains[i].Source = SourceHosts
			res.Domains[i].TTL = r.hostsTTL
			res.Domains[i].Addrs = r.blockable(d, addrs)
			perDomain[i] = []timed{{res.Domains[i].Addrs, r.hostsTTL}}
			continue
		}
		res.Domains[i].Source = SourceDNS
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				res.Domains[i].Err = fmt.Errorf("resolving %s: %w", d, ctx.Err())
				return
			}
			var (
				ttl  time.Duration
				errs []error
			)
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
				addrs, qttl, err := r.lookup(ctx, servers, name, qtype)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", dns.TypeToString[qtype], err))
					continue
				}
				if len(addrs) == 0 {
					continue
				}
				qttl = min(max(qttl, r.minTTL), maxTTL)
				if ttl == 0 || qttl < ttl {
					ttl = qttl
				}
				addrs = r.blockable(d, addrs)
				res.Domains[i].Addrs = append(res.Domains[i].Addrs, addrs...)
				perDomain[i] = append(perDomain[i], timed{addrs, qttl})
			}
			res.Domains[i].TTL = ttl
			switch {
			case len(errs) == 2 || (len(errs) == 1 && len(perDomain[i]) == 0):
				res.Domains[i].Err = fmt.Errorf("resolving %s: %w", d, errors.Join(errs...))
			case len(errs) == 1:
				// One family answered: block what we have, say what failed.
				r.log.Warn("resolving domain partly failed", "domain", d, "err", errs[0])
			}
		}()
	}
	wg.Wait()

	// One entry per address, with the longest timeout any domain gave it.
	timeouts := map[netip.Addr]time.Duration{}
	var order []netip.Addr
	for i, d := range res.Domains {
		switch {
		case d.Err != nil && !errors.Is(d.Err, ErrWildcardDomain) && !errors.Is(d.Err, ErrInvalidDestination):
			r.log.Warn("domain not resolved; blocking the rest of the policy", "domain", d.Domain, "err", d.Err)
			res.NextRefresh = earliest(res.NextRefresh, now.Add(r.minTTL))
		case d.Err != nil:
			r.log.Debug("domain not resolvable", "domain", d.Domain, "err", d.Err)
		default:
			res.NextRefresh = earliest(res.NextRefresh, now.Add(d.TTL))
		}
		for _, t := range perDomain[i] {
			for _, a := range t.addrs {
				old, seen := timeouts[a]
				if !seen {
					order = append(order, a)
				}
				timeouts[a] = max(old, t.ttl*time.Duration(r.grace))
			}
		}
	}
	for _, c := range p.CIDRs {
		res.Targets.Entries = append(res.Targets.Entries, Entry{Prefix: c})
	}
	for _, a := range order {
		res.Targets.Entries = append(res.Targets.Entries, Entry{
			Prefix:  netip.PrefixFrom(a, a.BitLen()),
			Timeout: timeouts[a],
		})
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("resolving policy: %w", err)
	}
	return res, nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// blockable drops the addresses that must never be blocked.
func (r *Resolver) blockable(domain string, addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.IsLoopback() || a.IsUnspecified() {
			r.log.Debug("not blocking loopback or unspecified address", "domain", domain, "addr", a)
			continue
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// servers returns the nameservers to ask, as host:port.
func (r *Resolver) servers() []string {
	if len(r.nameservers) > 0 {
		return r.nameservers
	}
	conf, err := dns.ClientConfigFromFile(r.resolvConfPath)
	if err != nil || len(conf.Servers) == 0 {
		// glibc's behaviour without a usable resolv.conf.
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("reading resolv.conf; using 127.0.0.1", "path", r.resolvConfPath, "err", err)
		}
		return []string{"127.0.0.1:53"}
	}
	servers := make([]string, len(conf.Servers))
	for i, s := range conf.Servers {
		servers[i] = net.JoinHostPort(s, conf.Port)
	}
	return servers
}

// maxTTL caps DNS TTLs, as caching resolvers do (Unbound's default cap is
// a day), so that a bogus huge TTL cannot pin an address in the block for
// years.
const maxTTL = 24 * time.Hour

// errNXDomain marks a name the DNS says does not exist.
var errNXDomain = errors.New("no such domain")

// maxCNAMEHops bounds CNAME chains, as resolvers do, against loops.
const maxCNAMEHops = 8

// lookup asks for name's records of type qtype, following CNAMEs, and
// returns the addresses and the smallest TTL along the chain. No addresses
// and no error means the name exists without such records.
func (r *Resolver) lookup(ctx context.Context, servers []string, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	ttl := time.Duration(-1)
	note := func(h *dns.RR_Header) {
		if t := time.Duration(h.Ttl) * time.Second; ttl < 0 || t < ttl {
			ttl = t
		}
	}
	cur := dns.Fqdn(name)
	hops := 0
	for {
		asked := cur
		resp, err := r.exchange(ctx, servers, asked, qtype)
		if err != nil {
			return nil, 0, err
		}
		// Follow the chain as far as this answer takes it.
		for {
			var (
				addrs []netip.Addr
				cname *dns.CNAME
			)
			for _, rr := range resp.Answer {
				h := rr.Header()
				if !strings.EqualFold(h.Name, cur) {
					continue
				}
				switch v := rr.(type) {
				case *dns.A:
					if a, ok := netip.AddrFromSlice(v.A.To4()); ok && qtype == dns.TypeA {
						addrs = append(addrs, a)
						note(h)
					}
				case *dns.AAAA:
					if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok && qtype == dns.TypeAAAA {
						addrs = append(addrs, a)
						note(h)
					}
				case *dns.CNAME:
					cname = v
				}
			}
			if len(addrs) > 0 {
				return addrs, ttl, nil
			}
			if cname == nil {
				break
			}
			if hops++; hops > maxCNAMEHops {
				return nil, 0, fmt.Errorf("more than %d CNAMEs from %s", maxCNAMEHops, name)
			}
			note(&cname.Hdr)
			cur = cname.Target
		}
		// A recursive resolver chases the chain itself and proves a
		// missing record with the zone's SOA; an answer that stops at a
		// CNAME without one leaves the target to be asked for.
		if strings.EqualFold(cur, asked) || hasSOA(resp.Ns) {
			return nil, 0, nil
		}
	}
}

func hasSOA(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

// exchange asks the servers in order until one answers authoritatively
// enough: NOERROR or NXDOMAIN. Truncated answers are retried over TCP.
func (r *Resolver) exchange(ctx context.Context, servers []string, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false)
	var errs []error
	for _, server := range servers {
		resp, err := r.exchangeOne(ctx, "udp", q, server)
		if err == nil && resp.Truncated {
			resp, err = r.exchangeOne(ctx, "tcp", q, server)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, nil
		case dns.RcodeNameError:
			return nil, fmt.Errorf("%s: %w", server, errNXDomain)
		default:
			errs = append(errs, fmt.Errorf("%s: %s", server, dns.RcodeToString[resp.Rcode]))
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no nameservers")
	}
	return nil, errors.Join(errs...)
}

func (r *Resolver) exchangeOne(ctx context.Context, network string, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.queryTimeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.queryTimeout, UDPSize: 1232}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	return resp, err
}

// readHosts parses a hosts(5) file into lower-case names and their
// addresses. A missing file is an empty one.
func readHosts(path string) (map[string][]netip.Addr, error) {
	hosts := map[string][]netip.Addr{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return hosts, nil
	}
	if err != nil {
		return hosts, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		a = a.WithZone("")
		for _, name := range fields[1:] {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if !slices.Contains(hosts[name], a) {
				hosts[name] = append(hosts[name], a)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return hosts, fmt.Errorf("reading %s: %w", path, err)
	}
	return hosts, nil
}
