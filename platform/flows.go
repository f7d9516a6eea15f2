package platform

import (
	"log/slog"
	"net/netip"
	"time"
)

// Flow is one finished connection from the device, as the kernel's
// connection tracking accounted for it: who opened it, to where, when,
// and how many bytes went each way.
type Flow struct {
	// Protocol is "tcp" or "udp".
	Protocol string
	// Local and Remote are the device's and the peer's address and port,
	// as the program that connected saw them.
	Local, Remote netip.AddrPort
	// Start is when the connection's first packet left. For connections
	// that began before the monitor (or whose start it missed) it is the
	// kernel's timestamp, or the monitor's own start if the kernel kept
	// none.
	Start time.Time
	// End is when both sides had closed (TCP) or when the kernel forgot
	// the connection (UDP, or TCP that never closed cleanly).
	End time.Time
	// BytesSent and BytesReceived count whole IP packets, headers
	// included, from and to the device (conntrack accounting).
	BytesSent, BytesReceived uint64
	// PacketsSent and PacketsReceived count the packets the bytes came in
	// (with offloads, one "packet" may be several on the wire).
	PacketsSent, PacketsReceived uint64
	// Process is who opened the connection; nil if nobody could be found.
	Process *Process
}

// Process is the program behind a connection, as far as it could be told.
type Process struct {
	// PID is 0 when only the socket's owner is known (the program had
	// closed it, or exited, before it could be found).
	PID int
	// UID owns the socket; -1 when unknown.
	UID int
	// Name is the kernel's command name (comm), Path the executable.
	Name, Path string
}

// FlowMonitorOptions configure a FlowMonitor.
type FlowMonitorOptions struct {
	// NetNS is the path of the network namespace to watch; empty means
	// the caller's.
	NetNS string
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock dates connection starts and ends; nil means the system clock.
	Clock Clock
	// Track says whether connections to a remote address are worth
	// reporting (the LLM destinations). It is called on the monitor's
	// goroutine for every new connection and must be fast. Nil tracks
	// nothing.
	Track func(remote netip.Addr) bool
}
