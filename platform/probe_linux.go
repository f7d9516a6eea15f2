//go:build linux

package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

var probes struct {
	mu      sync.Mutex
	results map[string]error // by namespace path
}

var probeSeq atomic.Uint64

// ProbeNftables reports whether the kernel can run the nftables enforcer
// in the namespace opts names: nil, or an *UnsupportedFeatureError
// (matching ErrNotSupported) naming the missing feature. It tries what
// Apply does — an inet table, interval sets with element timeouts, reject
// rules on the output, input and forward hooks — in a throwaway table
// that it deletes again. Definite answers are cached per namespace; an
// error that says nothing about the kernel (no permission, no memory) is
// returned without ErrNotSupported and not cached.
func ProbeNftables(opts NftablesOptions) error {
	probes.mu.Lock()
	defer probes.mu.Unlock()
	if err, ok := probes.results[opts.NetNS]; ok {
		return err
	}
	err := probeNftables(opts.NetNS)
	var unsupported *UnsupportedFeatureError
	if err == nil || errors.As(err, &unsupported) {
		if probes.results == nil {
			probes.results = map[string]error{}
		}
		probes.results[opts.NetNS] = err
	}
	return err
}

func probeNftables(nsPath string) error {
	fd := 0
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			return fmt.Errorf("probing nftables: opening network namespace: %w", err)
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return fmt.Errorf("probing nftables: %w", err)
	}
	table := &nftables.Table{
		Name:   fmt.Sprintf("toktra_probe_%d_%d", os.Getpid(), probeSeq.Add(1)),
		Family: nftables.TableFamilyINet,
	}
	stage := func(feature, minKernel string, build func() error) error {
		if err := build(); err != nil {
			return fmt.Errorf("probing %s: %w", feature, err)
		}
		err := c.Flush()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOMEM),
			errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("probing %s: %w", feature, err)
		default:
			return &UnsupportedFeatureError{Feature: feature, MinimumKernel: minKernel, Err: err}
		}
	}
	if err := stage("nftables inet tables", "Linux 3.14", func() error {
		c.AddTable(table)
		return nil
	}); err != nil {
		return err
	}
	defer func() {
		c.AddTable(table)
		c.DelTable(table)
		_ = c.Flush()
	}()

	s4, s6 := nftSets(table)
	if err := stage("nftables interval sets with element timeouts", "Linux 4.18", func() error {
		v4, v6, err := coalesce([]Entry{
			{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Timeout: time.Second},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24")},
			{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: time.Second},
		})
		if err != nil {
			return err
		}
		if err := c.AddSet(s4, setElements(v4)); err != nil {
			return err
		}
		return c.AddSet(s6, setElements(v6))
	}); err != nil {
		return err
	}
	return stage("nftables reject rules on output, input and forward hooks", "Linux 3.14", func() error {
		for _, ch := range nftChains(table) {
			c.AddChain(ch)
			for _, exprs := range chainRules(ch.Name, s4, s6) {
				c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs})
			}
		}
		return nil
	})
}
