package platform

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
)

// ctMessage encodes a ctnetlink event the way the kernel does.
func ctMessage(t testing.TB, msgType uint16, flags netlink.HeaderFlags, src, dst netip.AddrPort, proto uint8, extra func(ae *netlink.AttributeEncoder)) netlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
			if src.Addr().Is4() {
				s, d := src.Addr().As4(), dst.Addr().As4()
				ae.Bytes(ctaIPv4Src, s[:])
				ae.Bytes(ctaIPv4Dst, d[:])
			} else {
				s, d := src.Addr().As16(), dst.Addr().As16()
				ae.Bytes(ctaIPv6Src, s[:])
				ae.Bytes(ctaIPv6Dst, d[:])
			}
			return nil
		})
		ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoNum, proto)
			ae.Uint16(ctaProtoSrc, src.Port())
			ae.Uint16(ctaProtoDst, dst.Port())
			return nil
		})
		return nil
	})
	ae.Uint32(ctaID, 0xdeadbeef)
	if extra != nil {
		extra(ae)
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCTNetlink<<8 | msgType), Flags: flags},
		Data:   append([]byte{2, 0, 0, 0}, b...),
	}
}

func destroyExtras(ae *netlink.AttributeEncoder) {
	ae.Nested(ctaCountersOrig, func(ae *netlink.AttributeEncoder) error {
		ae.Uint64(ctaCountersPackets, 7)
		ae.Uint64(ctaCountersBytes, 1234)
		return nil
	})
	ae.Nested(ctaCountersReply, func(ae *netlink.AttributeEncoder) error {
		ae.Uint64(ctaCountersPackets, 9)
		ae.Uint64(ctaCountersBytes, 56789)
		return nil
	})
	ae.Nested(ctaTimestamp, func(ae *netlink.AttributeEncoder) error {
		ae.Uint64(ctaTimestampStart, 1_700_000_000_000_000_000)
		ae.Uint64(ctaTimestampStop, 1_700_000_001_000_000_000)
		return nil
	})
	ae.Nested(ctaProtoinfo, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaProtoinfoTCP, func(ae *netlink.AttributeEncoder) error {
			ae.Uint8(ctaProtoinfoTCPState, tcpCTTimeWait)
			return nil
		})
		return nil
	})
}

var (
	testSrc = netip.MustParseAddrPort("10.0.0.1:40000")
	testDst = netip.MustParseAddrPort("192.0.2.7:443")
)

func TestParseCTEvent(t *testing.T) {
	t.Parallel()
	ev, err := parseCTEvent(ctMessage(t, ctMsgDelete, 0, testSrc, testDst, 6, destroyExtras))
	if err != nil {
		t.Fatalf("parseCTEvent(destroy) = %v", err)
	}
	want := ctEvent{
		kind: ctEventDestroy, id: 0xdeadbeef, hasID: true, proto: 6, src: testSrc, dst: testDst,
		tcpState: tcpCTTimeWait, hasTCPState: true,
		origPackets: 7, origBytes: 1234, replyPackets: 9, replyBytes: 56789, hasCounters: true,
		tsStart: 1_700_000_000_000_000_000, tsStop: 1_700_000_001_000_000_000,
	}
	if ev != want {
		t.Errorf("parseCTEvent(destroy) = %+v; want %+v", ev, want)
	}
	src6, dst6 := netip.MustParseAddrPort("[fd00::1]:5000"), netip.MustParseAddrPort("[2001:db8::7]:443")
	for _, tc := range []struct {
		name  string
		msg   netlink.Message
		kind  ctEventKind
		proto uint8
	}{
		{"new", ctMessage(t, ctMsgNew, netlink.Create|netlink.Excl, src6, dst6, 17, nil), ctEventNew, 17},
		{"update", ctMessage(t, ctMsgNew, 0, src6, dst6, 6, nil), ctEventUpdate, 6},
	} {
		ev, err := parseCTEvent(tc.msg)
		if err != nil || ev.kind != tc.kind || ev.src != src6 || ev.dst != dst6 || ev.proto != tc.proto || ev.hasCounters {
			t.Errorf("parseCTEvent(%s) = %+v, %v; want kind %d from %s to %s", tc.name, ev, err, tc.kind, src6, dst6)
		}
	}
	bad := []netlink.Message{
		{Header: netlink.Header{Type: 2<<8 | ctMsgNew}, Data: []byte{2, 0, 0, 0}},          // another subsystem
		{Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctMsgNew}, Data: []byte{2}}, // short
		{Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctMsgNew}, Data: []byte{2, 0, 0, 0}},
		{Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctMsgNew}, Data: []byte{2, 0, 0, 0, 8, 0, 1, 0, 1, 2}},
	}
	for i, m := range bad {
		if ev, err := parseCTEvent(m); err == nil {
			t.Errorf("parseCTEvent(bad %d) = %+v; want an error", i, ev)
		}
	}
}

func FuzzParseCTEvent(f *testing.F) {
	for _, m := range []netlink.Message{
		ctMessage(f, ctMsgDelete, 0, testSrc, testDst, 6, destroyExtras),
		ctMessage(f, ctMsgNew, netlink.Create|netlink.Excl, testSrc, testDst, 17, nil),
		ctMessage(f, ctMsgNew, 0, netip.MustParseAddrPort("[fd00::1]:5000"), netip.MustParseAddrPort("[2001:db8::7]:443"), 6, destroyExtras),
	} {
		f.Add(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
	}
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		ev, err := parseCTEvent(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)}, Data: data})
		if err != nil {
			return
		}
		if !ev.src.IsValid() || !ev.dst.IsValid() || ev.src.Addr().Is4() != ev.dst.Addr().Is4() {
			t.Errorf("parseCTEvent accepted an event with tuple %s -> %s", ev.src, ev.dst)
		}
		if ev.kind < ctEventNew || ev.kind > ctEventDestroy {
			t.Errorf("parseCTEvent accepted kind %d", ev.kind)
		}
	})
}
