package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// Limits on a usage batch; anything outside them refuses the whole batch.
const (
	maxUsageEvents      = 1000
	maxUsageProvider    = 64
	maxUsageDomain      = 253
	maxUsageProcessName = 256  // telemetry.MaxProcessName
	maxUsageProcessPath = 4096 // telemetry.MaxProcessPath
	maxUsageBytes       = 1 << 50
	// Events may have waited on a device offline for months; beyond a
	// year and a half (past any retention) they are refused.
	maxUsageAge = 550 * 24 * time.Hour
	// Device clocks drift; an event ending further ahead is refused.
	maxUsageClockSkew = 24 * time.Hour
	// One connection lasting longer than this is not believable.
	maxUsageDuration = 31 * 24 * time.Hour
)

// usage stores one batch of the device's usage and acknowledges it. The
// org, device and user come from the stream's identity, never from the
// batch. A batch that fails validation is refused with the reason in its
// ack (the agent drops it); the stream carries on.
func (s *session) usage(ctx context.Context, b *agentv1.UsageBatch) error {
	now := s.svc.cfg.Clock.Now()
	m := s.svc.cfg.Metrics
	s.noteDropped(b.GetDroppedTotal())
	ack := func(rejected string) {
		s.send(ctx, &agentv1.ServerMessage{Msg: &agentv1.ServerMessage_UsageAck{
			UsageAck: &agentv1.UsageAck{BatchSeq: b.GetBatchSeq(), Rejected: rejected},
		}})
	}
	events, err := usageEvents(b, now)
	if err != nil {
		m.usageBatches.WithLabelValues("rejected").Inc()
		s.svc.log.Warn("usage batch refused", "org", s.id.OrgID, "device", s.id.DeviceID, "batch_seq", b.GetBatchSeq(), "reason", err)
		ack(err.Error())
		return nil
	}
	for i := range events {
		events[i].OrgID, events[i].DeviceID, events[i].UserID = s.id.OrgID, s.id.DeviceID, s.dev.UserID
	}
	applied, err := s.svc.cfg.Store.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{
		OrgID: s.id.OrgID, DeviceID: s.id.DeviceID, UserID: s.dev.UserID,
		BatchSeq: b.GetBatchSeq(), Events: events, At: now,
	})
	if errors.Is(err, store.ErrNotFound) {
		return status.Error(codes.PermissionDenied, "device unknown")
	}
	if err != nil {
		// Not acknowledged: the agent sends it again on its next stream.
		return s.svc.internal("storing usage batch", err)
	}
	if applied {
		m.usageBatches.WithLabelValues("stored").Inc()
		m.usageEvents.Add(float64(len(events)))
	} else {
		m.usageBatches.WithLabelValues("duplicate").Inc()
	}
	ack("")
	return nil
}

// noteDropped counts the events the device says it dropped since it last
// told this replica. The first report a replica sees only sets the
// baseline (what came before it was counted elsewhere, or before a
// restart); it is logged either way.
func (s *session) noteDropped(total uint64) {
	key := deviceKey{s.id.OrgID, s.id.DeviceID}
	s.svc.mu.Lock()
	last, seen := s.svc.usageDropped[key]
	s.svc.usageDropped[key] = total
	s.svc.mu.Unlock()
	switch {
	case seen && total > last:
		s.svc.cfg.Metrics.usageDropped.Add(float64(total - last))
		s.svc.log.Warn("device dropped usage events (buffer full while offline, or refused batches)",
			"org", s.id.OrgID, "device", s.id.DeviceID, "new", total-last, "dropped_total", total)
	case !seen && total > 0:
		s.svc.log.Warn("device has dropped usage events", "org", s.id.OrgID, "device", s.id.DeviceID, "dropped_total", total)
	}
}

