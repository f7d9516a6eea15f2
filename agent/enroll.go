package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/toktra/toktra/internal/atomicfile"
	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// EnrollOptions are what the MDM gives the agent.
type EnrollOptions struct {
	// Server is the control plane's agent address, host:port.
	Server string
	// Secret is the org's enrollment secret.
	Secret string
	// CAPin is "sha256:<hex>" of the control plane CA's public key; checked
	// before the secret is sent.
	CAPin     string
	UserEmail string
	StateDir  StateDir
	// Facts override what the agent detects (tests, MDM-provided serials).
	Facts   *agentv1.DeviceFacts
	Version string
	Now     func() time.Time
}

// Enroll makes the device's key pair, sends a CSR with the secret over TLS
// pinned to the CA, and stores the identity it gets back. The private key
// never leaves the device.
func Enroll(ctx context.Context, o EnrollOptions) (Identity, error) {
	if err := validateEnrollOptions(o); err != nil {
		return Identity{}, err
	}
	if _, err := o.StateDir.LoadIdentity(); err == nil {
		return Identity{}, fmt.Errorf("already enrolled (state dir %s); remove it to enroll again", o.StateDir)
	}
	if err := o.StateDir.ensure(); err != nil {
		return Identity{}, err
	}
	host, _, err := net.SplitHostPort(o.Server)
	if err != nil {
		return Identity{}, fmt.Errorf("server %q: want host:port: %w", o.Server, err)
	}
	key, csrDER, err := newKeyAndCSR()
	if err != nil {
		return Identity{}, err
	}
	facts := o.Facts
	if facts == nil {
		facts = DetectFacts(o.Version)
	}
	facts.UserEmail = o.UserEmail
	facts.AgentVersion = o.Version

	conn, err := grpc.NewClient(o.Server, grpc.WithTransportCredentials(credentials.NewTLS(pki.EnrollmentTLSConfig(o.CAPin, host))))
	if err != nil {
		return Identity{}, fmt.Errorf("connecting to %s: %w", o.Server, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := agentv1.NewEnrollmentServiceClient(conn).Enroll(ctx, &agentv1.EnrollRequest{
		Secret: o.Secret, CsrDer: csrDER, Facts: facts,
	})
	if err != nil {
		return Identity{}, fmt.Errorf("enrolling with %s: %w", o.Server, err)
	}
	if err := checkEnrollResponse(resp, key); err != nil {
		return Identity{}, err
	}
	id := Identity{
		Server: o.Server, ServerName: host, OrgID: resp.GetOrgId(), DeviceID: resp.GetDeviceId(),
		UserEmail: o.UserEmail, EnrolledAt: o.Now().UTC(),
		Facts: map[string]string{"hostname": facts.GetHostname(), "os": facts.GetOs(), "serial": facts.GetSerial()},
	}
	for _, k := range resp.GetCommandKeys() {
		id.CommandKeys = append(id.CommandKeys, CommandKey{KeyID: k.GetKeyId(), PublicKey: k.GetPublicKey()})
	}
	if err := atomicfile.WriteFile(o.StateDir.path(caFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.GetCaCertificateDer()}), 0o600); err != nil {
		return Identity{}, err
	}
	if err := o.StateDir.saveCredentials(key, resp.GetCertificateDer()); err != nil {
		return Identity{}, err
	}
	// The identity file is written last: its presence means "enrolled".
	if err := o.StateDir.writeJSON(identityFile, id, 0o600); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func validateEnrollOptions(o EnrollOptions) error {
	if o.Server == "" || o.Secret == "" || o.CAPin == "" || o.UserEmail == "" || o.StateDir == "" {
		return errors.New("enroll needs --server, --secret, --ca-pin and --email")
	}
	if _, err := pki.ParsePin(o.CAPin); err != nil {
		return fmt.Errorf("--ca-pin: %w", err)
	}
	if a, err := mail.ParseAddress(o.UserEmail); err != nil || a.Address != o.UserEmail {
		return fmt.Errorf("--email: %q is not a plain email address", o.UserEmail)
	}
	if o.Now == nil {
		return errors.New("enroll: no clock")
	}
	return nil
}

// checkEnrollResponse makes sure the certificate is for our key and the
// verification keys are usable before anything is written.
func checkEnrollResponse(resp *agentv1.EnrollResponse, key *ecdsa.PrivateKey) error {
	cert, err := x509.ParseCertificate(resp.GetCertificateDer())
	if err != nil {
		return fmt.Errorf("enrollment response: device certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("enrollment response: the certificate is not for this device's key")
	}
	ca, err := x509.ParseCertificate(resp.GetCaCertificateDer())
	if err != nil {
		return fmt.Errorf("enrollment response: CA certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("enrollment response: certificate not issued by the CA: %w", err)
	}
	id, err := pki.IdentityFromCert(cert)
	if err != nil {
		return fmt.Errorf("enrollment response: %w", err)
	}
	if id.OrgID != resp.GetOrgId() || id.DeviceID != resp.GetDeviceId() {
		return errors.New("enrollment response: certificate identity does not match the response")
	}
	if _, err := pki.NewVerifier(resp.GetOrgId(), resp.GetDeviceId(), resp.GetCommandKeys()); err != nil {
		return fmt.Errorf("enrollment response: command keys: %w", err)
	}
	return nil
}

func newKeyAndCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating device key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "toktra-agent"},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate request: %w", err)
	}
	return key, csr, nil
}

// DetectFacts describes this device.
func DetectFacts(version string) *agentv1.DeviceFacts {
	host, _ := os.Hostname()
	return &agentv1.DeviceFacts{
		Hostname:     host,
		Os:           runtime.GOOS,
		OsVersion:    osVersion(),
		Arch:         runtime.GOARCH,
		Serial:       machineSerial(),
		AgentVersion: version,
	}
}
