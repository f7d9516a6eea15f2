//go:build linux

package telemetry_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/toktra/toktra/agent"
	"github.com/toktra/toktra/agent/telemetry"
	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// The device namespace reaches the "LLM" namespace over a veth pair:
//
//	device 10.78.0.1/24  <->  llm 10.78.0.2/24 (api.openai.com, by the device's hosts file)
//	                          llm 10.78.0.3/24 (no LLM domain)
const (
	devAddr   = "10.78.0.1"
	llmAddr   = "10.78.0.2"
	otherAddr = "10.78.0.3"
	echoPort  = 8080
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (network namespaces, conntrack, nftables), and CI is set")
	}
	t.Skip("needs root to create network namespaces")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs fn on an OS thread switched into the namespace; sockets fn
// creates stay there.
func inNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNetNS makes the device and llm namespaces, with unique names (tests
// run in parallel with others that make namespaces too), a TCP echo
// server in llm, and conntrack timeouts in the device shortened so that
// finished connections are reported within seconds.
func newNetNS(t *testing.T) (devPath, llmPath string) {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	id := fmt.Sprintf("%d%s", os.Getpid()%100000, hex.EncodeToString(b))
	dev, llm := "tku-d-"+id, "tku-l-"+id
	for _, ns := range []string{dev, llm} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	vd, vl := "tkud"+id, "tkul"+id
	if len(vd) > 15 {
		vd, vl = vd[:15], vl[:15]
	}
	run(t, "ip", "link", "add", vd, "netns", dev, "type", "veth", "peer", "name", vl, "netns", llm)
	run(t, "ip", "-n", dev, "addr", "add", devAddr+"/24", "dev", vd)
	for _, a := range []string{llmAddr, otherAddr} {
		run(t, "ip", "-n", llm, "addr", "add", a+"/24", "dev", vl)
	}
	for _, ns := range []string{dev, llm} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", dev, "link", "set", vd, "up")
	run(t, "ip", "-n", llm, "link", "set", vl, "up")
	devPath, llmPath = "/run/netns/"+dev, "/run/netns/"+llm
	var ln net.Listener
	if err := inNS(llmPath, func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(echoPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	for _, s := range []string{"nf_conntrack_tcp_timeout_time_wait", "nf_conntrack_tcp_timeout_close"} {
		run(t, "ip", "netns", "exec", dev, "sysctl", "-qw", "net.netfilter."+s+"=1")
	}
	return devPath, llmPath
}

// controlPlane is a real fleet service on loopback over a SQLite store.
type controlPlane struct {
	st     store.Store
	svc    *fleet.Service
	ca     *pki.CA
	addr   string
	org    store.Org
	secret string
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.Real{}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.LoadOrCreateSigningKeys(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{st: st, ca: ca}
	cp.svc = fleet.NewService(fleet.Config{Store: st, CA: ca, Keys: keys, Issuer: fleet.NewIssuer(st, keys, clk), Clock: clk, Logger: slog.New(slog.DiscardHandler)})
	if err := cp.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServerCert([]string{"127.0.0.1"}, clk.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(ca, cert))), grpc.WaitForHandlers(true))
	agentv1.RegisterEnrollmentServiceServer(gs, cp.svc)
	agentv1.RegisterAgentServiceServer(gs, cp.svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	cp.addr = ln.Addr().String()
	if cp.org, err = st.CreateOrg(ctx, store.CreateOrgParams{Name: "org", CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	cp.secret = "tke_usage-test"
	h := sha256.Sum256([]byte(cp.secret))
	if _, err := st.CreateEnrollmentSecret(ctx, store.CreateEnrollmentSecretParams{
		OrgID: cp.org.ID, Name: "t", Hash: h[:], CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return cp
}

// kickConntrackGC lists the namespace's conntrack table, which makes the
// kernel evict timed-out entries (with their destroy events) now rather
// than at its collector's next round, up to a minute away. Counters are
// unchanged; only the wait is saved.
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
		Header: netlink.Header{Type: 1<<8 | 1 /* ctnetlink IPCTNL_MSG_CT_GET */, Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0},
	}); err != nil {
		t.Fatalf("listing conntrack table: %v", err)
	}
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// TestUsageFromDeviceToStore runs the device side for real — conntrack in
// a network namespace, the hosts-file resolution of an LLM domain, the
// recorder, the disk buffer and the agent's stream — against a real fleet
// service over SQLite, and finds each connection in the stored events with
// the bytes the kernel counted.
func TestUsageFromDeviceToStore(t *testing.T) {
	t.Parallel()
	devPath, _ := newNetNS(t)
	cp := newControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	stateDir := agent.StateDir(t.TempDir())
	if _, err := agent.Enroll(ctx, agent.EnrollOptions{
		Server: cp.addr, Secret: cp.secret, CAPin: cp.ca.Pin(), UserEmail: "dana@example.com", StateDir: stateDir,
		Facts: &agentv1.DeviceFacts{Hostname: "dev", Os: "linux", Serial: "SN-USAGE", UserEmail: "dana@example.com"}, Version: "test", Now: time.Now,
	}); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	// The device resolves api.openai.com from its hosts file; other names
	// fail at once (nothing listens on the nameserver's port).
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte(llmAddr+" api.openai.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resolver := platform.NewResolver(platform.ResolverOptions{HostsPath: hosts, Nameservers: []string{"127.0.0.1:1"}, QueryTimeout: 200 * time.Millisecond})
	buf, err := telemetry.OpenBuffer(telemetry.BufferOptions{Dir: filepath.Join(string(stateDir), "usage"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	dests := telemetry.NewDestinations(resolver, nil, nil, log)
	dests.RefreshOnce(ctx)
	if d, p, ok := dests.Lookup(netip.MustParseAddr(llmAddr)); !ok || d != "api.openai.com" || p != "openai" {
		t.Fatalf("Lookup(%s) = %q, %q, %v; want api.openai.com, openai", llmAddr, d, p, ok)
	}
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{Buffer: buf, Destinations: dests, Logger: log, BatchEvents: 2, BatchInterval: time.Second})
	mon, err := platform.NewFlowMonitor(platform.FlowMonitorOptions{NetNS: devPath, Logger: log, Track: dests.Contains})
	if err != nil {
		t.Fatalf("NewFlowMonitor: %v", err)
	}
	defer mon.Close()
	enf, err := platform.NewNftables(platform.NftablesOptions{NetNS: devPath, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer enf.Close()
	a, err := agent.New(agent.Options{StateDir: stateDir, Enforcer: enf, Resolver: resolver, Usage: buf, Logger: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(3)
	go func() { defer wg.Done(); _ = mon.Run(ctx, rec.Record) }()
	go func() { defer wg.Done(); rec.Run(ctx) }()
	go func() { defer wg.Done(); _ = a.Run(ctx) }()

	// Independent counters of the same packets in the device namespace.
	devNS := filepath.Base(devPath)
	rules := fmt.Sprintf("table inet tkucount {\n chain out { type filter hook output priority 0; ip daddr %s tcp dport %d counter; }\n chain in { type filter hook input priority 0; ip saddr %s tcp sport %d counter; }\n}\n", llmAddr, echoPort, llmAddr, echoPort)
	rulesFile := filepath.Join(t.TempDir(), "count.nft")
	os.WriteFile(rulesFile, []byte(rules), 0o600)
	run(t, "ip", "netns", "exec", devNS, "nft", "-f", rulesFile)

	sizes := []int{123_456, 7, 40_000}
	for _, size := range append(sizes, -1) {
		target := net.JoinHostPort(llmAddr, strconv.Itoa(echoPort))
		if size < 0 {
			size, target = 500, net.JoinHostPort(otherAddr, strconv.Itoa(echoPort)) // not an LLM destination
		}
		var c net.Conn
		if err := inNS(devPath, func() (err error) {
			c, err = net.DialTimeout("tcp", target, 3*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		local := netip.MustParseAddrPort(c.LocalAddr().String())
		payload := make([]byte, size)
		go func() { _, _ = c.Write(payload) }()
		if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(target, llmAddr) {
			// LLM connections outlast a veth round trip; give attribution its moment.
			deadline := time.Now().Add(10 * time.Second)
			for attributed := false; !attributed && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				for _, f := range mon.Open() {
					attributed = attributed || (f.Local == local && f.Process != nil)
				}
			}
		}
		c.Close()
	}

	dev, err := cp.st.ListDevices(ctx, store.ListDevicesParams{OrgID: cp.org.ID})
	if err != nil || len(dev) != 1 {
		t.Fatalf("ListDevices = %v, %v; want the enrolled device", dev, err)
	}
	var got []store.UsageEvent
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < len(sizes) && time.Now().Before(deadline) {
		kickConntrackGC(t, devPath)
		time.Sleep(250 * time.Millisecond)
		got = got[:0]
		if err := cp.st.ScanUserUsage(ctx, store.ScanUserUsageParams{
			OrgID: cp.org.ID, UserID: dev[0].UserID, From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
		}, func(e store.UsageEvent) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(sizes) {
		t.Fatalf("stored %d usage events within 60s; want %d: %+v", len(got), len(sizes), got)
	}
	m := counterRE.FindAllStringSubmatch(run(t, "ip", "netns", "exec", devNS, "nft", "list", "table", "inet", "tkucount"), -1)
	if len(m) != 2 {
		t.Fatalf("counters: %q", m)
	}
	wantOut, _ := strconv.ParseInt(m[0][2], 10, 64)
	wantIn, _ := strconv.ParseInt(m[1][2], 10, 64)
	var sumOut, sumIn int64
	exe, _ := os.Executable()
	for _, e := range got {
		sumOut += e.BytesSent
		sumIn += e.BytesReceived
		if e.Source != store.UsageSourceDevice || e.DeviceID != dev[0].ID || e.Provider != "openai" || e.Domain != "api.openai.com" ||
			e.RemoteAddr != llmAddr || e.RemotePort != echoPort || e.Protocol != "tcp" {
			t.Errorf("stored event = %+v; want a device event to api.openai.com (%s:%d) from openai", e, llmAddr, echoPort)
		}
		if e.PID != int64(os.Getpid()) || e.UID != int64(os.Getuid()) || e.ProcessPath != exe {
			t.Errorf("stored event process = pid %d uid %d %s; want pid %d uid %d %s", e.PID, e.UID, e.ProcessPath, os.Getpid(), os.Getuid(), exe)
		}
		if e.EndedAt.Before(e.StartedAt) || time.Since(e.StartedAt) > time.Minute {
			t.Errorf("stored event times = %s .. %s; want a recent start and the end after it", e.StartedAt, e.EndedAt)
		}
	}
	// IP bytes, headers included: exactly what the kernel's counters saw
	// for the three LLM connections together, and at least the payloads.
	if sumOut != wantOut || sumIn != wantIn {
		t.Errorf("stored bytes sent/received = %d/%d; want %d/%d (nftables counters)", sumOut, sumIn, wantOut, wantIn)
	}
	// Each connection: its payload plus headers — at least the handshake's
	// three 40-byte TCP/IPv4 headers each way, at most 60 bytes for each
	// of ten control packets and of one packet per 500 payload bytes
	// (matched by size).
	slices.SortFunc(got, func(a, b store.UsageEvent) int { return int(a.BytesSent - b.BytesSent) })
	slices.Sort(sizes)
	for i, e := range got {
		lo, hi := int64(sizes[i])+3*40, int64(sizes[i])+60*(10+int64(sizes[i])/500)
		if e.BytesSent < lo || e.BytesSent > hi || e.BytesReceived < lo || e.BytesReceived > hi {
			t.Errorf("connection with %d payload bytes each way stored as %d sent, %d received; want within [%d, %d]", sizes[i], e.BytesSent, e.BytesReceived, lo, hi)
		}
	}
	// Nothing is left to send: every batch was acknowledged and removed.
	deadline = time.Now().Add(10 * time.Second)
	for buf.Stats().PendingBatches > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s := buf.Stats(); s.PendingBatches != 0 || s.DroppedTotal != 0 {
		t.Errorf("buffer after the acks = %+v; want nothing pending, nothing dropped", s)
	}
}
