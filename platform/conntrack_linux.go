//go:build linux

package platform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftFlowTable is the table whose only job is to make the kernel track
// connections in the namespace: conntrack hooks are registered only while
// something (a rule with a ct expression) needs them.
const nftFlowTable = "toktra_flows"

// ctnetlink multicast groups (NFNLGRP_CONNTRACK_*): new, update, destroy.
const ctGroups = 1<<0 | 1<<1 | 1<<2

// flowReadBuffer is the event socket's receive buffer: big enough to ride
// out bursts of connections on a busy host before the kernel drops events.
const flowReadBuffer = 8 << 20

// maxTrackedFlows bounds the open connections remembered between their
// start and their end; beyond it new ones are still reported at their end,
// without process or a start time of our own.
const maxTrackedFlows = 1 << 16

// FlowMonitor reports the device's finished connections to tracked
// destinations from the kernel's connection tracking: it subscribes to
// ctnetlink's new, update and destroy events (no polling), with
// accounting and timestamps turned on in the namespace, and attributes
// each new connection to its socket's owner and process as it starts.
//
// Byte counts are IP bytes, headers included, as conntrack counts them.
// Connections that began before the monitor carry no counters (the kernel
// decides accounting when a connection starts) and are reported with zero
// bytes.
type FlowMonitor struct {
	log   *slog.Logger
	clock Clock
	track func(netip.Addr) bool
	ns    *os.File // nil: the caller's namespace
	start time.Time

	events *netlink.Conn
	diag   *netlink.Conn
	lost   atomic.Uint64

	mu    sync.Mutex
	flows map[uint32]*trackedFlow
}

// trackedFlow is a connection to a tracked destination, between its
// start and its end.
type trackedFlow struct {
	src, dst netip.AddrPort
	proto    uint8
	start    time.Time
	closedAt time.Time
	proc     *Process
	resolved chan struct{} // closed once proc is final
}

// NewFlowMonitor turns on connection tracking, accounting and timestamps
// in the namespace opts names and subscribes to its events. Errors about
// what the kernel lacks wrap ErrNotSupported.
func NewFlowMonitor(opts FlowMonitorOptions) (*FlowMonitor, error) {
	m := &FlowMonitor{
		log: opts.Logger, clock: clockOrSystem(opts.Clock), track: opts.Track,
		flows: map[uint32]*trackedFlow{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "flows")
	if m.track == nil {
		m.track = func(netip.Addr) bool { return false }
	}
	if opts.NetNS != "" {
		f, err := os.Open(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace: %w", err)
		}
		m.ns = f
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	if err := m.enableTracking(); err != nil {
		return nil, err
	}
	// Accounting and timestamps apply to connections created from now on.
	for _, s := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
		if err := writeSysctlIn(opts.NetNS, "net/netfilter/"+s, "1"); err != nil {
			return nil, &UnsupportedFeatureError{Feature: "conntrack accounting (" + s + ")", Err: err}
		}
	}
	var err error
	m.events, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: m.nsFd(), Groups: ctGroups})
	if err != nil {
		return nil, &UnsupportedFeatureError{Feature: "conntrack events (ctnetlink)", MinimumKernel: "Linux 2.6.14 with CONFIG_NF_CT_NETLINK", Err: err}
	}
	if err := forceReadBuffer(m.events, flowReadBuffer); err != nil {
		m.log.Warn("raising conntrack event buffer", "err", err)
	}
	// Overruns are reported as ENOBUFS and then counted, not fatal.
	_ = m.events.SetOption(netlink.NoENOBUFS, false)
	m.diag, err = netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: m.nsFd()})
	if err != nil {
		m.log.Warn("sock_diag unavailable; connections will not be attributed to processes", "err", err)
		m.diag = nil
	}
	m.start = m.clock.Now()
	ok = true
	return m, nil
}

func (m *FlowMonitor) nsFd() int {
	if m.ns == nil {
		return 0
	}
	return int(m.ns.Fd())
}

// enableTracking (re)creates the toktra_flows table: an output chain whose
// one rule reads the connection state and changes nothing. Its ct
// expression is what registers the conntrack hooks in the namespace.
func (m *FlowMonitor) enableTracking() error {
	c, err := nftables.New(nftables.WithNetNSFd(m.nsFd()))
	if err != nil {
		return fmt.Errorf("opening nftables netlink connection: %w", err)
	}
	table := &nftables.Table{Name: nftFlowTable, Family: nftables.TableFamilyINet}
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	policy := nftables.ChainPolicyAccept
	for _, hook := range []*nftables.ChainHook{nftables.ChainHookOutput, nftables.ChainHookInput} {
		ch := c.AddChain(&nftables.Chain{
			Name:  "track_" + map[*nftables.ChainHook]string{nftables.ChainHookOutput: "out", nftables.ChainHookInput: "in"}[hook],
			Table: table, Type: nftables.ChainTypeFilter, Hooknum: hook,
			Priority: nftables.ChainPriorityFilter, Policy: &policy,
		})
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		}})
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("enabling connection tracking: %w", err)
		}
		return &UnsupportedFeatureError{Feature: "connection tracking in nftables (ct expression)", MinimumKernel: "Linux 3.13", Err: err}
	}
	return nil
}

