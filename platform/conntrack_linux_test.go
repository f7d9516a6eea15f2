//go:build linux

package platform

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// flowNet is a testNet with a FlowMonitor on the device tracking
// 10.77.0.2 and fd77::2 (10.77.0.3 plays a destination that is not an
// LLM), conntrack timeouts shortened so that finished connections are
// forgotten (and reported) within seconds, and nftables counters that
// count the same packets independently.
type flowNet struct {
	*testNet
	mon   *FlowMonitor
	mu    sync.Mutex
	flows []Flow
	asked map[netip.Addr]bool // what Track was asked about
	added chan struct{}
}

var trackedAddrs = []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("fd77::2")}

func newFlowNet(t *testing.T) *flowNet {
	t.Helper()
	n := &flowNet{testNet: newTestNet(t), added: make(chan struct{}, 64), asked: map[netip.Addr]bool{}}
	mon, err := NewFlowMonitor(FlowMonitorOptions{
		NetNS: n.devPath,
		Track: func(a netip.Addr) bool {
			n.mu.Lock()
			n.asked[a] = true
			n.mu.Unlock()
			for _, x := range trackedAddrs {
				if a == x {
					return true
				}
			}
			return false
		},
	})
	if err != nil {
		t.Fatalf("NewFlowMonitor: %v", err)
	}
	for _, s := range []string{"nf_conntrack_tcp_timeout_time_wait", "nf_conntrack_tcp_timeout_close", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"} {
		if err := writeSysctlIn(n.devPath, "net/netfilter/"+s, "1"); err != nil {
			t.Fatal(err)
		}
	}
	n.mon = mon
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mon.Run(ctx, func(f Flow) {
			n.mu.Lock()
			n.flows = append(n.flows, f)
			n.mu.Unlock()
			n.added <- struct{}{}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("FlowMonitor.Run = %v", err)
		}
		if err := mon.Close(); err != nil {
			t.Errorf("FlowMonitor.Close = %v", err)
		}
		if out := nft(t, n.dev, "list", "tables"); strings.Contains(out, nftFlowTable) {
			t.Errorf("table %s left after Close:\n%s", nftFlowTable, out)
		}
	})
	return n
}

// count adds nftables counters for a destination to the device: the
// independent measure of the bytes conntrack should report.
func (n *flowNet) count(t *testing.T, name, family, addr, proto string, port int) {
	t.Helper()
	p := strconv.Itoa(port)
	ruleset := "table inet tkcount_" + name + " {\n" +
		" chain out { type filter hook output priority 0; " + family + " daddr " + addr + " " + proto + " dport " + p + " counter; }\n" +
		" chain in { type filter hook input priority 0; " + family + " saddr " + addr + " " + proto + " sport " + p + " counter; }\n}\n"
	f := filepath.Join(t.TempDir(), "count.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	nft(t, n.dev, "-f", f)
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// counted returns the bytes the counters of count saw out and in.
func (n *flowNet) counted(t *testing.T, name string) (out, in uint64) {
	t.Helper()
	got := counterRE.FindAllStringSubmatch(nft(t, n.dev, "list", "table", "inet", "tkcount_"+name), -1)
	if len(got) != 2 {
		t.Fatalf("counters of %s: %q", name, got)
	}
	out, _ = strconv.ParseUint(got[0][2], 10, 64)
	in, _ = strconv.ParseUint(got[1][2], 10, 64)
	return out, in
}

// waitFlow waits for a flow to remote.
func (n *flowNet) waitFlow(t *testing.T, remote netip.AddrPort, proto string) Flow {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		n.mu.Lock()
		for _, f := range n.flows {
			if f.Remote == remote && f.Protocol == proto {
				n.mu.Unlock()
				return f
			}
		}
		n.mu.Unlock()
		select {
		case <-n.added:
		case <-tick.C:
			kickConntrackGC(t, n.devPath)
		case <-deadline:
			t.Fatalf("no %s flow to %s reported within 30s; got %+v", proto, remote, n.flows)
		}
	}
}

// kickConntrackGC lists the namespace's conntrack table, which makes the
// kernel evict the entries that have timed out at once (with their destroy
// events) instead of at its garbage collector's next round, up to a
// minute away. It changes no counters; it only saves the test the wait.
func kickConntrackGC(t *testing.T, nsPath string) {
	t.Helper()
	f, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | 1 /* IPCTNL_MSG_CT_GET */, Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0},
	}); err != nil {
		t.Fatalf("listing conntrack table: %v", err)
	}
}

