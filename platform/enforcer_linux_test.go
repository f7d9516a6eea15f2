//go:build linux

package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

// fastFail is how soon a blocked connection must fail: a reject answers at
// once, where a drop would leave the caller waiting for its timeout.
const fastFail = time.Second

// setup returns a test network and an enforcer in its device namespace.
func setup(t *testing.T, opts NftablesOptions) (*testNet, *Nftables) {
	t.Helper()
	n := newTestNet(t)
	opts.NetNS = n.devPath
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	e, err := NewNftables(opts)
	if err != nil {
		t.Fatalf("NewNftables: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return n, e
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustApply(t *testing.T, e *Nftables, targets Targets) {
	t.Helper()
	if err := e.Apply(context.Background(), targets); err != nil {
		t.Fatalf("Apply(%d entries) = %v", len(targets.Entries), err)
	}
}

func wantActive(t *testing.T, e *Nftables, want bool) {
	t.Helper()
	got, err := e.Active(context.Background())
	if err != nil {
		t.Fatalf("Active() error = %v", err)
	}
	if got != want {
		t.Fatalf("Active() = %v; want %v", got, want)
	}
}

func wantReachable(t *testing.T, n *testNet, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if _, err := n.echo(a); err != nil {
			t.Errorf("echo via %s: %v; want reachable", a, err)
		}
	}
}

// wantRefused checks that connecting fails fast with ECONNREFUSED, i.e.
// the SYN was answered with a TCP reset rather than dropped.
func wantRefused(t *testing.T, n *testNet, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		took, err := n.echo(a)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("echo via %s: err = %v; want ECONNREFUSED", a, err)
			continue
		}
		if took > fastFail {
			t.Errorf("echo via %s: refused after %v; want under %v", a, took, fastFail)
		}
	}
}

func TestNftablesBlocksNewConnections(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	ctx := context.Background()

	wantReachable(t, n, "10.77.0.2", "fd77::2")
	wantActive(t, e, false)

	mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
	wantActive(t, e, true)
	wantRefused(t, n, "10.77.0.2", "fd77::2")
	wantReachable(t, n, "10.77.0.3", "fd77::3")

	cnt, err := e.Counters(ctx)
	if err != nil {
		t.Fatalf("Counters() = %v", err)
	}
	if cnt.Output.Packets < 2 {
		t.Errorf("Counters().Output.Packets = %d; want at least 2 (one SYN per family)", cnt.Output.Packets)
	}

	// nft, reading the kernel's state on its own, sees what we meant.
	listing := nft(t, n.dev, "list", "table", "inet", "toktra")
	for _, want := range []string{
		"flags interval,timeout",
		"hook output priority filter - 1; policy accept;",
		"hook input priority filter - 1; policy accept;",
		"hook forward priority filter - 1; policy accept;",
		"ip daddr @llm4",
		"ip6 daddr @llm6",
		"ip saddr @llm4",
		"reject with tcp reset",
		"reject with icmp admin-prohibited",
		"reject with icmpv6 admin-prohibited",
		"10.77.0.2",
		"fd77::2",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft list table inet toktra lacks %q:\n%s", want, listing)
		}
	}

	if err := e.Remove(ctx); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	wantActive(t, e, false)
	wantReachable(t, n, "10.77.0.2", "fd77::2")
	if err := e.Remove(ctx); err != nil {
		t.Fatalf("second Remove() = %v; want nil", err)
	}
	if out := nft(t, n.dev, "list", "tables"); strings.Contains(out, "toktra") {
		t.Errorf("after Remove, nft list tables = %q; want no toktra", out)
	}
}

