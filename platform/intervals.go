package platform

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// addrRange is an inclusive range of addresses of one family that stays
// blocked for timeout (zero: until removed).
type addrRange struct {
	first, last netip.Addr
	timeout     time.Duration
}

// forever stands for "no timeout" while ranges are being merged, so that it
// compares greater than every real timeout.
const forever = time.Duration(math.MaxInt64)

// coalesce turns entries into sorted, non-overlapping ranges, one list per
// address family.
//
// Kernel interval sets (nftables rbtree, pf tables) refuse overlapping
// elements, yet targets overlap all the time: a static CIDR contains an
// address that DNS also returned, two domains share an address with
// different TTLs. Every address must stay blocked as long as the
// longest-lived entry covering it, so the address space is cut at every
// entry boundary, each piece takes the longest timeout covering it, and
// neighbouring pieces with the same timeout are joined again.
func coalesce(entries []Entry) (v4, v6 []addrRange, err error) {
	type event struct {
		at      netip.Addr
		timeout time.Duration
		delta   int
	}
	var ev4, ev6 []event
	for _, e := range entries {
		p, err := normalizePrefix(e.Prefix)
		if err != nil {
			return nil, nil, err
		}
		if e.Timeout < 0 {
			return nil, nil, fmt.Errorf("entry %s: negative timeout %v", p, e.Timeout)
		}
		timeout := e.Timeout
		if timeout == 0 {
			timeout = forever
		}
		evs := &ev4
		if p.Addr().Is6() {
			evs = &ev6
		}
		*evs = append(*evs, event{at: p.Addr(), timeout: timeout, delta: 1})
		if end := lastAddr(p).Next(); end.IsValid() {
			*evs = append(*evs, event{at: end, timeout: timeout, delta: -1})
		}
	}
	sweep := func(evs []event, maxAddr netip.Addr) []addrRange {
		slices.SortFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
		var out []addrRange
		covering := map[time.Duration]int{}
		for i := 0; i < len(evs); {
			at := evs[i].at
			for ; i < len(evs) && evs[i].at == at; i++ {
				covering[evs[i].timeout] += evs[i].delta
				if covering[evs[i].timeout] == 0 {
					delete(covering, evs[i].timeout)
				}
			}
			if len(covering) == 0 {
				continue
			}
			var longest time.Duration
			for t := range covering {
				longest = max(longest, t)
			}
			last := maxAddr
			if i < len(evs) {
				last = evs[i].at.Prev()
			}
			if n := len(out); n > 0 && out[n-1].timeout == longest && out[n-1].last.Next() == at {
				out[n-1].last = last
				continue
			}
			out = append(out, addrRange{first: at, last: last, timeout: longest})
		}
		for i := range out {
			if out[i].timeout == forever {
				out[i].timeout = 0
			}
		}
		return out
	}
	return sweep(ev4, maxAddr4), sweep(ev6, maxAddr6), nil
}

var (
	maxAddr4 = netip.MustParseAddr("255.255.255.255")
	maxAddr6 = netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
)

// normalizePrefix masks p and turns IPv4-mapped IPv6 prefixes into IPv4
// ones, since packets to those addresses travel as IPv4.
func normalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q", p.String())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %s mixes IPv4-mapped and other IPv6 addresses", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch start := i * 8; {
		case start >= bits:
			b[i] = 0xff
		case start+8 > bits:
			b[i] |= 0xff >> (bits - start)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rangesContain reports whether a falls in one of the sorted ranges.
func rangesContain(ranges []addrRange, a netip.Addr) bool {
	_, found := slices.BinarySearchFunc(ranges, a, func(r addrRange, a netip.Addr) int {
		if r.last.Less(a) {
			return -1
		}
		if a.Less(r.first) {
			return 1
		}
		return 0
	})
	return found
}
