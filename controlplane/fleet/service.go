package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// Limits on what an agent may send; anything larger is refused before use.
const (
	maxSecretLen   = 256
	maxCSRLen      = 8 << 10
	maxFactLen     = 256
	helloTimeout   = 10 * time.Second
	renewThreshold = 3 // renew when less than 1/renewThreshold of the lifetime is left
)

// Config wires a Service.
type Config struct {
	Store  store.Store
	CA     *pki.CA
	Keys   *pki.Keyring
	Issuer *Issuer
	Clock  clock.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// DeviceCertLifetime defaults to pki.DefaultDeviceCertLifetime.
	DeviceCertLifetime time.Duration
}

// Service implements enrollment and the agent stream.
type Service struct {
	agentv1.UnimplementedEnrollmentServiceServer
	agentv1.UnimplementedAgentServiceServer

	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[deviceKey]*session
	// usageDropped is the last dropped-events total each device reported
	// to this replica (see session.noteDropped).
	usageDropped map[deviceKey]uint64
}

type deviceKey struct{ org, device string }

// NewService returns a Service. Call Start before serving.
func NewService(cfg Config) *Service {
	if cfg.DeviceCertLifetime == 0 {
		cfg.DeviceCertLifetime = pki.DefaultDeviceCertLifetime
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil, cfg.Store)
	}
	return &Service{cfg: cfg, log: cfg.Logger, sessions: map[deviceKey]*session{}, usageDropped: map[deviceKey]uint64{}}
}

// Start subscribes to new commands (before any stream can load its pending
// ones, so none falls in a gap) and routes each to its device's stream
// until ctx ends.
func (s *Service) Start(ctx context.Context) error {
	notices, err := s.cfg.Store.SubscribeCommands(ctx)
	if err != nil {
		return fmt.Errorf("subscribing to commands: %w", err)
	}
	go func() {
		for n := range notices {
			s.mu.Lock()
			if n.DeviceID == "" {
				for _, sess := range s.sessions {
					sess.wake()
				}
			} else if sess := s.sessions[deviceKey{n.OrgID, n.DeviceID}]; sess != nil {
				sess.wake()
			}
			s.mu.Unlock()
		}
	}()
	return nil
}

// Connected reports whether a device has a stream open on this replica.
func (s *Service) Connected(orgID, deviceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[deviceKey{orgID, deviceID}] != nil
}

// Disconnect ends a device's stream on this replica, if it has one (used
// when the device is revoked: its certificate is refused from then on).
func (s *Service) Disconnect(orgID, deviceID string) {
	s.mu.Lock()
	sess := s.sessions[deviceKey{orgID, deviceID}]
	s.mu.Unlock()
	if sess != nil {
		sess.cancel()
	}
}

