package telemetry

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/platform"
)

// Resolver resolves domains as the device does (platform.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, p platform.Policy) (platform.Resolution, error)
}

// Refresh bounds for the destination addresses.
const (
	destRefreshMin = 30 * time.Second
	destRefreshMax = 10 * time.Minute
)

// Destinations knows which addresses are LLM destinations and which
// domain and provider each belongs to: it resolves the LLM domains (the
// maintained list plus the organization's policy) the way the device does,
// on their TTLs, and remembers every answer until its timeout, so that
// addresses a name rotates through stay known while in use.
//
// An address that several domains share is reported under the first of
// them in list order. Addresses of a policy's CIDRs have no domain and
// the provider platform.ProviderOther.
type Destinations struct {
	resolver Resolver
	policy   func() ([]string, []netip.Prefix)
	clk      clock.Clock
	log      *slog.Logger
	refresh  chan struct{}

	mu       sync.RWMutex
	addrs    map[netip.Addr]destination
	prefixes []netip.Prefix
}

type destination struct {
	domain  string
	expires time.Time
}

// NewDestinations returns Destinations for the default LLM domains plus
// what policy returns (the organization's domains and CIDRs, possibly
// none; it is called on each refresh). Nothing is known until Run's first
// refresh.
func NewDestinations(r Resolver, policy func() (domains []string, cidrs []netip.Prefix), clk clock.Clock, log *slog.Logger) *Destinations {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if policy == nil {
		policy = func() ([]string, []netip.Prefix) { return nil, nil }
	}
	return &Destinations{
		resolver: r, policy: policy, clk: clk, log: log.With("component", "usage-destinations"),
		refresh: make(chan struct{}, 1), addrs: map[netip.Addr]destination{},
	}
}

// Lookup returns the domain and provider of an LLM destination address;
// ok is false for any other address.
func (d *Destinations) Lookup(a netip.Addr) (domain, provider string, ok bool) {
	a = a.Unmap()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if dest, found := d.addrs[a]; found {
		return dest.domain, platform.ProviderOf(dest.domain), true
	}
	for _, p := range d.prefixes {
		if p.Contains(a) {
			return "", platform.ProviderOther, true
		}
	}
	return "", "", false
}

// Contains reports whether a is an LLM destination address.
func (d *Destinations) Contains(a netip.Addr) bool {
	_, _, ok := d.Lookup(a)
	return ok
}

// Refresh asks Run to resolve again soon (the policy changed).
func (d *Destinations) Refresh() {
	select {
	case d.refresh <- struct{}{}:
	default:
	}
}

// Run keeps the addresses fresh until ctx ends.
func (d *Destinations) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.refresh:
		}
		next := d.RefreshOnce(ctx)
		timer.Reset(min(max(next.Sub(d.clk.Now()), destRefreshMin), destRefreshMax))
	}
}

// RefreshOnce resolves the domains now and returns when to do it again.
func (d *Destinations) RefreshOnce(ctx context.Context) time.Time {
	now := d.clk.Now()
	domains, cidrs := d.policy()
	all := platform.DefaultDomains()
	for _, dom := range domains {
		if !slices.Contains(all, dom) {
			all = append(all, dom)
		}
	}
	res, err := d.resolver.Resolve(ctx, platform.Policy{Domains: all, CIDRs: cidrs})
	if err != nil {
		d.log.Warn("resolving LLM domains", "err", err)
		return now.Add(destRefreshMin)
	}
	timeouts := map[netip.Addr]time.Duration{}
	for _, e := range res.Targets.Entries {
		if e.Timeout > 0 && e.Prefix.IsSingleIP() {
			timeouts[e.Prefix.Addr()] = e.Timeout
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, dest := range d.addrs {
		if !now.Before(dest.expires) {
			delete(d.addrs, a)
		}
	}
	for _, dr := range res.Domains {
		for _, a := range dr.Addrs {
			a = a.Unmap()
			dest, seen := d.addrs[a]
			timeout := timeouts[a]
			if timeout == 0 {
				timeout = 2 * dr.TTL
			}
			expires := now.Add(timeout)
			if seen && domainRank(all, dest.domain) <= domainRank(all, dr.Domain) {
				dest.expires = later(dest.expires, expires)
			} else {
				dest = destination{domain: dr.Domain, expires: later(dest.expires, expires)}
			}
			d.addrs[a] = dest
		}
	}
	d.prefixes = slices.Clone(cidrs)
	if res.NextRefresh.IsZero() {
		return now.Add(destRefreshMax)
	}
	return res.NextRefresh
}

func domainRank(all []string, domain string) int {
	if i := slices.Index(all, domain); i >= 0 {
		return i
	}
	return len(all)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
