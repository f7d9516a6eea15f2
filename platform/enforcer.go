// Package platform enforces a lock on the device: it blocks outbound
// connections to LLM destinations with the operating system's own firewall
// (nftables and eBPF on Linux, a pf anchor on macOS, WFP on Windows), and
// turns a lock's policy — the maintained list of LLM domains plus an
// organization's own domains and networks — into the addresses to block,
// resolved as the device itself resolves them and kept fresh by their TTLs.
package platform

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// ErrNotSupported is returned (wrapped, with the feature's name) when this
// OS or kernel cannot enforce in the way asked.
var ErrNotSupported = errors.New("not supported")

// Targets are the resolved destinations to block.
type Targets struct {
	Entries []Entry
}

// Entry is one address or network to block.
type Entry struct {
	// Prefix is an IPv4 or IPv6 address (/32, /128) or network.
	Prefix netip.Prefix
	// Timeout is how long the entry stays in force unless refreshed; zero
	// means until removed (static CIDRs). Entries from DNS carry their TTL
	// (with a floor) so that stale addresses age out by themselves.
	Timeout time.Duration
}

// Enforcer blocks and unblocks LLM destinations on this device.
type Enforcer interface {
	// Name names the mechanism, e.g. "nftables".
	Name() string
	// Apply puts the block in force for exactly these targets, replacing
	// whatever an earlier Apply put in force, in one atomic change.
	Apply(ctx context.Context, t Targets) error
	// Remove takes the block away entirely. Removing what is not there is no error.
	Remove(ctx context.Context) error
	// Active reports whether the block is in force as last applied (false
	// if someone removed it behind our back).
	Active(ctx context.Context) (bool, error)
	// Close releases resources without changing what is in force.
	Close() error
}
