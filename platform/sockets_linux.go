//go:build linux

package platform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sock_diag message types and sizes (linux/sock_diag.h, linux/inet_diag.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	sockDestroy      = 21 // SOCK_DESTROY
	inetDiagSockID   = 48 // sizeof(struct inet_diag_sockid)
	inetDiagReqV2    = 8 + inetDiagSockID
	inetDiagMsgMin   = 4 + inetDiagSockID
)

// TCP states (include/net/tcp_states.h) of sockets worth aborting: those
// that can still carry data. Listening and time-wait sockets cannot.
const abortableTCPStates = 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<8 | 1<<9 | 1<<11 // ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING

// connectedUDP is the state of a connected UDP socket.
const connectedUDP = 1 << 1 // TCP_ESTABLISHED

// abortSockets aborts the namespace's TCP connections and connected UDP
// sockets whose peer is in the ranges, as `ss -K` does: the owner's next
// (or pending) read or write fails with ECONNABORTED. It returns how many
// it aborted. Sockets that close meanwhile are not an error.
func abortSockets(nsFd int, v4, v6 []addrRange) (int, error) {
	if len(v4) == 0 && len(v6) == 0 {
		return 0, nil
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return 0, fmt.Errorf("opening sock_diag netlink connection: %w", err)
	}
	defer c.Close()
	blocked := func(a netip.Addr) bool {
		a = a.Unmap()
		if a.Is4() {
			return rangesContain(v4, a)
		}
		return rangesContain(v6, a)
	}
	var (
		aborted int
		errs    []error
	)
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, p := range []struct {
			proto  uint8
			states uint32
		}{{unix.IPPROTO_TCP, abortableTCPStates}, {unix.IPPROTO_UDP, connectedUDP}} {
			msgs, err := c.Execute(netlink.Message{
				Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
				Data:   inetDiagRequest(family, p.proto, p.states, nil),
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("listing sockets (family %d, protocol %d): %w", family, p.proto, err))
				continue
			}
			for _, m := range msgs {
				if len(m.Data) < inetDiagMsgMin {
					continue
				}
				state := m.Data[1]
				id := m.Data[4 : 4+inetDiagSockID]
				if p.states&(1<<state) == 0 {
					continue
				}
				dst := sockIDAddr(family, id[20:36])
				if !dst.IsValid() || !blocked(dst) {
					continue
				}
				_, err := c.Execute(netlink.Message{
					Header: netlink.Header{Type: sockDestroy, Flags: netlink.Request | netlink.Acknowledge},
					Data:   inetDiagRequest(family, p.proto, 0xffffffff, id),
				})
				switch {
				case err == nil:
					aborted++
				case errors.Is(err, unix.ENOENT):
					// Closed meanwhile.
				case errors.Is(err, unix.EOPNOTSUPP):
					return aborted, &UnsupportedFeatureError{Feature: "socket destruction (SOCK_DESTROY)", MinimumKernel: "Linux 4.5 with CONFIG_INET_DIAG_DESTROY", Err: err}
				default:
					errs = append(errs, fmt.Errorf("aborting socket to %s: %w", dst, err))
				}
			}
		}
	}
	return aborted, errors.Join(errs...)
}

// inetDiagRequest encodes a struct inet_diag_req_v2; id, if given, is a
// struct inet_diag_sockid as a dump returned it.
func inetDiagRequest(family, proto uint8, states uint32, id []byte) []byte {
	b := make([]byte, inetDiagReqV2)
	b[0], b[1] = family, proto
	binary.NativeEndian.PutUint32(b[4:8], states)
	if id != nil {
		copy(b[8:], id)
	} else {
		// INET_DIAG_NOCOOKIE: match any socket.
		binary.NativeEndian.PutUint32(b[8+40:], ^uint32(0))
		binary.NativeEndian.PutUint32(b[8+44:], ^uint32(0))
	}
	return b
}

// sockIDAddr reads an address field of a struct inet_diag_sockid.
func sockIDAddr(family uint8, b []byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}
