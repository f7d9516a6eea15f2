package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

type fleetFixture struct {
	st     store.Store
	ca     *pki.CA
	keys   *pki.Keyring
	clk    *clock.Fake
	svc    *Service
	issuer *Issuer
	addr   string
	org    store.Org
	secret string
}

func setup(t *testing.T) *fleetFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The fake clock starts at the real time: TLS checks validity by the real clock.
	clk := clock.NewFake(time.Now())
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.LoadOrCreateSigningKeys(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleetFixture{st: st, ca: ca, keys: keys, clk: clk}
	f.issuer = NewIssuer(st, keys, clk)
	f.svc = NewService(Config{Store: st, CA: ca, Keys: keys, Issuer: f.issuer, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := f.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.IssueServerCert([]string{"127.0.0.1"}, clk.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// WaitForHandlers: Stop (a cleanup that runs before the store closes)
	// returns only once no handler touches the store or its directory.
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSConfig(ca, serverCert))), grpc.WaitForHandlers(true))
	agentv1.RegisterEnrollmentServiceServer(gs, f.svc)
	agentv1.RegisterAgentServiceServer(gs, f.svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	f.addr = ln.Addr().String()
	f.org, err = st.CreateOrg(ctx, store.CreateOrgParams{Name: "org", CreatedAt: clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	f.secret = "tke_test-secret"
	h := sha256.Sum256([]byte(f.secret))
	if _, err := st.CreateEnrollmentSecret(ctx, store.CreateEnrollmentSecretParams{
		OrgID: f.org.ID, Name: "t", Hash: h[:], CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

func newCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

func (f *fleetFixture) enrollClient(t *testing.T) agentv1.EnrollmentServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.EnrollmentTLSConfig(f.ca.Pin(), "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentv1.NewEnrollmentServiceClient(conn)
}

type device struct {
	id      string
	tlsCert tls.Certificate
}

func (f *fleetFixture) enroll(t *testing.T, serial string) device {
	t.Helper()
	key, csr := newCSR(t)
	resp, err := f.enrollClient(t).Enroll(context.Background(), &agentv1.EnrollRequest{
		Secret: f.secret, CsrDer: csr,
		Facts: &agentv1.DeviceFacts{Hostname: "host", Os: "linux", Serial: serial, UserEmail: "alice@example.com"},
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	return device{id: resp.GetDeviceId(), tlsCert: tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}}
}

// connect opens a stream as the device, says hello and waits for the
// server's first message.
func (f *fleetFixture) connect(t *testing.T, d device, lastApplied uint64) (agentv1.AgentService_ConnectClient, error) {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.AgentTLSConfig(f.ca.Certificate().Raw, d.tlsCert, "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := agentv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{LastAppliedSequence: lastApplied, AgentVersion: "test"}}}); err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if first.GetHeartbeatAck() == nil {
		t.Fatalf("first server message = %v; want the hello's heartbeat ack", first)
	}
	return stream, nil
}

func recvCommand(t *testing.T, stream agentv1.AgentService_ConnectClient) *agentv1.SignedCommand {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("receiving a command: %v", err)
		}
		if c := m.GetCommand(); c != nil {
			return c
		}
	}
}

func TestCommandDeliveredAckedAndResent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	d := f.enroll(t, "SN1")
	// Issued while the device is offline: stored, delivered on connect.
	if _, err := f.issuer.Issue(ctx, f.org.ID, d.id, "", store.CommandLock); err != nil {
		t.Fatal(err)
	}
	stream, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := recvCommand(t, stream)
	v, err := pki.NewVerifier(f.org.ID, d.id, f.keys.VerificationKeys())
	if err != nil {
		t.Fatal(err)
	}
	body, err := v.Verify(sc, 0, f.clk.Now())
	if err != nil || body.GetSequence() != 1 || body.GetKind() != agentv1.CommandKind_COMMAND_KIND_LOCK || len(body.GetPolicy().GetDomains()) == 0 {
		t.Fatalf("Verify(first command) = %v, %v; want lock #1 with the default domains", body, err)
	}
	// Not acknowledged: a new stream gets it again.
	stream.CloseSend()
	stream2, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	again := recvCommand(t, stream2)
	if string(again.GetBody()) != string(sc.GetBody()) {
		t.Error("the unacknowledged command was not re-sent identically")
	}
	if err := stream2.Send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Ack{Ack: &agentv1.CommandAck{Sequence: 1, Status: agentv1.AckStatus_ACK_STATUS_APPLIED}}}); err != nil {
		t.Fatal(err)
	}
	// A command issued while connected arrives at once.
	if _, err := f.issuer.Issue(ctx, f.org.ID, d.id, "", store.CommandUnlock); err != nil {
		t.Fatal(err)
	}
	next := recvCommand(t, stream2)
	if next.GetSequenceHint() != 2 {
		t.Errorf("live command sequence = %d; want 2", next.GetSequenceHint())
	}
	waitState(t, f, d.id, 1, store.CommandApplied)
}

func waitState(t *testing.T, f *fleetFixture, deviceID string, seq uint64, want store.CommandState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := f.st.GetCommand(context.Background(), f.org.ID, deviceID, seq)
		if err == nil && c.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %d state = %v (%v); want %s", seq, c.State, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExpiredCommandIsReissued(t *testing.T) {
	t.Parallel()
	f := setup(t)
	d := f.enroll(t, "SN1")
	if _, err := f.issuer.Issue(context.Background(), f.org.ID, d.id, "", store.CommandLock); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(DefaultCommandLifetime + time.Minute)
	stream, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := recvCommand(t, stream)
	if sc.GetSequenceHint() != 2 {
		t.Errorf("command after expiry has sequence %d; want a fresh #2", sc.GetSequenceHint())
	}
	old, err := f.st.GetCommand(context.Background(), f.org.ID, d.id, 1)
	if err != nil || old.State != store.CommandRejected || old.Reason != reasonExpiredUndelivered {
		t.Errorf("expired command = %+v, %v; want rejected %s", old, err, reasonExpiredUndelivered)
	}
}

func TestRevokedOrSupersededCertificateRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	d := f.enroll(t, "SN1")
	stream, err := f.connect(t, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Renew over the stream: the new certificate works, the old one no longer.
	key, csr := newCSR(t)
	if err := stream.Send(&agentv1.AgentMessage{Msg: &agentv1.AgentMessage_Renew{Renew: &agentv1.RenewRequest{CsrDer: csr}}}); err != nil {
		t.Fatal(err)
	}
	var renewed *agentv1.RenewResponse
	for renewed == nil {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		renewed = m.GetRenew()
	}
	if renewed.GetError() != "" {
		t.Fatalf("renewal refused: %s", renewed.GetError())
	}
	fresh := device{id: d.id, tlsCert: tls.Certificate{Certificate: [][]byte{renewed.GetCertificateDer()}, PrivateKey: key}}
	if _, err := f.connect(t, fresh, 0); err != nil {
		t.Fatalf("connecting with the renewed certificate: %v", err)
	}
	if _, err := f.connect(t, d, 0); status.Code(err) != codes.PermissionDenied {
		t.Errorf("connecting with the superseded certificate = %v; want PermissionDenied", err)
	}
	if err := f.st.RevokeDevice(context.Background(), f.org.ID, d.id, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.connect(t, fresh, 0); status.Code(err) != codes.PermissionDenied {
		t.Errorf("connecting as a revoked device = %v; want PermissionDenied", err)
	}
}

func TestEnrollRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, csr := newCSR(t)
	facts := &agentv1.DeviceFacts{Hostname: "h", Os: "linux", Serial: "SN", UserEmail: "a@example.com"}
	expired := "tke_expired"
	h := sha256.Sum256([]byte(expired))
	if _, err := f.st.CreateEnrollmentSecret(context.Background(), store.CreateEnrollmentSecretParams{
		OrgID: f.org.ID, Name: "old", Hash: h[:], CreatedAt: f.clk.Now().Add(-2 * time.Hour), ExpiresAt: f.clk.Now().Add(-time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  *agentv1.EnrollRequest
		want codes.Code
	}{
		{"unknown secret", &agentv1.EnrollRequest{Secret: "tke_nope", CsrDer: csr, Facts: facts}, codes.Unauthenticated},
		{"expired secret", &agentv1.EnrollRequest{Secret: expired, CsrDer: csr, Facts: facts}, codes.Unauthenticated},
		{"no facts", &agentv1.EnrollRequest{Secret: f.secret, CsrDer: csr}, codes.InvalidArgument},
		{"bad email", &agentv1.EnrollRequest{Secret: f.secret, CsrDer: csr, Facts: &agentv1.DeviceFacts{Hostname: "h", UserEmail: "Alice <a@example.com>"}}, codes.InvalidArgument},
		{"garbage csr", &agentv1.EnrollRequest{Secret: f.secret, CsrDer: []byte("not a csr"), Facts: facts}, codes.InvalidArgument},
		{"no csr", &agentv1.EnrollRequest{Secret: f.secret, Facts: facts}, codes.InvalidArgument},
	}
	client := f.enrollClient(t)
	for _, tc := range cases {
		_, err := client.Enroll(context.Background(), tc.req)
		if status.Code(err) != tc.want {
			t.Errorf("Enroll(%s) = %v; want %v", tc.name, err, tc.want)
		}
	}
	devices, err := f.st.ListDevices(context.Background(), store.ListDevicesParams{OrgID: f.org.ID, IncludeRevoked: true})
	if err != nil || len(devices) != 0 {
		t.Errorf("devices after refused enrollments = %d, %v; want none", len(devices), err)
	}
}

// TestEnrollLockedOutUserLocksAtOnce: a device enrolled for a user who is
// already locked out gets its lock before it first connects.
func TestEnrollLockedOutUserLocksAtOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	u, err := f.st.UpsertUser(ctx, store.UpsertUserParams{OrgID: f.org.ID, Email: "alice@example.com", CreatedAt: f.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := f.st.CreateLockout(ctx, store.CreateLockoutParams{OrgID: f.org.ID, UserID: u.ID, Trigger: "test", CreatedAt: f.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	d := f.enroll(t, "SN-LATE")
	cmds, err := f.st.ListUnackedCommands(ctx, f.org.ID, d.id)
	if err != nil || len(cmds) != 1 || cmds[0].Kind != store.CommandLock || cmds[0].LockoutID != l.ID {
		t.Fatalf("commands of the new device = %+v, %v; want one lock for lockout %s", cmds, err, l.ID)
	}
}