func TestNftablesUDPAdminProhibited(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
	for _, tc := range []struct {
		addr string
		// The rejected datagram never leaves: the send fails with EPERM
		// (netfilter's verdict), and the ICMP error that reject sent back
		// then fails the socket's next call with the errno Linux maps
		// "administratively prohibited" to.
		icmpErr syscall.Errno
	}{
		{"10.77.0.2", syscall.EHOSTUNREACH},
		{"fd77::2", syscall.EACCES},
	} {
		c, err := dial(n.devPath, "udp", net.JoinHostPort(tc.addr, udpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(fastFail))
		if _, err := c.Write([]byte("ping")); !errors.Is(err, syscall.EPERM) {
			t.Errorf("UDP write to %s: err = %v; want EPERM", tc.addr, err)
		}
		if _, err := c.Read(make([]byte, 16)); !errors.Is(err, tc.icmpErr) {
			t.Errorf("UDP read from %s after rejected write: err = %v; want %v (ICMP admin-prohibited)", tc.addr, err, tc.icmpErr)
		}
	}
	// Unblocked UDP still works.
	c, err := dial(n.devPath, "udp", net.JoinHostPort("10.77.0.3", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Errorf("UDP echo via 10.77.0.3: %v; want reachable", err)
	}
}

func TestNftablesCIDRsAndTimeouts(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	applied := time.Now()
	mustApply(t, e, entries(
		"10.77.0.0/30",          // .2 and .3, not .4
		"fd77::/120",            // fd77::2, ::3, not fd77::1:2
		"10.77.0.3/32 10s",      // inside the CIDR: must not cut it short
		"10.77.0.200/32 1500ms", // expires by itself
		"fd77::1:2/128 1500ms",
	))
	wantActive(t, e, true)
	wantRefused(t, n, "10.77.0.2", "10.77.0.3", "fd77::2", "fd77::3", "10.77.0.200", "fd77::1:2")
	wantReachable(t, n, "10.77.0.4")

	// The kernel ages the timed entries out; nothing else changes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err4 := n.echo("10.77.0.200")
		_, err6 := n.echo("fd77::1:2")
		if err4 == nil && err6 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed entries still blocked after 10s: %v, %v", err4, err6)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(applied); took < time.Second {
		t.Errorf("1500ms entries expired after %v", took)
	}
	wantRefused(t, n, "10.77.0.2", "10.77.0.3", "fd77::2")
	wantActive(t, e, true) // expiry is not tampering
}

func TestNftablesApplyReplaces(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
	wantRefused(t, n, "10.77.0.2", "fd77::2")
	mustApply(t, e, entries("10.77.0.3/32", "fd77::3/128"))
	wantReachable(t, n, "10.77.0.2", "fd77::2")
	wantRefused(t, n, "10.77.0.3", "fd77::3")
	mustApply(t, e, entries("10.77.0.3/32", "fd77::3/128")) // idempotent
	wantActive(t, e, true)
	wantRefused(t, n, "10.77.0.3", "fd77::3")
	mustApply(t, e, Targets{})
	wantActive(t, e, true)
	wantReachable(t, n, "10.77.0.2", "10.77.0.3", "fd77::3")
}

// TestNftablesEstablished checks that a connection opened before the lock
// stops working promptly.
func TestNftablesEstablished(t *testing.T) {
	t.Parallel()

	// By default Apply aborts the connection, so even a reader waiting
	// on a silent server fails at once.
	t.Run("aborted", func(t *testing.T) {
		t.Parallel()
		n, e := setup(t, NftablesOptions{})
		for _, addr := range []string{"10.77.0.2", "fd77::2"} {
			mustApply(t, e, Targets{})
			c, err := dial(n.devPath, "tcp", net.JoinHostPort(addr, tcpPort))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := roundTrip(c); err != nil {
				t.Fatal(err)
			}
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				readErr <- err
			}()
			mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
			select {
			case err := <-readErr:
				if !errors.Is(err, syscall.ECONNABORTED) {
					t.Errorf("blocked read from %s: err = %v; want ECONNABORTED", addr, err)
				}
			case <-time.After(fastFail):
				t.Errorf("read from %s still blocked %v after Apply", addr, fastFail)
			}
		}
	})

	// With KeepSockets the rules alone cut the connection, in both
	// directions: our next segment is answered with a reset (output), and
	// the server's next segment earns the server a reset (input).
	t.Run("rules only", func(t *testing.T) {
		t.Parallel()
		n, e := setup(t, NftablesOptions{KeepSockets: true})
		var ln net.Listener
		if err := inNS(n.llmPath, func() (err error) {
			ln, err = net.Listen("tcp", ":9090")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		for _, addr := range []string{"10.77.0.2", "fd77::2"} {
			mustApply(t, e, Targets{})
			client, err := dial(n.devPath, "tcp", net.JoinHostPort(addr, "9090"))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()

			mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))

			// Client sends: its own kernel gets the reset.
			_ = client.SetDeadline(time.Now().Add(fastFail))
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatalf("client write: %v (the reset should come after)", err)
			}
			if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("client read from %s after sending: err = %v; want ECONNRESET", addr, err)
			}

			// Server sends: the device answers with a reset.
			_ = server.SetDeadline(time.Now().Add(fastFail))
			if _, err := server.Write([]byte("y")); err != nil {
				t.Fatalf("server write: %v (the reset should come after)", err)
			}
			if _, err := server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("server %s read after sending to the locked device: err = %v; want ECONNRESET", addr, err)
			}
		}
		cnt, err := e.Counters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cnt.Input.Packets == 0 || cnt.Output.Packets == 0 {
			t.Errorf("Counters() = %+v; want input and output rejects", cnt)
		}
	})
}

