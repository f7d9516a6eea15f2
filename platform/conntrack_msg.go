package platform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// ctnetlink message and attribute numbers (linux/netfilter/nfnetlink.h,
// nfnetlink_conntrack.h, nf_conntrack_tcp.h).
const (
	nfnlSubsysCTNetlink = 1
	ctMsgNew            = 0 // IPCTNL_MSG_CT_NEW: new and update events
	ctMsgDelete         = 2 // IPCTNL_MSG_CT_DELETE: destroy events

	ctaTupleOrig     = 1
	ctaProtoinfo     = 4
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaTimestamp     = 20

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaProtoinfoTCP      = 1
	ctaProtoinfoTCPState = 1

	ctaCountersPackets   = 1
	ctaCountersBytes     = 2
	ctaCountersPackets32 = 3
	ctaCountersBytes32   = 4

	ctaTimestampStart = 1
	ctaTimestampStop  = 2

	// tcp_conntrack states that mean both sides are done.
	tcpCTTimeWait = 7
	tcpCTClose    = 8

	nfgenmsgLen = 4
)

// ctEventKind is what happened to a conntrack entry.
type ctEventKind uint8

const (
	ctEventNew ctEventKind = iota + 1
	ctEventUpdate
	ctEventDestroy
)

// ctEvent is a decoded ctnetlink event: the parts of it a flow needs.
type ctEvent struct {
	kind     ctEventKind
	id       uint32
	hasID    bool
	proto    uint8
	src, dst netip.AddrPort // the original direction: src opened it
	// tcpState is the TCP conntrack state, when the event carries it.
	tcpState    uint8
	hasTCPState bool
	// Counters from the original and reply directions (destroy events,
	// when accounting is on).
	origPackets, origBytes   uint64
	replyPackets, replyBytes uint64
	hasCounters              bool
	// Kernel timestamps, nanoseconds since the epoch (when enabled).
	tsStart, tsStop uint64
}

var errNotConntrack = errors.New("not a conntrack event")

// parseCTEvent decodes one ctnetlink event message. Malformed input gives
// an error, never a panic (FuzzParseCTEvent).
func parseCTEvent(m netlink.Message) (ctEvent, error) {
	var ev ctEvent
	if m.Header.Type>>8 != nfnlSubsysCTNetlink {
		return ev, errNotConntrack
	}
	switch m.Header.Type & 0xff {
	case ctMsgNew:
		if m.Header.Flags&(netlink.Create|netlink.Excl) != 0 {
			ev.kind = ctEventNew
		} else {
			ev.kind = ctEventUpdate
		}
	case ctMsgDelete:
		ev.kind = ctEventDestroy
	default:
		return ev, errNotConntrack
	}
	if len(m.Data) < nfgenmsgLen {
		return ev, errors.New("conntrack event shorter than its header")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[nfgenmsgLen:])
	if err != nil {
		return ev, fmt.Errorf("conntrack event attributes: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	haveTuple := false
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				return parseCTTuple(nad, &ev)
			})
			haveTuple = true
		case ctaID:
			ev.id, ev.hasID = ad.Uint32(), true
		case ctaProtoinfo:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() != ctaProtoinfoTCP {
						continue
					}
					nad.Nested(func(tad *netlink.AttributeDecoder) error {
						for tad.Next() {
							if tad.Type() == ctaProtoinfoTCPState {
								ev.tcpState, ev.hasTCPState = tad.Uint8(), true
							}
						}
						return nil
					})
				}
				return nil
			})
		case ctaCountersOrig, ctaCountersReply:
			var packets, bytes uint64
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case ctaCountersPackets:
						packets = nad.Uint64()
					case ctaCountersBytes:
						bytes = nad.Uint64()
					case ctaCountersPackets32:
						packets = uint64(nad.Uint32())
					case ctaCountersBytes32:
						bytes = uint64(nad.Uint32())
					}
				}
				return nil
			})
			if ad.Type() == ctaCountersOrig {
				ev.origPackets, ev.origBytes = packets, bytes
			} else {
				ev.replyPackets, ev.replyBytes = packets, bytes
			}
			ev.hasCounters = true
		case ctaTimestamp:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case ctaTimestampStart:
						ev.tsStart = nad.Uint64()
					case ctaTimestampStop:
						ev.tsStop = nad.Uint64()
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return ev, fmt.Errorf("conntrack event attributes: %w", err)
	}
	if !haveTuple || !ev.src.IsValid() || !ev.dst.IsValid() {
		return ev, errors.New("conntrack event without an original tuple")
	}
	return ev, nil
}

// parseCTTuple decodes CTA_TUPLE_ORIG into ev.proto, ev.src and ev.dst.
func parseCTTuple(ad *netlink.AttributeDecoder, ev *ctEvent) error {
	var (
		src, dst         netip.Addr
		sport, dport     uint16
		srcErr, dstErr   error
		haveIP, havePort bool
	)
	addr := func(b []byte, n int) (netip.Addr, error) {
		if len(b) != n {
			return netip.Addr{}, fmt.Errorf("address of %d bytes, want %d", len(b), n)
		}
		a, _ := netip.AddrFromSlice(b)
		return a, nil
	}
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case ctaIPv4Src:
						src, srcErr = addr(nad.Bytes(), 4)
					case ctaIPv4Dst:
						dst, dstErr = addr(nad.Bytes(), 4)
					case ctaIPv6Src:
						src, srcErr = addr(nad.Bytes(), 16)
					case ctaIPv6Dst:
						dst, dstErr = addr(nad.Bytes(), 16)
					}
				}
				return errors.Join(srcErr, dstErr)
			})
			haveIP = true
		case ctaTupleProto:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case ctaProtoNum:
						ev.proto = nad.Uint8()
					case ctaProtoSrc:
						sport = nad.Uint16()
					case ctaProtoDst:
						dport = nad.Uint16()
					}
				}
				return nil
			})
			havePort = true
		}
	}
	if !haveIP || !havePort || !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return errors.New("incomplete tuple")
	}
	ev.src = netip.AddrPortFrom(src, sport)
	ev.dst = netip.AddrPortFrom(dst, dport)
	return nil
}
