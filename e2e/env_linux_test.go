package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
)

// binDir holds the real binaries, built once per test binary.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "toktra-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/toktra-server", "../cmd/toktra-agent", "../cmd/toktractl")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building binaries:", err)
			return 1
		}
		binDir = dir
		return runWithPostgres(m)
	}()
	os.Exit(code)
}

// requireRoot skips without root, except in CI where the test must run.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("end-to-end tests need root (network namespaces, nftables); CI runs as root")
	}
	tb.Skip("end-to-end tests need root for network namespaces and nftables")
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netEnv is three network namespaces of the test's own: the control plane
// ("cp"), the device, and a fake LLM endpoint. The control plane reaches
// the device on 198.18.0.0/30 and the device reaches the LLM endpoint on
// 198.51.100.0/30; nothing is added to the host's own namespace.
// api.openai.com resolves, on the device, to the LLM endpoint through
// /etc/netns/<dev>/hosts.
type netEnv struct {
	cp, dev, llm string
	cpIP, devIP  string
	llmIP        string
	llmAddr      string // llmIP:443, api.openai.com in the device's hosts file
	llmDNSIP     string
	llmDNSAddr   string // llmDNSIP:443, api.anthropic.com from the test's DNS server
	cpNS, devNS  netns.NsHandle
}

func newNetEnv(t testing.TB) *netEnv {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	e := &netEnv{
		cp: "tkc-" + suffix, dev: "tkd-" + suffix, llm: "tkl-" + suffix,
		cpIP: "198.18.0.1", devIP: "198.18.0.2", llmIP: "198.51.100.2", llmDNSIP: "198.51.100.3",
	}
	e.llmAddr = net.JoinHostPort(e.llmIP, "443")
	e.llmDNSAddr = net.JoinHostPort(e.llmDNSIP, "443")
	for _, ns := range []string{e.cp, e.dev, e.llm} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", "tkc"+suffix, "netns", e.cp, "type", "veth", "peer", "name", "tkd"+suffix, "netns", e.dev)
	run(t, "ip", "-n", e.cp, "addr", "add", e.cpIP+"/30", "dev", "tkc"+suffix)
	run(t, "ip", "-n", e.cp, "link", "set", "tkc"+suffix, "up")
	run(t, "ip", "-n", e.dev, "addr", "add", e.devIP+"/30", "dev", "tkd"+suffix)
	run(t, "ip", "-n", e.dev, "link", "set", "tkd"+suffix, "up")
	run(t, "ip", "link", "add", "tkx"+suffix, "netns", e.dev, "type", "veth", "peer", "name", "tky"+suffix, "netns", e.llm)
	run(t, "ip", "-n", e.dev, "addr", "add", "198.51.100.1/29", "dev", "tkx"+suffix)
	run(t, "ip", "-n", e.dev, "link", "set", "tkx"+suffix, "up")
	run(t, "ip", "-n", e.llm, "addr", "add", e.llmIP+"/29", "dev", "tky"+suffix)
	run(t, "ip", "-n", e.llm, "addr", "add", e.llmDNSIP+"/29", "dev", "tky"+suffix)
	run(t, "ip", "-n", e.llm, "link", "set", "tky"+suffix, "up")

	etc := filepath.Join("/etc/netns", e.dev)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	hosts := fmt.Sprintf("127.0.0.1 localhost\n::1 localhost\n%s api.openai.com\n", e.llmIP)
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	// The device's nameserver is the test's DNS server in the control
	// plane's namespace (startDNS).
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+e.cpIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var err error
	if e.devNS, err = netns.GetFromName(e.dev); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.devNS.Close() })
	if e.cpNS, err = netns.GetFromName(e.cp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cpNS.Close() })
	e.startEcho(t)
	e.startDNS(t)
	return e
}

// inNS runs fn on an OS thread switched into ns; sockets made there stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked (and so discarded) if switching back fails.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// startEcho runs a TCP echo server on the LLM endpoint's :443.
func (e *netEnv) startEcho(t testing.TB) {
	ns, err := netns.GetFromName(e.llm)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", ":443")
		return err
	}); err != nil {
		t.Fatalf("listening in the LLM namespace: %v", err)
	}
	var wg sync.WaitGroup
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
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// startDNS answers the device's DNS queries from the control plane's
// namespace: api.anthropic.com has an A record (TTL 60) pointing at the
// LLM endpoint's second address; every other name is NXDOMAIN.
func (e *netEnv) startDNS(t testing.TB) {
	var pc net.PacketConn
	if err := inNS(e.cpNS, func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(e.cpIP, "53"))
		return err
	}); err != nil {
		t.Fatalf("listening for DNS in the control plane namespace: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == "api.anthropic.com." && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: "api.anthropic.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(e.llmDNSIP),
			})
		} else if len(q.Question) == 1 && q.Question[0].Name != "api.anthropic.com." {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// dialFromDevice opens a TCP connection from the device to addr.
func (e *netEnv) dialFromDevice(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(e.devNS, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// dialControlPlane opens a connection inside the control plane's namespace.
func (e *netEnv) dialControlPlane(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(e.cpNS, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// llmReachable says whether a TCP connect to the LLM endpoint succeeds,
// and if not whether it was refused (what a lock must do) or something else.
func (e *netEnv) llmReachable() (ok bool, refused bool, err error) {
	return e.reachable(e.llmAddr)
}

func (e *netEnv) reachable(addr string) (ok bool, refused bool, err error) {
	c, err := e.dialFromDevice(addr, 2*time.Second)
	if err == nil {
		c.Close()
		return true, false, nil
	}
	return false, errors.Is(err, syscall.ECONNREFUSED), err
}

// echoWorks writes and reads back on an open connection.
func echoWorks(c net.Conn) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := []byte("ping\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo = %q; want %q", got, msg)
	}
	return nil
}

// proc is a running binary with its output kept for failure messages.
type proc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), p.out.String())
		}
	})
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// controlPlane is a running toktra-server.
type controlPlane struct {
	proc      *proc
	dataDir   string
	apiURL    string
	agentAddr string
	opsURL    string
	apiKey    string
	caPin     string
	http      *http.Client
	args      []string
	env       *netEnv
}

