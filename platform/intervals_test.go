package platform

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func fmtRanges(rs []addrRange) string {
	var parts []string
	for _, r := range rs {
		s := r.first.String()
		if r.last != r.first {
			s += "-" + r.last.String()
		}
		if r.timeout != 0 {
			s += " " + r.timeout.String()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func TestCoalesce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		in     []string // "prefix [timeout]"
		v4, v6 string
	}{
		{name: "empty"},
		{name: "one address", in: []string{"192.0.2.1/32"}, v4: "192.0.2.1"},
		{name: "network", in: []string{"192.0.2.0/24 1m"}, v4: "192.0.2.0-192.0.2.255 1m0s"},
		{name: "host bits masked", in: []string{"192.0.2.77/24"}, v4: "192.0.2.0-192.0.2.255"},
		{
			name: "static network swallows shorter-lived address",
			in:   []string{"192.0.2.0/24", "192.0.2.5/32 1m"},
			v4:   "192.0.2.0-192.0.2.255",
		},
		{
			name: "longer-lived address splits the network",
			in:   []string{"192.0.2.0/24 1m", "192.0.2.5/32"},
			v4:   "192.0.2.0-192.0.2.4 1m0s, 192.0.2.5, 192.0.2.6-192.0.2.255 1m0s",
		},
		{
			name: "duplicate keeps the longest timeout",
			in:   []string{"192.0.2.1/32 1m", "192.0.2.1/32 5m", "192.0.2.1/32 2m"},
			v4:   "192.0.2.1 5m0s",
		},
		{
			name: "duplicate without timeout wins",
			in:   []string{"192.0.2.1/32 1m", "192.0.2.1/32"},
			v4:   "192.0.2.1",
		},
		{
			name: "neighbours with the same timeout join",
			in:   []string{"192.0.2.0/25", "192.0.2.128/25", "192.0.3.0/24"},
			v4:   "192.0.2.0-192.0.3.255",
		},
		{
			name: "neighbours with different timeouts stay apart",
			in:   []string{"192.0.2.0/25 1m", "192.0.2.128/25 2m"},
			v4:   "192.0.2.0-192.0.2.127 1m0s, 192.0.2.128-192.0.2.255 2m0s",
		},
		{name: "top of the space", in: []string{"255.255.255.255/32"}, v4: "255.255.255.255"},
		{name: "everything", in: []string{"0.0.0.0/0", "192.0.2.1/32 1m"}, v4: "0.0.0.0-255.255.255.255"},
		{
			name: "families apart, mapped is IPv4",
			in:   []string{"2001:db8::/127 30s", "::ffff:192.0.2.1/128", "192.0.2.2/32"},
			v4:   "192.0.2.1-192.0.2.2",
			v6:   "2001:db8::-2001:db8::1 30s",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v4, v6, err := coalesce(entries(tc.in...).Entries)
			if err != nil {
				t.Fatalf("coalesce(%q) error = %v", tc.in, err)
			}
			if got := fmtRanges(v4); got != tc.v4 {
				t.Errorf("coalesce(%q) IPv4 = %q; want %q", tc.in, got, tc.v4)
			}
			if got := fmtRanges(v6); got != tc.v6 {
				t.Errorf("coalesce(%q) IPv6 = %q; want %q", tc.in, got, tc.v6)
			}
		})
	}
}

func TestCoalesceRejects(t *testing.T) {
	t.Parallel()
	for _, e := range []Entry{
		{},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Timeout: -time.Second},
		{Prefix: netip.MustParsePrefix("::ffff:0:0/95")},
	} {
		if _, _, err := coalesce([]Entry{e}); err == nil {
			t.Errorf("coalesce(%+v) = nil error; want an error", e)
		}
	}
}

// TestCoalesceMatchesBruteForce checks, for random entries in a small
// space, that every address is covered exactly as long as the longest
// entry covering it says, and that ranges are sorted, disjoint and joined.
func TestCoalesceMatchesBruteForce(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	timeouts := []time.Duration{0, time.Minute, 2 * time.Minute, 5 * time.Minute}
	for iter := range 500 {
		var in []Entry
		for range 1 + rng.IntN(8) {
			bits := 24 + rng.IntN(9)
			a := netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))})
			in = append(in, Entry{Prefix: netip.PrefixFrom(a, bits), Timeout: timeouts[rng.IntN(len(timeouts))]})
		}
		v4, _, err := coalesce(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(v4); i++ {
			prev, cur := v4[i-1], v4[i]
			if !prev.last.Less(cur.first) {
				t.Fatalf("iter %d: ranges overlap or are unsorted: %s", iter, fmtRanges(v4))
			}
			if prev.last.Next() == cur.first && prev.timeout == cur.timeout {
				t.Fatalf("iter %d: neighbours not joined: %s", iter, fmtRanges(v4))
			}
		}
		for b := range 256 {
			a := netip.AddrFrom4([4]byte{192, 0, 2, byte(b)})
			want, covered := time.Duration(-1), false
			for _, e := range in {
				if e.Prefix.Contains(a) {
					covered = true
					if e.Timeout == 0 || want == 0 {
						want = 0
					} else {
						want = max(want, e.Timeout)
					}
				}
			}
			got, found := time.Duration(-1), false
			for _, r := range v4 {
				if !a.Less(r.first) && !r.last.Less(a) {
					got, found = r.timeout, true
				}
			}
			if found != covered || (covered && got != want) {
				t.Fatalf("iter %d: %s: covered=%v timeout=%v; want covered=%v timeout=%v\nin: %v\nout: %s",
					iter, a, found, got, covered, want, in, fmtRanges(v4))
			}
			if rangesContain(v4, a) != covered {
				t.Fatalf("iter %d: rangesContain(%s) = %v; want %v", iter, a, !covered, covered)
			}
		}
	}
}

func TestLastAddr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.0/24":    "192.0.2.255",
		"192.0.2.0/23":    "192.0.3.255",
		"192.0.2.7/32":    "192.0.2.7",
		"0.0.0.0/0":       "255.255.255.255",
		"2001:db8::/32":   "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
		"2001:db8::/127":  "2001:db8::1",
		"2001:db8::1/128": "2001:db8::1",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s; want %s", in, got, want)
		}
	}
}

// entries builds targets from "prefix [timeout]" strings.
func entries(specs ...string) Targets {
	var t Targets
	for _, s := range specs {
		p, timeout, _ := strings.Cut(s, " ")
		e := Entry{Prefix: netip.MustParsePrefix(p)}
		if timeout != "" {
			d, err := time.ParseDuration(timeout)
			if err != nil {
				panic(fmt.Sprintf("entries(%q): %v", s, err))
			}
			e.Timeout = d
		}
		t.Entries = append(t.Entries, e)
	}
	return t
}