// TestNftablesForward checks that routed traffic (a container or VM behind
// the device) is blocked too.
func TestNftablesForward(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	// guest 10.78.0.2 --- 10.78.0.1 device 10.77.0.1 --- 10.77.0.2 llm
	guest := "tk-g-" + randomID(t)
	addNetNS(t, guest)
	vg, vd := "tkg"+guest[5:], "tkh"+guest[5:]
	run(t, "ip", "link", "add", vg, "netns", guest, "type", "veth", "peer", "name", vd, "netns", n.dev)
	run(t, "ip", "-n", guest, "addr", "add", "10.78.0.2/24", "dev", vg)
	run(t, "ip", "-n", n.dev, "addr", "add", "10.78.0.1/24", "dev", vd)
	run(t, "ip", "-n", guest, "link", "set", vg, "up")
	run(t, "ip", "-n", n.dev, "link", "set", vd, "up")
	run(t, "ip", "-n", guest, "route", "add", "default", "via", "10.78.0.1")
	run(t, "ip", "-n", n.llm, "route", "add", "10.78.0.0/24", "via", "10.77.0.1")
	run(t, "ip", "netns", "exec", n.dev, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	guestEcho := func(addr string) (time.Duration, error) {
		start := time.Now()
		c, err := dial("/run/netns/"+guest, "tcp", net.JoinHostPort(addr, tcpPort))
		if err != nil {
			return time.Since(start), err
		}
		defer c.Close()
		return time.Since(start), roundTrip(c)
	}
	if _, err := guestEcho("10.77.0.2"); err != nil {
		t.Fatalf("guest echo before Apply: %v", err)
	}
	mustApply(t, e, entries("10.77.0.2/32"))
	took, err := guestEcho("10.77.0.2")
	if !errors.Is(err, syscall.ECONNREFUSED) || took > fastFail {
		t.Errorf("guest echo via 10.77.0.2 = %v after %v; want ECONNREFUSED within %v", err, took, fastFail)
	}
	if _, err := guestEcho("10.77.0.3"); err != nil {
		t.Errorf("guest echo via 10.77.0.3 = %v; want reachable", err)
	}
	cnt, err := e.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Forward.Packets == 0 {
		t.Errorf("Counters().Forward.Packets = 0; want the guest's SYN")
	}
}

// TestNftablesActiveDetectsTampering changes the block behind the
// enforcer's back in the ways someone might, with nft.
func TestNftablesActiveDetectsTampering(t *testing.T) {
	t.Parallel()
	for _, tamper := range [][]string{
		{"delete", "table", "inet", "toktra"},
		{"flush", "chain", "inet", "toktra", "output"},
		{"delete", "chain", "inet", "toktra", "forward"},
		{"insert", "rule", "inet", "toktra", "output", "accept"},
		{"delete", "element", "inet", "toktra", "llm4", "{ 10.77.0.2 }"},
		{"add", "element", "inet", "toktra", "llm6", "{ fd77::3 }"},
		{"flush", "set", "inet", "toktra", "llm6"},
		{"add", "chain", "inet", "toktra", "sneaky"},
	} {
		t.Run(strings.Join(tamper, " "), func(t *testing.T) {
			t.Parallel()
			n, e := setup(t, NftablesOptions{})
			mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
			wantActive(t, e, true)
			nft(t, n.dev, tamper...)
			wantActive(t, e, false)
			mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
			wantActive(t, e, true)
			wantRefused(t, n, "10.77.0.2", "fd77::2")
		})
	}
}

func TestNftablesWatch(t *testing.T) {
	t.Parallel()
	// Polling off: the monitor alone must notice.
	n, e := setup(t, NftablesOptions{WatchInterval: -1})
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.Watch(ctx, func() { changes <- struct{}{} }); err != nil {
			t.Errorf("Watch() = %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	select {
	case <-changes: // the initial call: the watch is live
	case <-time.After(5 * time.Second):
		t.Fatal("Watch made no initial call")
	}

	// Our own changes are not news.
	mustApply(t, e, entries("10.77.0.2/32"))
	mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
	select {
	case <-changes:
		t.Error("Watch called onChange for the enforcer's own Apply")
	case <-time.After(700 * time.Millisecond):
	}

	// Someone else's are, promptly.
	deleted := time.Now()
	nft(t, n.dev, "delete", "table", "inet", "toktra")
	select {
	case <-changes:
		if took := time.Since(deleted); took > 500*time.Millisecond {
			t.Errorf("onChange %v after the table was deleted; want well under a second", took)
		}
	case <-time.After(fastFail):
		t.Fatal("no onChange within a second of the table being deleted")
	}
	wantActive(t, e, false)

	// A change made through another netlink connection counts too, even
	// from this process.
	mustApply(t, e, entries("10.77.0.2/32", "fd77::2/128"))
	drain(changes)
	other, err := NewNftables(NftablesOptions{NetNS: n.devPath})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(fastFail):
		t.Fatal("no onChange within a second of another enforcer removing the table")
	}
	wantActive(t, e, false)
}

// TestNftablesWatchPolls checks the fallback for changes the monitor
// misses: Watch re-checks Active periodically.
func TestNftablesWatchPolls(t *testing.T) {
	t.Parallel()
	_, e := setup(t, NftablesOptions{WatchInterval: 100 * time.Millisecond})
	mustApply(t, e, entries("10.77.0.2/32"))
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.Watch(ctx, func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	<-changes // initial call
	// Tamper through a connection Watch takes for its own, so the
	// monitor ignores the event and only the periodic check can notice.
	c, err := nftables.New(nftables.WithNetNSFd(e.nsFd()), nftables.WithSockOptions(e.own.record))
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(fastFail):
		t.Fatal("periodic check did not notice the deleted table within a second")
	}
}

func drain(c chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func TestProbeNftables(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	// This kernel has everything; "unsupported" here would be a bug.
	if err := ProbeNftables(NftablesOptions{NetNS: n.devPath}); err != nil {
		t.Fatalf("ProbeNftables() = %v; want nil", err)
	}
	if out := nft(t, n.dev, "list", "tables"); strings.Contains(out, "toktra") {
		t.Errorf("probe left a table behind: %s", out)
	}
	if err := ProbeNftables(NftablesOptions{NetNS: n.devPath}); err != nil {
		t.Fatalf("cached ProbeNftables() = %v; want nil", err)
	}
}

func TestNftablesManyEntries(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	var tg Targets
	for i := range 20000 {
		tg.Entries = append(tg.Entries,
			Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + byte(i>>14), byte(i >> 6), byte(i<<2) | 1}), 32), Timeout: time.Hour},
			Entry{Prefix: netip.MustParsePrefix(fmt.Sprintf("fd00:1::%x:1/128", i)), Timeout: time.Hour},
		)
	}
	tg.Entries = append(tg.Entries, entries("10.77.0.2/32").Entries...)
	start := time.Now()
	mustApply(t, e, tg)
	t.Logf("applied %d entries in %v", len(tg.Entries), time.Since(start))
	wantActive(t, e, true)
	wantRefused(t, n, "10.77.0.2")
}

