package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/toktra/toktra/controlplane/store"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

func usageTestEvent(now time.Time, sent uint64) *agentv1.UsageEvent {
	uid := uint32(501)
	return &agentv1.UsageEvent{
		Provider: "anthropic", Domain: "api.anthropic.com", RemoteAddr: "2001:db8::7", RemotePort: 443, Protocol: "tcp",
		StartedAtUnixNano: now.Add(-time.Minute).UnixNano(), EndedAtUnixNano: now.Add(-time.Second).UnixNano(),
		BytesSent: sent, BytesReceived: 2 * sent, ProcessName: "claude", ProcessPath: "/usr/local/bin/claude", Pid: 4242, Uid: &uid,
	}
}

// recvUsageAck reads server messages until a usage ack.
func recvUsageAck(t *testing.T, stream agentv1.AgentService_ConnectClient) *agentv1.UsageAck {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("receiving a usage ack: %v", err)
		}
		if a := m.GetUsageAck(); a != nil {
			return a
		}
	}
}

func sendUsage(t *testing.T, stream agentv1.AgentService_ConnectClient, b *agentv1.UsageBatch) *agentv1.UsageAck {
	t.Helper()
	if err := stream.Send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Usage{Usage: b}}); err != nil {
		t.Fatal(err)
	}
	return recvUsageAck(t, stream)
}

