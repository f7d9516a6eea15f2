//go:build linux

package platform

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// requireRoot skips a test that needs root (network namespaces, nftables)
// when not root, except in CI, where it must run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (network namespaces and nftables), and CI is set")
	}
	t.Skip("needs root to create network namespaces and nftables tables")
}

// testNet is a "device" network namespace, where the enforcer runs, wired
// by a veth pair to an "llm" namespace that plays the LLM provider:
//
//	device 10.77.0.1/24 fd77::1/64  <->  llm 10.77.0.{2,3,4,200}/24 fd77::{2,3,1:2}/64
//
// The llm namespace serves TCP echo on port 8080 and UDP echo on 8081, on
// every address. Each test gets its own namespaces, so addresses repeat
// freely across parallel tests.
type testNet struct {
	dev, llm         string // namespace names
	devPath, llmPath string
}

const (
	tcpPort = "8080"
	udpPort = "8081"
)

// llmAddrs are the llm namespace's addresses.
var llmAddrs = []string{"10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.200", "fd77::2", "fd77::3", "fd77::1:2"}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireRoot(t)
	id := randomID(t)
	n := &testNet{dev: "tk-d-" + id, llm: "tk-l-" + id}
	n.devPath, n.llmPath = "/run/netns/"+n.dev, "/run/netns/"+n.llm
	addNetNS(t, n.dev)
	addNetNS(t, n.llm)
	vd, vl := "tkd"+id, "tkl"+id
	const devMAC, llmMAC = "02:77:00:00:00:01", "02:77:00:00:00:02"
	run(t, "ip", "link", "add", vd, "address", devMAC, "netns", n.dev, "type", "veth", "peer", "name", vl, "address", llmMAC, "netns", n.llm)
	for _, a := range []string{"10.77.0.1/24", "fd77::1/64"} {
		run(t, "ip", "-n", n.dev, "addr", "add", a, "dev", vd, "nodad")
	}
	for _, a := range llmAddrs {
		bits := "/24"
		if strings.Contains(a, ":") {
			bits = "/64"
		}
		run(t, "ip", "-n", n.llm, "addr", "add", a+bits, "dev", vl, "nodad")
	}
	run(t, "ip", "-n", n.dev, "link", "set", vd, "up")
	run(t, "ip", "-n", n.llm, "link", "set", vl, "up")
	// Neighbour discovery on a link just brought up loses its first
	// solicitation, and the retry comes a second later; skip it.
	for _, a := range llmAddrs {
		if strings.Contains(a, ":") {
			run(t, "ip", "-n", n.dev, "neigh", "replace", a, "lladdr", llmMAC, "dev", vd, "nud", "permanent")
		}
	}
	run(t, "ip", "-n", n.llm, "neigh", "replace", "fd77::1", "lladdr", devMAC, "dev", vl, "nud", "permanent")
	run(t, "ip", "-n", n.dev, "link", "set", "lo", "up")
	run(t, "ip", "-n", n.llm, "link", "set", "lo", "up")
	n.serveEcho(t)
	return n
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func addNetNS(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nft runs the nft command line inside a namespace: an independent view
// of (and hand on) what the enforcer did.
func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
}

// inNS runs fn on an OS thread switched into the namespace at path.
// Sockets fn creates stay in that namespace wherever they are used later.
func inNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread is discarded when the goroutine ends,
		// so no other goroutine runs in the namespace.
		runtime.LockOSThread()
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serveEcho starts TCP and UDP echo servers in the llm namespace.
func (n *testNet) serveEcho(t *testing.T) {
	t.Helper()
	var (
		ln  net.Listener
		pcs []net.PacketConn
	)
	if err := inNS(n.llmPath, func() (err error) {
		if ln, err = net.Listen("tcp", ":"+tcpPort); err != nil {
			return err
		}
		// One UDP socket per address, so that replies come from the
		// address the client sent to.
		for _, a := range llmAddrs {
			pc, err := net.ListenPacket("udp", net.JoinHostPort(a, udpPort))
			if err != nil {
				return err
			}
			pcs = append(pcs, pc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	for _, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				k, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:k], from)
			}
		}()
	}
}

// dial connects from the namespace at path.
func dial(path, network, addr string) (c net.Conn, err error) {
	err = inNS(path, func() error {
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	return c, err
}

// echo connects from the device to addr's TCP echo server and checks a
// round trip; it returns how long it took and the error, if any.
func (n *testNet) echo(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := dial(n.devPath, "tcp", net.JoinHostPort(addr, tcpPort))
	if err != nil {
		return time.Since(start), err
	}
	defer c.Close()
	err = roundTrip(c)
	return time.Since(start), err
}

func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mangled")
	}
	return nil
}
