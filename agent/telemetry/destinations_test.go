package telemetry

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// hostsResolver resolves from a hosts file the test writes; every other
// name fails at once (nothing listens on the nameserver's port).
func hostsResolver(t *testing.T, clk clock.Clock, content string) (*platform.Resolver, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return platform.NewResolver(platform.ResolverOptions{
		Clock: clk, HostsPath: path, HostsTTL: time.Minute, Nameservers: []string{"127.0.0.1:1"}, QueryTimeout: 100 * time.Millisecond,
	}), path
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(bufferEpoch)
	r, hosts := hostsResolver(t, clk, "192.0.2.10 chatgpt.com api.openai.com\n192.0.2.20 api.anthropic.com\n192.0.2.30 llm.corp.example\n192.0.2.40 example.com\n")
	policy := func() ([]string, []netip.Prefix) {
		return []string{"llm.corp.example"}, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	}
	d := NewDestinations(r, policy, clk, nil)
	if d.Contains(netip.MustParseAddr("192.0.2.10")) {
		t.Error("Contains before any refresh = true; want false")
	}
	d.RefreshOnce(context.Background())
	for _, tc := range []struct {
		addr, domain, provider string
		ok                     bool
	}{
		{"192.0.2.10", "api.openai.com", "openai", true}, // shared: the first in list order
		{"::ffff:192.0.2.10", "api.openai.com", "openai", true},
		{"192.0.2.20", "api.anthropic.com", "anthropic", true},
		{"192.0.2.30", "llm.corp.example", platform.ProviderOther, true},
		{"198.51.100.77", "", platform.ProviderOther, true},
		{"192.0.2.40", "", "", false}, // resolvable, but no LLM domain
		{"203.0.113.1", "", "", false},
	} {
		domain, provider, ok := d.Lookup(netip.MustParseAddr(tc.addr))
		if domain != tc.domain || provider != tc.provider || ok != tc.ok {
			t.Errorf("Lookup(%s) = %q, %q, %v; want %q, %q, %v", tc.addr, domain, provider, ok, tc.domain, tc.provider, tc.ok)
		}
	}
	// An address the name no longer resolves to is kept until its timeout
	// (twice the TTL), then forgotten.
	if err := os.WriteFile(hosts, []byte("192.0.2.11 api.openai.com chatgpt.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(90 * time.Second)
	d.RefreshOnce(context.Background())
	if !d.Contains(netip.MustParseAddr("192.0.2.10")) || !d.Contains(netip.MustParseAddr("192.0.2.11")) {
		t.Error("after the name moved, the old and new address should both be known until the old one times out")
	}
	clk.Advance(2 * time.Minute)
	d.RefreshOnce(context.Background())
	if d.Contains(netip.MustParseAddr("192.0.2.10")) || !d.Contains(netip.MustParseAddr("192.0.2.11")) {
		t.Error("after the old address's timeout, only the new one should be known")
	}
}

func TestRecorderCleansStringsAndSeals(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(bufferEpoch)
	r, _ := hostsResolver(t, clk, "192.0.2.10 api.openai.com\n")
	d := NewDestinations(r, nil, clk, nil)
	d.RefreshOnce(context.Background())
	b := openTestBuffer(t, t.TempDir(), 0)
	rec := NewRecorder(RecorderOptions{Buffer: b, Destinations: d, BatchEvents: 2})
	flow := platform.Flow{
		Protocol: "tcp", Local: netip.MustParseAddrPort("10.0.0.1:5000"), Remote: netip.MustParseAddrPort("192.0.2.10:443"),
		Start: bufferEpoch, End: bufferEpoch.Add(time.Second), BytesSent: 10, BytesReceived: 20,
		Process: &platform.Process{PID: 7, UID: -1, Name: "a\xffb", Path: "/" + string(make([]byte, MaxProcessPath+10))},
	}
	rec.Record(flow)
	other := flow
	other.Remote = netip.MustParseAddrPort("203.0.113.1:443")
	rec.Record(other) // not an LLM destination: ignored
	if n := b.OpenEvents(); n != 1 {
		t.Fatalf("OpenEvents() = %d; want 1 (only the LLM connection)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	rec.Record(flow) // the second event fills the batch: sealed without waiting for the interval
	deadline := time.Now().Add(5 * time.Second)
	for len(b.Pending()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	pending := b.Pending()
	if len(pending) != 1 {
		t.Fatalf("Pending() = %v; want one batch sealed when full", pending)
	}
	batch, err := b.Batch(pending[0])
	if err != nil {
		t.Fatal(err)
	}
	ev := batch.GetEvents()[0]
	want := &agentv1.UsageEvent{Provider: "openai", Domain: "api.openai.com", RemoteAddr: "192.0.2.10", RemotePort: 443, Protocol: "tcp"}
	if ev.GetProvider() != want.Provider || ev.GetDomain() != want.Domain || ev.GetRemoteAddr() != want.RemoteAddr || ev.GetRemotePort() != 443 ||
		ev.GetProcessName() != "a\uFFFDb" || len(ev.GetProcessPath()) > MaxProcessPath || ev.Uid != nil || ev.GetPid() != 7 || ev.GetBytesReceived() != 20 {
		t.Errorf("recorded event = %v; want %v with the process name made valid UTF-8, the path cut to %d bytes, no uid", ev, want, MaxProcessPath)
	}
}
