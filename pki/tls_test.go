package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// handshakeResult is what each side of a test handshake saw.
type handshakeResult struct {
	serverErr error
	clientErr error
	server    tls.ConnectionState
}

// handshake runs a real TLS handshake over loopback TCP. The server writes one
// byte after its handshake and the client reads it, so that a client
// certificate refused by the server after the client's side of a TLS 1.3
// handshake completed still shows up as a client error.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	type serverOut struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverOut, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		defer conn.Close()
		conn.SetDeadline(deadline)
		srv := tls.Server(conn, serverCfg)
		if err := srv.Handshake(); err != nil {
			done <- serverOut{err: err}
			return
		}
		_, err = srv.Write([]byte{1})
		done <- serverOut{err: err, state: srv.ConnectionState()}
	}()

	var res handshakeResult
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dialing loopback: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	cl := tls.Client(conn, clientCfg)
	res.clientErr = cl.Handshake()
	if res.clientErr == nil {
		_, res.clientErr = io.ReadFull(cl, make([]byte, 1))
	}
	out := <-done
	res.serverErr, res.server = out.err, out.state
	return res
}

func fixedTime(cfg *tls.Config, now time.Time) *tls.Config {
	cfg.Time = func() time.Time { return now }
	return cfg
}

func TestMTLSHandshake(t *testing.T) {
	t.Parallel()
	const host = "control.example.com"
	ca := newTestCA(t)
	other := newTestCA(t)
	serverCert, err := ca.IssueServerCert([]string{host}, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	otherServerCert, err := other.IssueServerCert([]string{host}, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256Cert := newDeviceCert(t, ca, newP256(t), id, testNow)
	edCert := newDeviceCert(t, ca, edKey, id, testNow)
	foreignCert := newDeviceCert(t, other, newP256(t), id, testNow)

	tests := []struct {
		name       string
		server     tls.Certificate
		client     tls.Certificate
		now        time.Time
		maxVersion uint16
		forceSend  bool // send the client certificate even if the server's CA list does not name its issuer
		wantOK     bool
		wantID     bool   // PeerIdentity succeeds on the server side
		wantErr    string // in the refusing side's error, when !wantOK
	}{
		{"P-256 device certificate", serverCert, p256Cert, testNow, 0, false, true, true, ""},
		{"Ed25519 device certificate", serverCert, edCert, testNow, 0, false, true, true, ""},
		{"no client certificate (enrollment)", serverCert, tls.Certificate{}, testNow, 0, false, true, false, ""},
		{"device certificate from another CA", serverCert, foreignCert, testNow, 0, true, false, false, "server: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		// Go's client withholds a certificate whose issuer the server did not
		// ask for; the connection then carries no identity.
		{"device certificate from another CA, withheld", serverCert, foreignCert, testNow, 0, false, true, false, ""},
		{"expired device certificate", serverCert, p256Cert, testNow.Add(DefaultDeviceCertLifetime + time.Hour), 0, true, false, false, "server: tls: failed to verify certificate: x509: certificate has expired"},
		{"TLS 1.2 client", serverCert, p256Cert, testNow, tls.VersionTLS12, false, false, false, "server: tls: client offered only unsupported versions"},
		{"server certificate from another CA", otherServerCert, p256Cert, testNow, 0, false, false, false, "client: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			serverCfg := fixedTime(ServerTLSConfig(ca, tt.server), tt.now)
			clientCfg := fixedTime(AgentTLSConfig(ca.Certificate().Raw, tt.client, host), tt.now)
			if tt.forceSend {
				clientCfg.Certificates = nil
				clientCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tt.client, nil }
			}
			if tt.maxVersion != 0 {
				clientCfg.MinVersion, clientCfg.MaxVersion = tls.VersionTLS12, tt.maxVersion
			}
			res := handshake(t, serverCfg, clientCfg)
			if ok := res.serverErr == nil && res.clientErr == nil; ok != tt.wantOK {
				t.Fatalf("handshake(%s): server error %v, client error %v; want ok=%v", tt.name, res.serverErr, res.clientErr, tt.wantOK)
			}
			if !tt.wantOK {
				if errs := fmt.Sprintf("server: %v; client: %v", res.serverErr, res.clientErr); !strings.Contains(errs, tt.wantErr) {
					t.Errorf("handshake(%s) errors = %s; want %q", tt.name, errs, tt.wantErr)
				}
				return
			}
			if res.server.Version != tls.VersionTLS13 {
				t.Errorf("handshake(%s) version = %#x; want TLS 1.3", tt.name, res.server.Version)
			}
			got, err := PeerIdentity(res.server)
			if (err == nil) != tt.wantID {
				t.Fatalf("PeerIdentity(%s) = %v, %v; want ok=%v", tt.name, got, err, tt.wantID)
			}
			if err == nil && got != id {
				t.Errorf("PeerIdentity(%s) = %v; want %v", tt.name, got, id)
			}
		})
	}
}

func TestAgentTLSConfigBadCA(t *testing.T) {
	t.Parallel()
	const host = "control.example.com"
	ca := newTestCA(t)
	serverCert, err := ca.IssueServerCert([]string{host}, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := handshake(t, fixedTime(ServerTLSConfig(ca, serverCert), testNow),
		fixedTime(AgentTLSConfig([]byte("not a certificate"), tls.Certificate{}, host), testNow))
	if res.clientErr == nil {
		t.Errorf("handshake with AgentTLSConfig(unparsable CA) succeeded; want it to trust no server")
	}
}

// TestEnrollmentHandshake runs enrollment's pinned handshake against the system
// clock, since VerifyPinnedChain uses it.
func TestEnrollmentHandshake(t *testing.T) {
	t.Parallel()
	const host = "control.example.com"
	now := time.Now()
	ca, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.IssueServerCert([]string{host}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	leafOnly := serverCert
	leafOnly.Certificate = leafOnly.Certificate[:1]

	tests := []struct {
		name       string
		server     tls.Certificate
		pin        string
		serverName string
		wantOK     bool
	}{
		{"right pin", serverCert, ca.Pin(), host, true},
		{"wrong pin", serverCert, other.Pin(), host, false},
		{"wrong server name", serverCert, ca.Pin(), "other.example.com", false},
		{"server chain without the CA", leafOnly, ca.Pin(), host, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := handshake(t, ServerTLSConfig(ca, tt.server), EnrollmentTLSConfig(tt.pin, tt.serverName))
			if ok := res.serverErr == nil && res.clientErr == nil; ok != tt.wantOK {
				t.Errorf("handshake(%s): server error %v, client error %v; want ok=%v", tt.name, res.serverErr, res.clientErr, tt.wantOK)
			}
			if !tt.wantOK && res.clientErr != nil && errors.Is(res.clientErr, io.EOF) {
				t.Errorf("handshake(%s): client saw EOF; want the pin verification error", tt.name)
			}
		})
	}
}