// Enroll turns an enrollment secret and a CSR into a device certificate.
func (s *Service) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	if err := validateEnroll(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// A bad request is refused before anything is recorded.
	if _, err := pki.ParseDeviceCSR(req.GetCsrDer()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request refused: %v", err)
	}
	now := s.cfg.Clock.Now()
	hash := sha256.Sum256([]byte(req.GetSecret()))
	secret, err := s.cfg.Store.GetEnrollmentSecretByHash(ctx, hash[:])
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Error(codes.Unauthenticated, "enrollment secret not recognized")
	}
	if err != nil {
		return nil, s.internal("looking up enrollment secret", err)
	}
	if secret.RevokedAt != nil || !now.Before(secret.ExpiresAt) {
		return nil, status.Error(codes.Unauthenticated, "enrollment secret expired or revoked")
	}
	facts := req.GetFacts()
	var (
		user    store.User
		dev     store.Device
		id      pki.DeviceIdentity
		certDER []byte
	)
	// One transaction: a refused request leaves no half-enrolled device.
	err = s.cfg.Store.InTx(ctx, func(st store.Store, _ any) error {
		var err error
		user, err = st.UpsertUser(ctx, store.UpsertUserParams{
			OrgID: secret.OrgID, Email: strings.ToLower(facts.GetUserEmail()), CreatedAt: now,
		})
		if err != nil {
			return s.internal("recording user", err)
		}
		dev, err = st.CreateDevice(ctx, store.CreateDeviceParams{
			OrgID:        secret.OrgID,
			UserID:       user.ID,
			Hostname:     facts.GetHostname(),
			OS:           facts.GetOs(),
			OSVersion:    facts.GetOsVersion(),
			Arch:         facts.GetArch(),
			Serial:       facts.GetSerial(),
			AgentVersion: facts.GetAgentVersion(),
			CreatedAt:    now,
		})
		if errors.Is(err, store.ErrConflict) {
			return status.Error(codes.AlreadyExists, "a device with this serial is already enrolled in the org; revoke it first")
		}
		if err != nil {
			return s.internal("recording device", err)
		}
		id = pki.DeviceIdentity{OrgID: secret.OrgID, DeviceID: dev.ID}
		var cert *x509.Certificate
		certDER, cert, err = s.cfg.CA.SignDeviceCSR(req.GetCsrDer(), id, now, s.cfg.DeviceCertLifetime)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "certificate request refused: %v", err)
		}
		if err := st.SetDeviceCert(ctx, store.SetDeviceCertParams{
			OrgID: id.OrgID, DeviceID: id.DeviceID, CertSerial: cert.SerialNumber.Text(16), CertNotAfter: cert.NotAfter,
		}); err != nil {
			return s.internal("recording device certificate", err)
		}
		// A device enrolled for a user who is locked out is locked at once.
		open, err := st.ListLockoutsPage(ctx, store.ListLockoutsParams{OrgID: id.OrgID, State: store.LockoutOpen, UserID: user.ID, Limit: 1})
		if err != nil {
			return s.internal("looking up the user's lockout", err)
		}
		for _, l := range open.Lockouts {
			if _, err := s.cfg.Issuer.IssueIn(ctx, st, id.OrgID, id.DeviceID, l.ID, store.CommandLock); err != nil {
				return s.internal("locking new device of locked-out user", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("device enrolled", "org", id.OrgID, "device", id.DeviceID, "user", user.ID, "hostname", dev.Hostname)
	return &agentv1.EnrollResponse{
		OrgId:            id.OrgID,
		DeviceId:         id.DeviceID,
		CertificateDer:   certDER,
		CaCertificateDer: s.cfg.CA.Certificate().Raw,
		CommandKeys:      s.cfg.Keys.VerificationKeys(),
	}, nil
}

func validateEnroll(req *agentv1.EnrollRequest) error {
	if n := len(req.GetSecret()); n == 0 || n > maxSecretLen {
		return errors.New("secret: required, at most 256 bytes")
	}
	if n := len(req.GetCsrDer()); n == 0 || n > maxCSRLen {
		return errors.New("csr_der: required, at most 8 KiB")
	}
	f := req.GetFacts()
	if f == nil {
		return errors.New("facts: required")
	}
	email := f.GetUserEmail()
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return fmt.Errorf("facts.user_email: %q is not a plain email address", email)
	}
	if f.GetHostname() == "" {
		return errors.New("facts.hostname: required")
	}
	for name, v := range map[string]string{
		"hostname": f.GetHostname(), "os": f.GetOs(), "os_version": f.GetOsVersion(),
		"arch": f.GetArch(), "serial": f.GetSerial(), "agent_version": f.GetAgentVersion(),
	} {
		if len(v) > maxFactLen {
			return fmt.Errorf("facts.%s: at most %d bytes", name, maxFactLen)
		}
	}
	return nil
}

// Connect serves one device's stream.
func (s *Service) Connect(stream agentv1.AgentService_ConnectServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	id, serial, err := peerIdentity(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	dev, err := s.cfg.Store.GetDevice(ctx, id.OrgID, id.DeviceID)
	if errors.Is(err, store.ErrNotFound) {
		return status.Error(codes.PermissionDenied, "device unknown")
	}
	if err != nil {
		return s.internal("loading device", err)
	}
	if dev.RevokedAt != nil {
		return status.Error(codes.PermissionDenied, "device certificate revoked")
	}
	if dev.CertSerial != serial {
		return status.Error(codes.PermissionDenied, "device certificate superseded or revoked")
	}

	first, err := recvWithTimeout(ctx, stream, helloTimeout)
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message on a stream must be hello")
	}
	now := s.cfg.Clock.Now()
	if err := s.cfg.Store.RecordDeviceState(ctx, store.RecordDeviceStateParams{
		OrgID: id.OrgID, DeviceID: id.DeviceID,
		AgentVersion:      truncate(hello.GetAgentVersion(), maxFactLen),
		Enforcers:         hello.GetCapabilities().GetEnforcers(),
		Unsupported:       hello.GetCapabilities().GetUnsupported(),
		Locked:            hello.GetLocked(),
		EnforcementActive: hello.GetEnforcementActive(),
		LastAppliedSeq:    hello.GetLastAppliedSequence(),
		At:                now,
	}); err != nil {
		return s.internal("recording hello", err)
	}

	sess := &session{
		svc: s, id: id, dev: dev, stream: stream, cancel: cancel,
		wakeCh: make(chan struct{}, 1), outbox: make(chan *agentv1.ServerMessage, 16),
		sent: map[uint64]bool{}, agentState: hello,
	}
	// The first server message tells the agent its hello was accepted.
	if err := stream.Send(&agentv1.ServerMessage{Msg: &agentv1.ServerMessage_HeartbeatAck{
		HeartbeatAck: &agentv1.HeartbeatAck{ServerTimeUnixNano: now.UnixNano()},
	}}); err != nil {
		return err
	}
	s.register(sess)
	defer s.unregister(sess)
	if err := s.cfg.Store.SetDeviceConnected(ctx, id.OrgID, id.DeviceID, true, now); err != nil {
		return s.internal("marking device connected", err)
	}
	defer func() {
		// The stream's context is done; record the disconnect regardless.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer dcancel()
		if err := s.cfg.Store.SetDeviceConnected(dctx, id.OrgID, id.DeviceID, false, s.cfg.Clock.Now()); err != nil {
			s.log.Warn("marking device disconnected", "org", id.OrgID, "device", id.DeviceID, "err", err)
		}
	}()
	s.log.Info("agent connected", "org", id.OrgID, "device", id.DeviceID,
		"locked", hello.GetLocked(), "last_applied", hello.GetLastAppliedSequence())

	sendErr := make(chan error, 1)
	go func() { sendErr <- sess.sendLoop(ctx) }()
	sess.wake()
	recvErr := sess.recvLoop(ctx)
	cancel()
	if err := <-sendErr; err != nil && recvErr == nil {
		recvErr = err
	}
	s.log.Info("agent disconnected", "org", id.OrgID, "device", id.DeviceID, "reason", recvErr)
	if recvErr == nil || errors.Is(recvErr, context.Canceled) {
		return nil
	}
	return recvErr
}

func (s *Service) register(sess *session) {
	key := deviceKey{sess.id.OrgID, sess.id.DeviceID}
	s.mu.Lock()
	old := s.sessions[key]
	s.sessions[key] = sess
	n := len(s.sessions)
	s.mu.Unlock()
	if old != nil {
		// A device has one stream; a newer one replaces the older.
		old.cancel()
	}
	s.cfg.Metrics.connected.Set(float64(n))
}

func (s *Service) unregister(sess *session) {
	key := deviceKey{sess.id.OrgID, sess.id.DeviceID}
	s.mu.Lock()
	if s.sessions[key] == sess {
		delete(s.sessions, key)
	}
	n := len(s.sessions)
	s.mu.Unlock()
	s.cfg.Metrics.connected.Set(float64(n))
}

func (s *Service) internal(what string, err error) error {
	s.log.Error(what, "err", err)
	return status.Error(codes.Internal, what+" failed")
}

// peerIdentity returns the device identity and certificate serial of the
// verified client certificate on the connection.
func peerIdentity(ctx context.Context) (pki.DeviceIdentity, string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.DeviceIdentity{}, "", errors.New("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.DeviceIdentity{}, "", errors.New("stream requires TLS")
	}
	id, err := pki.PeerIdentity(info.State)
	if err != nil {
		return pki.DeviceIdentity{}, "", err
	}
	return id, info.State.VerifiedChains[0][0].SerialNumber.Text(16), nil
}

func recvWithTimeout(ctx context.Context, stream agentv1.AgentService_ConnectServer, d time.Duration) (*agentv1.AgentMessage, error) {
	type result struct {
		msg *agentv1.AgentMessage
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.msg, r.err
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no hello received")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// unmarshalSigned decodes a stored envelope.
func unmarshalSigned(b []byte) (*agentv1.SignedCommand, error) {
	var sc agentv1.SignedCommand
	if err := proto.Unmarshal(b, &sc); err != nil {
		return nil, fmt.Errorf("decoding stored command: %w", err)
	}
	return &sc, nil
}