// waitAttributed waits until the monitor has attributed the open
// connection from local: connections to LLM services last far longer than
// a test's round trip on a veth pair.
func (n *flowNet) waitAttributed(t *testing.T, local netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range n.mon.Open() {
			if f.Local == local && f.Process != nil {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("connection from %s not attributed within 10s; open: %+v", local, n.mon.Open())
}

// exchange sends size bytes to the echo server at addr and reads them
// back, then closes (after the monitor attributed it, if attributed); it
// returns the local address.
func (n *flowNet) exchange(t *testing.T, network, addr string, size int, attributed bool) netip.AddrPort {
	t.Helper()
	c, err := dial(n.devPath, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	if network == "udp" {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, size+1)
		if k, err := c.Read(buf); err != nil || k != size {
			t.Fatalf("udp echo: read %d, %v; want %d", k, err, size)
		}
		if attributed {
			n.waitAttributed(t, local)
		}
	} else {
		go func() { _, _ = c.Write(payload) }()
		if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if attributed {
			n.waitAttributed(t, local)
		}
	}
	return local
}

func TestFlowMonitorReportsTrackedConnections(t *testing.T) {
	t.Parallel()
	n := newFlowNet(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, network, family, addr string
		port, size                  int
	}{
		{"tcp4", "tcp", "ip", "10.77.0.2", 8080, 300_000},
		{"tcp6", "tcp", "ip6", "fd77::2", 8080, 70_001},
		{"udp4", "udp", "ip", "10.77.0.2", 8081, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.count(t, tc.name, tc.family, tc.addr, tc.network, tc.port)
			remote := netip.AddrPortFrom(netip.MustParseAddr(tc.addr), uint16(tc.port))
			before := time.Now()
			local := n.exchange(t, tc.network, remote.String(), tc.size, true)
			after := time.Now()
			f := n.waitFlow(t, remote, tc.network)
			out, in := n.counted(t, tc.name)
			if f.Local != local {
				t.Errorf("flow local = %s; want %s", f.Local, local)
			}
			// Conntrack counts IP bytes: exactly what the counters on the
			// same packets saw, and at least the payload plus headers.
			if f.BytesSent != out || f.BytesReceived != in {
				t.Errorf("flow bytes sent/received = %d/%d; want %d/%d (nftables counters)", f.BytesSent, f.BytesReceived, out, in)
			}
			minHeader := uint64(28) // IPv4 + UDP
			if tc.network == "tcp" {
				minHeader = 40
			}
			if f.BytesSent < uint64(tc.size)+minHeader*f.PacketsSent || f.BytesReceived < uint64(tc.size)+minHeader*f.PacketsReceived {
				t.Errorf("flow bytes sent/received = %d/%d in %d/%d packets; want at least the %d payload bytes plus headers",
					f.BytesSent, f.BytesReceived, f.PacketsSent, f.PacketsReceived, tc.size)
			}
			if f.Start.Before(before.Add(-time.Second)) || f.Start.After(after) || f.End.Before(f.Start) {
				t.Errorf("flow start, end = %s, %s; want start within [%s, %s], end after start", f.Start, f.End, before, after)
			}
			p := f.Process
			if p == nil {
				t.Fatal("flow has no process")
			}
			if p.PID != os.Getpid() || p.UID != os.Getuid() || p.Path != exe || p.Name != strings.TrimSpace(string(comm)) {
				t.Errorf("flow process = %+v; want pid %d, uid %d, path %s, name %s", *p, os.Getpid(), os.Getuid(), exe, comm)
			}
		})
	}
	// A destination that is not tracked is not reported.
	n.count(t, "untracked", "ip", "10.77.0.3", "tcp", 8080)
	n.exchange(t, "tcp", "10.77.0.3:8080", 100, false)
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.asked[netip.MustParseAddr("10.77.0.3")] {
		t.Error("the monitor never saw the connection to the untracked destination; the test proves nothing")
	}
	for _, f := range n.flows {
		if f.Remote.Addr() == netip.MustParseAddr("10.77.0.3") {
			t.Errorf("untracked destination reported: %+v", f)
		}
	}
}

func TestFlowMonitorBadNamespace(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	if _, err := NewFlowMonitor(FlowMonitorOptions{NetNS: "/nonexistent/netns"}); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("NewFlowMonitor(missing netns) = %v; want an error that is not ErrNotSupported", err)
	}
}
