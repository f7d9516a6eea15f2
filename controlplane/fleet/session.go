package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// reasonExpiredUndelivered marks a command that expired before its device
// acknowledged it; a fresh one replaces it.
const reasonExpiredUndelivered = "expired_undelivered"

// session is one device's open stream on this replica.
type session struct {
	svc        *Service
	id         pki.DeviceIdentity
	dev        store.Device
	stream     agentv1.AgentService_ConnectServer
	cancel     context.CancelFunc
	wakeCh     chan struct{}
	outbox     chan *agentv1.ServerMessage
	agentState *agentv1.Hello

	// sent is touched only by sendLoop.
	sent map[uint64]bool
}

// wake asks the sender to look for undelivered commands.
func (s *session) wake() {
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// sendLoop is the only goroutine that sends on the stream.
func (s *session) sendLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wakeCh:
			if err := s.sendPending(ctx); err != nil {
				return err
			}
		case m := <-s.outbox:
			if err := s.stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// sendPending sends every unacknowledged command not yet sent on this
// stream, in sequence order. Commands sent on an earlier stream and never
// acknowledged are sent again: the agent answers duplicates idempotently.
func (s *session) sendPending(ctx context.Context) error {
	st := s.svc.cfg.Store
	cmds, err := st.ListUnackedCommands(ctx, s.id.OrgID, s.id.DeviceID)
	if err != nil {
		return s.svc.internal("listing pending commands", err)
	}
	now := s.svc.cfg.Clock.Now()
	for _, c := range cmds {
		if s.sent[c.Seq] {
			continue
		}
		if !now.Before(c.ExpiresAt) {
			if err := s.reissue(ctx, c); err != nil {
				return err
			}
			continue
		}
		sc, err := unmarshalSigned(c.Signed)
		if err != nil {
			return s.svc.internal("decoding stored command", err)
		}
		if err := s.stream.Send(&agentv1.ServerMessage{Msg: &agentv1.ServerMessage_Command{Command: sc}}); err != nil {
			return err
		}
		s.sent[c.Seq] = true
		if c.State == store.CommandPending {
			if err := st.MarkCommandDelivered(ctx, s.id.OrgID, s.id.DeviceID, c.Seq, now); err != nil {
				return s.svc.internal("marking command delivered", err)
			}
		}
		s.svc.log.Debug("command sent", "org", s.id.OrgID, "device", s.id.DeviceID, "seq", c.Seq, "kind", c.Kind)
	}
	return nil
}

// reissue replaces an expired, unacknowledged command by a fresh one with a
// new sequence; the store's notice wakes the sender for it.
func (s *session) reissue(ctx context.Context, c store.Command) error {
	if _, err := s.svc.cfg.Store.AckCommand(ctx, store.AckCommandParams{
		OrgID: c.OrgID, DeviceID: c.DeviceID, Seq: c.Seq, Applied: false,
		Reason: reasonExpiredUndelivered, Detail: "expired before the device acknowledged it; re-issued",
		At: s.svc.cfg.Clock.Now(),
	}); err != nil {
		return s.svc.internal("closing expired command", err)
	}
	if _, err := s.svc.cfg.Issuer.Issue(ctx, c.OrgID, c.DeviceID, c.LockoutID, c.Kind); err != nil {
		return s.svc.internal("re-issuing expired command", err)
	}
	return nil
}

func (s *session) send(ctx context.Context, m *agentv1.ServerMessage) {
	select {
	case s.outbox <- m:
	case <-ctx.Done():
	}
}

// recvLoop handles what the agent sends until the stream ends.
func (s *session) recvLoop(ctx context.Context) error {
	for {
		msg, err := s.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := msg.GetMsg().(type) {
		case *agentv1.AgentMessage_Heartbeat:
			if err := s.heartbeat(ctx, m.Heartbeat); err != nil {
				return err
			}
		case *agentv1.AgentMessage_Ack:
			if err := s.ack(ctx, m.Ack); err != nil {
				return err
			}
		case *agentv1.AgentMessage_Tamper:
			s.svc.cfg.Metrics.tamper.Inc()
			s.svc.log.Warn("agent reported tampering", "org", s.id.OrgID, "device", s.id.DeviceID,
				"kind", truncate(m.Tamper.GetKind(), 64), "detail", truncate(m.Tamper.GetDetail(), 512),
				"restored", m.Tamper.GetRestored())
		case *agentv1.AgentMessage_Renew:
			s.renew(ctx, m.Renew)
		case *agentv1.AgentMessage_Usage:
			if err := s.usage(ctx, m.Usage); err != nil {
				return err
			}
		case *agentv1.AgentMessage_Hello:
			return status.Error(codes.InvalidArgument, "hello is sent once, first")
		default:
			return status.Error(codes.InvalidArgument, "unknown agent message")
		}
	}
}

func (s *session) heartbeat(ctx context.Context, hb *agentv1.Heartbeat) error {
	now := s.svc.cfg.Clock.Now()
	s.agentState.Locked = hb.GetLocked()
	s.agentState.EnforcementActive = hb.GetEnforcementActive()
	if err := s.recordState(ctx, now); err != nil {
		return err
	}
	s.send(ctx, &agentv1.ServerMessage{Msg: &agentv1.ServerMessage_HeartbeatAck{
		HeartbeatAck: &agentv1.HeartbeatAck{ServerTimeUnixNano: now.UnixNano()},
	}})
	return nil
}

func (s *session) recordState(ctx context.Context, now time.Time) error {
	h := s.agentState
	if err := s.svc.cfg.Store.RecordDeviceState(ctx, store.RecordDeviceStateParams{
		OrgID: s.id.OrgID, DeviceID: s.id.DeviceID,
		AgentVersion:      truncate(h.GetAgentVersion(), maxFactLen),
		Enforcers:         h.GetCapabilities().GetEnforcers(),
		Unsupported:       h.GetCapabilities().GetUnsupported(),
		Locked:            h.GetLocked(),
		EnforcementActive: h.GetEnforcementActive(),
		LastAppliedSeq:    h.GetLastAppliedSequence(),
		At:                now,
	}); err != nil {
		return s.svc.internal("recording device state", err)
	}
	return nil
}

func (s *session) ack(ctx context.Context, a *agentv1.CommandAck) error {
	now := s.svc.cfg.Clock.Now()
	applied := a.GetStatus() == agentv1.AckStatus_ACK_STATUS_APPLIED
	if !applied && a.GetStatus() != agentv1.AckStatus_ACK_STATUS_REJECTED {
		return status.Error(codes.InvalidArgument, "ack status must be applied or rejected")
	}
	cmd, err := s.svc.cfg.Store.AckCommand(ctx, store.AckCommandParams{
		OrgID: s.id.OrgID, DeviceID: s.id.DeviceID, Seq: a.GetSequence(), Applied: applied,
		Reason: truncate(a.GetReason(), 64), Detail: truncate(a.GetDetail(), 1024), At: now,
	})
	if errors.Is(err, store.ErrNotFound) {
		// An ack for a command this device never had: log and carry on.
		s.svc.log.Warn("ack for unknown command", "org", s.id.OrgID, "device", s.id.DeviceID, "seq", a.GetSequence())
		return nil
	}
	if err != nil {
		return s.svc.internal("recording ack", err)
	}
	status := "applied"
	if !applied {
		status = "rejected"
	}
	s.svc.cfg.Metrics.acks.WithLabelValues(status, a.GetReason()).Inc()
	if applied && cmd.Kind == store.CommandLock && cmd.AckedAt != nil {
		s.svc.cfg.Metrics.lockLatency.Observe(cmd.AckedAt.Sub(cmd.CreatedAt).Seconds())
	}
	if applied {
		switch cmd.Kind {
		case store.CommandLock, store.CommandPolicyUpdate:
			s.agentState.Locked = true
		case store.CommandUnlock:
			s.agentState.Locked = false
		}
		if a.GetSequence() > s.agentState.LastAppliedSequence {
			s.agentState.LastAppliedSequence = a.GetSequence()
		}
		return s.recordState(ctx, now)
	}
	s.svc.log.Warn("agent rejected command", "org", s.id.OrgID, "device", s.id.DeviceID,
		"seq", a.GetSequence(), "reason", a.GetReason(), "detail", truncate(a.GetDetail(), 256))
	return nil
}

func (s *session) renew(ctx context.Context, r *agentv1.RenewRequest) {
	reply := func(der []byte, msg string) {
		s.send(ctx, &agentv1.ServerMessage{Msg: &agentv1.ServerMessage_Renew{
			Renew: &agentv1.RenewResponse{CertificateDer: der, Error: msg},
		}})
	}
	if len(r.GetCsrDer()) == 0 || len(r.GetCsrDer()) > maxCSRLen {
		reply(nil, "csr_der: required, at most 8 KiB")
		return
	}
	now := s.svc.cfg.Clock.Now()
	der, cert, err := s.svc.cfg.CA.SignDeviceCSR(r.GetCsrDer(), s.id, now, s.svc.cfg.DeviceCertLifetime)
	if err != nil {
		reply(nil, fmt.Sprintf("certificate request refused: %v", err))
		return
	}
	if err := s.svc.cfg.Store.SetDeviceCert(ctx, store.SetDeviceCertParams{
		OrgID: s.id.OrgID, DeviceID: s.id.DeviceID,
		CertSerial: cert.SerialNumber.Text(16), CertNotAfter: cert.NotAfter,
	}); err != nil {
		s.svc.log.Error("recording renewed certificate", "err", err)
		reply(nil, "recording the certificate failed; try again")
		return
	}
	s.svc.log.Info("device certificate renewed", "org", s.id.OrgID, "device", s.id.DeviceID, "not_after", cert.NotAfter)
	reply(der, "")
}
