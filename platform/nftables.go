package platform

import (
	"log/slog"
	"time"
)

// NftablesOptions configure the nftables enforcer (Linux only; elsewhere
// NewNftables returns ErrNotSupported).
type NftablesOptions struct {
	// NetNS is the path of the network namespace to enforce in, such as
	// /run/netns/NAME or /proc/PID/ns/net; empty means the namespace of
	// the calling process.
	NetNS string
	// Logger receives what the enforcer does; nil discards.
	Logger *slog.Logger
	// Clock dates applied entries (to tell expired ones from removed
	// ones); nil means the system clock. The kernel ages entries by its
	// own clock, so a fake one only suits tests that never reach expiry.
	Clock Clock
	// KeepSockets leaves connections that were open before Apply alone.
	// By default Apply aborts the device's TCP connections and connected
	// UDP sockets to blocked addresses (SOCK_DESTROY, as `ss -K` does), so
	// that a program waiting to read fails at once instead of hanging
	// until its own timeout; the rules alone cut such a connection only
	// when it next sends.
	KeepSockets bool
	// WatchInterval is how often Watch re-checks Active in case a change
	// escaped the event monitor; default 500ms, negative disables.
	WatchInterval time.Duration
}

// NftablesCounters are the packets and bytes the block has rejected, per
// chain, since the last Apply (which re-creates the rules).
type NftablesCounters struct {
	// Output counts this device's packets to blocked addresses.
	Output Counter
	// Input counts packets from blocked addresses to this device.
	Input Counter
	// Forward counts routed packets (containers, VMs) to or from them.
	Forward Counter
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64
	Bytes   uint64
}