// Lost is how many conntrack events the kernel dropped because the
// monitor fell behind (connections whose end may not be reported).
func (m *FlowMonitor) Lost() uint64 { return m.lost.Load() }

// Open returns the tracked connections that have started and not yet
// ended, with their process once attribution is done (Process nil until
// then), and with no byte counts: the kernel reports them at the end.
func (m *FlowMonitor) Open() []Flow {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Flow, 0, len(m.flows))
	for _, t := range m.flows {
		f := Flow{Protocol: protoName(t.proto), Local: t.src, Remote: t.dst, Start: t.start}
		select {
		case <-t.resolved:
			f.Process = t.proc
		default:
		}
		out = append(out, f)
	}
	return out
}

// Run reports each finished connection to a tracked destination to emit
// until ctx ends. emit may be called from several goroutines at once.
func (m *FlowMonitor) Run(ctx context.Context, emit func(Flow)) error {
	attr := make(chan *trackedFlow, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for t := range attr {
			p := m.attribute(t)
			m.mu.Lock()
			t.proc = p
			m.mu.Unlock()
			close(t.resolved)
		}
	}()
	defer close(attr)
	stop := context.AfterFunc(ctx, func() { _ = m.events.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msgs, err := m.events.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			m.lost.Add(1)
			m.log.Warn("conntrack events lost: the kernel's queue overflowed")
			continue
		}
		if err != nil {
			return fmt.Errorf("receiving conntrack events: %w", err)
		}
		for _, msg := range msgs {
			ev, err := parseCTEvent(msg)
			if err != nil {
				if !errors.Is(err, errNotConntrack) {
					m.log.Debug("skipping conntrack event", "err", err)
				}
				continue
			}
			m.handle(ev, attr, emit, &wg)
		}
	}
}

func (m *FlowMonitor) handle(ev ctEvent, attr chan<- *trackedFlow, emit func(Flow), wg *sync.WaitGroup) {
	if ev.proto != unix.IPPROTO_TCP && ev.proto != unix.IPPROTO_UDP {
		return
	}
	now := m.clock.Now()
	m.mu.Lock()
	t := m.flows[ev.id]
	if t != nil && (t.src != ev.src || t.dst != ev.dst || t.proto != ev.proto) {
		// An id reused after a destroy event we lost.
		delete(m.flows, ev.id)
		t = nil
	}
	switch ev.kind {
	case ctEventNew:
		if !ev.hasID || t != nil || !m.track(ev.dst.Addr()) || len(m.flows) >= maxTrackedFlows {
			m.mu.Unlock()
			return
		}
		t = &trackedFlow{src: ev.src, dst: ev.dst, proto: ev.proto, start: now, resolved: make(chan struct{})}
		m.flows[ev.id] = t
		m.mu.Unlock()
		select {
		case attr <- t:
		default:
			close(t.resolved) // attribution is behind; report without a process
		}
		return
	case ctEventUpdate:
		if t != nil && t.closedAt.IsZero() && ev.hasTCPState && (ev.tcpState == tcpCTTimeWait || ev.tcpState == tcpCTClose) {
			t.closedAt = now
		}
		m.mu.Unlock()
		return
	}
	// Destroy.
	if t != nil {
		delete(m.flows, ev.id)
	}
	m.mu.Unlock()
	if t == nil && !m.track(ev.dst.Addr()) {
		return
	}
	f := Flow{
		Protocol: protoName(ev.proto), Local: ev.src, Remote: ev.dst,
		BytesSent: ev.origBytes, BytesReceived: ev.replyBytes,
		PacketsSent: ev.origPackets, PacketsReceived: ev.replyPackets,
	}
	f.Start, f.End = m.start, now
	switch {
	case t != nil:
		f.Start = t.start
	case ev.tsStart != 0:
		f.Start = time.Unix(0, int64(ev.tsStart))
	}
	if t != nil && !t.closedAt.IsZero() {
		f.End = t.closedAt
	}
	if f.End.Before(f.Start) {
		f.End = f.Start
	}
	if t == nil {
		emit(f)
		return
	}
	finish := func() {
		m.mu.Lock()
		f.Process = t.proc
		m.mu.Unlock()
		emit(f)
	}
	select {
	case <-t.resolved:
		finish()
	default:
		// Attribution still running: report when it is done, without
		// holding up the events behind this one.
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-t.resolved
			finish()
		}()
	}
}