func TestNewNftablesBadNamespace(t *testing.T) {
	t.Parallel()
	if _, err := NewNftables(NftablesOptions{NetNS: "/nonexistent/netns"}); err == nil {
		t.Error("NewNftables with a missing namespace = nil error; want an error")
	}
}

func TestNftablesClosed(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{})
	mustApply(t, e, entries("10.77.0.2/32"))
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wantRefused(t, n, "10.77.0.2") // a lock outlives the agent
	if err := e.Close(); err != nil {
		t.Errorf("second Close() = %v; want nil", err)
	}
	ctx := context.Background()
	if err := e.Apply(ctx, Targets{}); !errors.Is(err, errClosed) {
		t.Errorf("Apply after Close = %v; want errClosed", err)
	}
	if _, err := e.Active(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Active after Close = %v; want errClosed", err)
	}
	if err := e.Watch(ctx, func() {}); !errors.Is(err, errClosed) {
		t.Errorf("Watch after Close = %v; want errClosed", err)
	}
}

// TestNftablesWatchSurvivesFloods checks that a transaction too big for
// the monitor's buffer (events lost, monitor restarted) leaves Watch
// working.
func TestNftablesWatchSurvivesFloods(t *testing.T) {
	t.Parallel()
	n, e := setup(t, NftablesOptions{WatchInterval: -1})
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = e.Watch(ctx, func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	<-changes
	var big Targets
	for i := range 50000 {
		big.Entries = append(big.Entries, Entry{Prefix: netip.MustParsePrefix(fmt.Sprintf("fd00:2::%x:1/128", i)), Timeout: time.Hour})
	}
	for range 2 {
		mustApply(t, e, big)
	}
	mustApply(t, e, entries("10.77.0.2/32"))
	time.Sleep(500 * time.Millisecond) // let the monitor catch up or restart
	drain(changes)
	nft(t, n.dev, "delete", "table", "inet", "toktra")
	select {
	case <-changes:
	case <-time.After(fastFail):
		t.Fatal("no onChange within a second of the table being deleted after a flood")
	}
}