func startControlPlane(t testing.TB, env *netEnv, databaseURL string) *controlPlane {
	t.Helper()
	dataDir := t.TempDir()
	cp := &controlPlane{dataDir: dataDir}
	// The namespace is the test's own, so fixed ports cannot collide.
	apiAddr := "127.0.0.1:8443"
	cp.agentAddr = net.JoinHostPort(env.cpIP, "8444")
	opsAddr := "127.0.0.1:9090"
	cp.env = env
	cp.args = []string{
		"--data-dir", dataDir, "--api-addr", apiAddr, "--agent-addr", cp.agentAddr, "--ops-addr", opsAddr,
		"--tls-hosts", "127.0.0.1," + env.cpIP, "--log-format", "text", "--log-level", "debug",
		// The tests' fake providers live on the namespace's loopback.
		"--allow-provider-base-url",
		// Crash tests: a job left running by a killed server is picked up
		// again after seconds, not the production minute and a half.
		"--job-timeout", "5s", "--job-rescue-after", "8s",
		// No Internet here: time-stamps come from the TSA in the data dir.
		"--tsa-url", "local",
	}
	if databaseURL != "" {
		cp.args = append(cp.args, "--database-url", databaseURL)
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", env.cp, filepath.Join(binDir, "toktra-server"), "init"}, cp.args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("toktra-server init: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var boot struct {
		CAPin    string `json:"ca_pin"`
		CAFile   string `json:"ca_file"`
		AdminKey struct {
			Secret string `json:"secret"`
		} `json:"admin_key"`
	}
	if err := json.Unmarshal(out, &boot); err != nil {
		t.Fatalf("init output %q: %v", out, err)
	}
	cp.apiKey, cp.caPin = boot.AdminKey.Secret, boot.CAPin
	pem, err := os.ReadFile(boot.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cp.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		DialContext:     env.dialControlPlane,
	}}
	cp.apiURL = "https://" + apiAddr
	cp.opsURL = "http://" + opsAddr
	cp.start(t)
	return cp
}

func (cp *controlPlane) start(t testing.TB) {
	t.Helper()
	cp.proc = start(t, "ip", append([]string{"netns", "exec", cp.env.cp, filepath.Join(binDir, "toktra-server"), "run"}, cp.args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cp.http.Get(cp.opsURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-cp.proc.done:
			t.Fatalf("toktra-server exited:\n%s", cp.proc.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("toktra-server not ready:\n%s", cp.proc.out.String())
}

// call makes an API request and decodes the JSON answer into out.
func (cp *controlPlane) call(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, cp.apiURL+path, rd)
	req.Header.Set("X-API-Key", cp.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := cp.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	if resp.StatusCode >= 300 && out == nil {
		t.Fatalf("%s %s = %d: %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

func (cp *controlPlane) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := cp.http.Get(cp.opsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// agent is a toktra-agent enrolled on the device.
type agentProc struct {
	env      *netEnv
	stateDir string
	proc     *proc
}

func enrollAgent(t testing.TB, env *netEnv, cp *controlPlane, email string) *agentProc {
	t.Helper()
	var secret struct {
		Secret string `json:"secret"`
	}
	if code := cp.call(t, "POST", "/v1/enrollment-secrets", map[string]string{"name": "e2e"}, &secret); code != 201 {
		t.Fatalf("creating enrollment secret = %d", code)
	}
	a := &agentProc{env: env, stateDir: t.TempDir()}
	out, err := exec.Command("ip", "netns", "exec", env.dev, filepath.Join(binDir, "toktra-agent"), "enroll",
		"--server", cp.agentAddr, "--secret", secret.Secret, "--ca-pin", cp.caPin, "--email", email,
		"--state-dir", a.stateDir, "--serial", "e2e-"+filepath.Base(a.stateDir)).CombinedOutput()
	if err != nil {
		t.Fatalf("toktra-agent enroll: %v\n%s", err, out)
	}
	return a
}

func (a *agentProc) start(t testing.TB) {
	t.Helper()
	a.proc = start(t, "ip", "netns", "exec", a.env.dev, filepath.Join(binDir, "toktra-agent"), "run",
		"--state-dir", a.stateDir, "--log-format", "text", "--log-level", "debug")
}

// waitFor polls cond every 5 ms (fine enough to measure a lock) until it
// holds or the deadline passes, and returns how long it took.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return waitEvery(t, what, timeout, 5*time.Millisecond, cond)
}

// waitAPI polls the admin API at a pace an operator's script would, well
// inside its rate limit.
func waitAPI(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return waitEvery(t, what, timeout, 100*time.Millisecond, cond)
}

func waitEvery(t testing.TB, what string, timeout, every time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(every)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
	return 0
}
