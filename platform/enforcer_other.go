//go:build !linux

package platform

import (
	"context"
)

// Nftables is the Linux nftables enforcer; on this OS it cannot be made.
type Nftables struct{}

var _ Enforcer = (*Nftables)(nil)

func nftablesUnsupported() error {
	return &UnsupportedFeatureError{Feature: "nftables (Linux only)"}
}

// NewNftables returns an error wrapping ErrNotSupported: nftables is Linux
// only.
func NewNftables(NftablesOptions) (*Nftables, error) { return nil, nftablesUnsupported() }

// ProbeNftables returns an error wrapping ErrNotSupported: nftables is
// Linux only.
func ProbeNftables(NftablesOptions) error { return nftablesUnsupported() }

// Name returns "nftables".
func (*Nftables) Name() string { return "nftables" }

// Apply returns ErrNotSupported.
func (*Nftables) Apply(context.Context, Targets) error { return nftablesUnsupported() }

// Remove returns ErrNotSupported.
func (*Nftables) Remove(context.Context) error { return nftablesUnsupported() }

// Active returns ErrNotSupported.
func (*Nftables) Active(context.Context) (bool, error) { return false, nftablesUnsupported() }

// Counters returns ErrNotSupported.
func (*Nftables) Counters(context.Context) (NftablesCounters, error) {
	return NftablesCounters{}, nftablesUnsupported()
}

// Watch returns ErrNotSupported.
func (*Nftables) Watch(context.Context, func()) error { return nftablesUnsupported() }

// Close does nothing.
func (*Nftables) Close() error { return nil }