// usageEvents validates a batch and converts its events; the error names
// the first offending field.
func usageEvents(b *agentv1.UsageBatch, now time.Time) ([]store.UsageEvent, error) {
	if b.GetBatchSeq() == 0 {
		return nil, errors.New("batch_seq: must be positive")
	}
	if n := len(b.GetEvents()); n == 0 || n > maxUsageEvents {
		return nil, fmt.Errorf("events: %d events; want 1 to %d", n, maxUsageEvents)
	}
	out := make([]store.UsageEvent, len(b.GetEvents()))
	for i, ev := range b.GetEvents() {
		e, err := usageEvent(ev, now)
		if err != nil {
			return nil, fmt.Errorf("events[%d].%w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

func usageEvent(ev *agentv1.UsageEvent, now time.Time) (store.UsageEvent, error) {
	var zero store.UsageEvent
	if p := ev.GetProvider(); p == "" || len(p) > maxUsageProvider || !isSlug(p) {
		return zero, fmt.Errorf("provider: %q is not a provider name (lower-case letters, digits, hyphens; at most %d)", truncate(p, 80), maxUsageProvider)
	}
	if d := ev.GetDomain(); d != "" {
		if len(d) > maxUsageDomain {
			return zero, fmt.Errorf("domain: longer than %d bytes", maxUsageDomain)
		}
		if err := platform.ValidateDomain(d); err != nil {
			return zero, fmt.Errorf("domain: %v", err)
		}
	}
	addr, err := netip.ParseAddr(ev.GetRemoteAddr())
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() {
		return zero, fmt.Errorf("remote_addr: %q is not an IP address", truncate(ev.GetRemoteAddr(), 80))
	}
	if p := ev.GetRemotePort(); p == 0 || p > 65535 {
		return zero, fmt.Errorf("remote_port: %d is not a port (1 to 65535)", p)
	}
	if pr := ev.GetProtocol(); pr != "tcp" && pr != "udp" {
		return zero, fmt.Errorf("protocol: %q; want tcp or udp", truncate(pr, 80))
	}
	started, ended := time.Unix(0, ev.GetStartedAtUnixNano()).UTC(), time.Unix(0, ev.GetEndedAtUnixNano()).UTC()
	switch {
	case ev.GetStartedAtUnixNano() <= 0:
		return zero, errors.New("started_at_unix_nano: required")
	case ended.Before(started):
		return zero, fmt.Errorf("ended_at_unix_nano: %s is before the start %s", ended.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano))
	case ended.Sub(started) > maxUsageDuration:
		return zero, fmt.Errorf("ended_at_unix_nano: a connection of %s is longer than %s", ended.Sub(started), maxUsageDuration)
	case started.Before(now.Add(-maxUsageAge)):
		return zero, fmt.Errorf("started_at_unix_nano: %s is more than %s ago", started.Format(time.RFC3339), maxUsageAge)
	case ended.After(now.Add(maxUsageClockSkew)):
		return zero, fmt.Errorf("ended_at_unix_nano: %s is in the future (the device clock is more than %s ahead)", ended.Format(time.RFC3339), maxUsageClockSkew)
	}
	if ev.GetBytesSent() > maxUsageBytes || ev.GetBytesReceived() > maxUsageBytes {
		return zero, fmt.Errorf("bytes_sent, bytes_received: %d, %d; at most %d", ev.GetBytesSent(), ev.GetBytesReceived(), uint64(maxUsageBytes))
	}
	if len(ev.GetProcessName()) > maxUsageProcessName {
		return zero, fmt.Errorf("process_name: longer than %d bytes", maxUsageProcessName)
	}
	if len(ev.GetProcessPath()) > maxUsageProcessPath {
		return zero, fmt.Errorf("process_path: longer than %d bytes", maxUsageProcessPath)
	}
	uid := int64(-1)
	if ev.Uid != nil {
		uid = int64(ev.GetUid())
	}
	return store.UsageEvent{
		Source:   store.UsageSourceDevice,
		Provider: ev.GetProvider(), Domain: ev.GetDomain(),
		RemoteAddr: addr.Unmap().String(), RemotePort: int(ev.GetRemotePort()), Protocol: ev.GetProtocol(),
		StartedAt: started, EndedAt: ended,
		BytesSent: int64(ev.GetBytesSent()), BytesReceived: int64(ev.GetBytesReceived()),
		ProcessName: ev.GetProcessName(), ProcessPath: ev.GetProcessPath(),
		PID: int64(ev.GetPid()), UID: uid,
	}, nil
}

func isSlug(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