func (f *fleetFixture) storedUsage(t *testing.T, userID string) []store.UsageEvent {
	t.Helper()
	var out []store.UsageEvent
	if err := f.st.ScanUserUsage(context.Background(), store.ScanUserUsageParams{
		OrgID: f.org.ID, UserID: userID, From: f.clk.Now().Add(-time.Hour), To: f.clk.Now().Add(time.Hour),
	}, func(e store.UsageEvent) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUsageBatchStoredOnceAndAcked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	d := f.enroll(t, "SN-U1")
	dev, err := f.st.GetDevice(context.Background(), f.org.ID, d.id)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clk.Now()
	batch := &agentv1.UsageBatch{BatchSeq: 10, Events: []*agentv1.UsageEvent{usageTestEvent(now, 100), usageTestEvent(now, 200)}}
	if ack := sendUsage(t, stream, batch); ack.GetBatchSeq() != 10 || ack.GetRejected() != "" {
		t.Fatalf("ack = %v; want batch 10 stored", ack)
	}
	// Re-sent (its ack was lost): acknowledged again, stored once.
	if ack := sendUsage(t, stream, batch); ack.GetBatchSeq() != 10 || ack.GetRejected() != "" {
		t.Fatalf("ack of the re-sent batch = %v; want batch 10 acknowledged", ack)
	}
	got := f.storedUsage(t, dev.UserID)
	if len(got) != 2 {
		t.Fatalf("stored %d events; want 2 (once)", len(got))
	}
	e := got[0]
	if e.OrgID != f.org.ID || e.DeviceID != d.id || e.UserID != dev.UserID || e.Source != store.UsageSourceDevice ||
		e.Provider != "anthropic" || e.Domain != "api.anthropic.com" || e.RemoteAddr != "2001:db8::7" || e.RemotePort != 443 ||
		e.Protocol != "tcp" || e.BytesSent+got[1].BytesSent != 300 || e.ProcessName != "claude" || e.ProcessPath != "/usr/local/bin/claude" ||
		e.PID != 4242 || e.UID != 501 || !e.StartedAt.Equal(now.Add(-time.Minute).Truncate(time.Microsecond)) || !e.EndedAt.Equal(now.Add(-time.Second).Truncate(time.Microsecond)) {
		t.Errorf("stored event = %+v; want the batch's first event for org %s, device %s, user %s", e, f.org.ID, d.id, dev.UserID)
	}
	m := f.svc.cfg.Metrics
	if s, dup := testutil.ToFloat64(m.usageBatches.WithLabelValues("stored")), testutil.ToFloat64(m.usageBatches.WithLabelValues("duplicate")); s != 1 || dup != 1 {
		t.Errorf("usage batches stored, duplicate = %v, %v; want 1, 1", s, dup)
	}
	// Drops reported by the device are counted from the baseline (0, in
	// the first batch) on.
	sendUsage(t, stream, &agentv1.UsageBatch{BatchSeq: 11, DroppedTotal: 5, Events: []*agentv1.UsageEvent{usageTestEvent(now, 1)}})
	sendUsage(t, stream, &agentv1.UsageBatch{BatchSeq: 12, DroppedTotal: 12, Events: []*agentv1.UsageEvent{usageTestEvent(now, 1)}})
	if got := testutil.ToFloat64(m.usageDropped); got != 12 {
		t.Errorf("usage events dropped = %v; want 12", got)
	}
}

func TestUsageBatchRefusedStreamCarriesOn(t *testing.T) {
	t.Parallel()
	f := setup(t)
	d := f.enroll(t, "SN-U2")
	dev, err := f.st.GetDevice(context.Background(), f.org.ID, d.id)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clk.Now()
	bad := usageTestEvent(now, 1)
	bad.RemoteAddr = "not-an-address"
	ack := sendUsage(t, stream, &agentv1.UsageBatch{BatchSeq: 3, Events: []*agentv1.UsageEvent{usageTestEvent(now, 1), bad}})
	if ack.GetBatchSeq() != 3 || !strings.Contains(ack.GetRejected(), "events[1].remote_addr") {
		t.Errorf("ack of a bad batch = %v; want batch 3 refused naming events[1].remote_addr", ack)
	}
	// The stream goes on: heartbeats and a good batch.
	if err := stream.Send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	if ack := sendUsage(t, stream, &agentv1.UsageBatch{BatchSeq: 4, Events: []*agentv1.UsageEvent{usageTestEvent(now, 9)}}); ack.GetRejected() != "" {
		t.Fatalf("ack of a good batch after a bad one = %v; want stored", ack)
	}
	if got := f.storedUsage(t, dev.UserID); len(got) != 1 || got[0].BytesSent != 9 {
		t.Errorf("stored = %+v; want only the good batch's event", got)
	}
	if got := testutil.ToFloat64(f.svc.cfg.Metrics.usageBatches.WithLabelValues("rejected")); got != 1 {
		t.Errorf("usage batches rejected = %v; want 1", got)
	}
}

func TestUsageEventsValidation(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		edit    func(b *agentv1.UsageBatch, e *agentv1.UsageEvent)
		wantErr string // "" means valid
	}{
		{"valid", func(*agentv1.UsageBatch, *agentv1.UsageEvent) {}, ""},
		{"no domain (policy cidr)", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Domain, e.Provider = "", "other" }, ""},
		{"unknown uid", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Uid = nil }, ""},
		{"ipv4", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemoteAddr = "192.0.2.1" }, ""},
		{"zero seq", func(b *agentv1.UsageBatch, _ *agentv1.UsageEvent) { b.BatchSeq = 0 }, "batch_seq"},
		{"no events", func(b *agentv1.UsageBatch, _ *agentv1.UsageEvent) { b.Events = nil }, "events: 0 events"},
		{"too many events", func(b *agentv1.UsageBatch, e *agentv1.UsageEvent) {
			for range maxUsageEvents {
				b.Events = append(b.Events, e)
			}
		}, "events: 1001 events"},
		{"empty provider", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Provider = "" }, "events[0].provider"},
		{"provider with spaces", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Provider = "Open AI" }, "events[0].provider"},
		{"long provider", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Provider = strings.Repeat("a", 65) }, "events[0].provider"},
		{"bad domain", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Domain = "no spaces.example" }, "events[0].domain"},
		{"bad addr", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemoteAddr = "192.0.2.300" }, "events[0].remote_addr"},
		{"zoned addr", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemoteAddr = "fe80::1%eth0" }, "events[0].remote_addr"},
		{"unspecified addr", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemoteAddr = "0.0.0.0" }, "events[0].remote_addr"},
		{"port 0", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemotePort = 0 }, "events[0].remote_port"},
		{"port too big", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.RemotePort = 65536 }, "events[0].remote_port"},
		{"protocol", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.Protocol = "sctp" }, "events[0].protocol"},
		{"no start", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.StartedAtUnixNano = 0 }, "events[0].started_at"},
		{"ends before start", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.EndedAtUnixNano = e.StartedAtUnixNano - 1 }, "events[0].ended_at"},
		{"too long", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) {
			e.StartedAtUnixNano = now.Add(-40 * 24 * time.Hour).UnixNano()
		}, "events[0].ended_at"},
		{"too old", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) {
			e.StartedAtUnixNano, e.EndedAtUnixNano = now.Add(-600*24*time.Hour).UnixNano(), now.Add(-599*24*time.Hour).UnixNano()
		}, "events[0].started_at"},
		{"future", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) {
			e.EndedAtUnixNano = now.Add(25 * time.Hour).UnixNano()
		}, "events[0].ended_at"},
		{"huge bytes", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.BytesReceived = 1<<50 + 1 }, "events[0].bytes_sent"},
		{"long process name", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.ProcessName = strings.Repeat("x", 257) }, "events[0].process_name"},
		{"long process path", func(_ *agentv1.UsageBatch, e *agentv1.UsageEvent) { e.ProcessPath = "/" + strings.Repeat("x", 4096) }, "events[0].process_path"},
	} {
		e := usageTestEvent(now, 10)
		b := &agentv1.UsageBatch{BatchSeq: 1, Events: []*agentv1.UsageEvent{e}}
		tc.edit(b, e)
		got, err := usageEvents(b, now)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: usageEvents = %v; want valid", tc.name, err)
		case tc.wantErr == "" && len(got) != len(b.Events):
			t.Errorf("%s: usageEvents = %d events; want %d", tc.name, len(got), len(b.Events))
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: usageEvents = %v; want an error about %s", tc.name, err, tc.wantErr)
		}
	}
	e := usageTestEvent(now, 10)
	e.Uid = nil
	got, _ := usageEvents(&agentv1.UsageBatch{BatchSeq: 1, Events: []*agentv1.UsageEvent{e}}, now)
	if got[0].UID != -1 {
		t.Errorf("usageEvents(no uid).UID = %d; want -1 (unknown)", got[0].UID)
	}
}