func protoName(p uint8) string {
	if p == unix.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// attribute finds the socket of a new connection with sock_diag (its
// owner and inode) and then the process holding that inode. It returns
// nil if not even the socket is found (it closed already).
func (m *FlowMonitor) attribute(t *trackedFlow) *Process {
	if m.diag == nil {
		return nil
	}
	uid, inode, err := lookupSocket(m.diag, t.proto, t.src, t.dst)
	if err != nil && t.proto == unix.IPPROTO_UDP {
		// The kernel's one-socket UDP lookup reads the request's tuple
		// as a packet arriving at the socket: remote first.
		uid, inode, err = lookupSocket(m.diag, t.proto, t.dst, t.src)
	}
	if err != nil {
		m.log.Debug("socket of new connection not found", "remote", t.dst, "err", err)
		return nil
	}
	p := &Process{UID: int(uid)}
	if inode != 0 {
		if pid, ok := findSocketOwner(inode, uid); ok {
			p.PID = pid
			if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err == nil {
				p.Name = strings.TrimSuffix(string(b), "\n")
			}
			if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe")); err == nil {
				p.Path = strings.TrimSuffix(exe, " (deleted)")
			}
		}
	}
	return p
}

// lookupSocket asks sock_diag for the one socket with this 4-tuple (local
// first) and returns its owner and inode.
func lookupSocket(c *netlink.Conn, proto uint8, local, remote netip.AddrPort) (uid, inode uint32, err error) {
	family := uint8(unix.AF_INET)
	if !local.Addr().Is4() {
		family = unix.AF_INET6
	}
	id := make([]byte, inetDiagSockID)
	binary.BigEndian.PutUint16(id[0:2], local.Port())
	binary.BigEndian.PutUint16(id[2:4], remote.Port())
	putDiagAddr(id[4:20], local.Addr())
	putDiagAddr(id[20:36], remote.Addr())
	binary.NativeEndian.PutUint32(id[40:44], ^uint32(0)) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:48], ^uint32(0))
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request},
		Data:   inetDiagRequest(family, proto, 0xffffffff, id),
	})
	if err != nil {
		return 0, 0, err
	}
	for _, msg := range msgs {
		// struct inet_diag_msg: ..., idiag_uid at 64, idiag_inode at 68.
		if len(msg.Data) >= 72 {
			return binary.NativeEndian.Uint32(msg.Data[64:68]), binary.NativeEndian.Uint32(msg.Data[68:72]), nil
		}
	}
	return 0, 0, errors.New("no socket in the answer")
}

func putDiagAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// findSocketOwner looks through the processes owned by uid (all of them
// for root's sockets) for one holding the socket inode: once per new
// connection, when the process is certain to still hold it.
func findSocketOwner(inode, uid uint32) (int, bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	want := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		if uid != 0 {
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name()), &st) != nil || st.Uid != uid {
				continue
			}
		}
		fdDir := filepath.Join("/proc", e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && l == want {
				return pid, true
			}
		}
	}
	return 0, false
}

// Close stops the monitor and removes the toktra_flows table, so that
// conntrack is no longer kept on for us. Accounting stays on.
func (m *FlowMonitor) Close() error {
	var errs []error
	if m.events != nil {
		errs = append(errs, m.events.Close())
	}
	if m.diag != nil {
		errs = append(errs, m.diag.Close())
	}
	if c, err := nftables.New(nftables.WithNetNSFd(m.nsFd())); err == nil {
		table := &nftables.Table{Name: nftFlowTable, Family: nftables.TableFamilyINet}
		c.AddTable(table)
		c.DelTable(table)
		errs = append(errs, c.Flush())
	}
	if m.ns != nil {
		errs = append(errs, m.ns.Close())
	}
	return errors.Join(errs...)
}

// ProbeFlowMonitor reports whether connection tracking with accounting
// and events works in the namespace: nil or an error wrapping
// ErrNotSupported that names what is missing.
func ProbeFlowMonitor(opts FlowMonitorOptions) error {
	m, err := NewFlowMonitor(opts)
	if err != nil {
		return err
	}
	return m.Close()
}

// writeSysctlIn writes a sysctl (path under /proc/sys) in the network
// namespace at nsPath ("" for the caller's): /proc/sys/net shows the
// namespace of the thread that opens it.
func writeSysctlIn(nsPath, key, value string) error {
	write := func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	}
	if nsPath == "" {
		return write()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread is discarded when the goroutine ends.
		runtime.LockOSThread()
		f, err := os.Open(nsPath)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- write()
	}()
	return <-errc
}

func forceReadBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	if err := rc.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	return sockErr
}
