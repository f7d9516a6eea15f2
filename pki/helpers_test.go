package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// testNow is the fixed "now" of tests that do not go through the system clock.
var testNow = time.Date(2026, time.March, 14, 15, 9, 26, 0, time.UTC)

const (
	testOrg    = "org_acme"
	testDevice = "dev-0001"
)

// newTestCA creates a CA in a fresh directory at testNow.
func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir(), testNow)
	if err != nil {
		t.Fatalf("LoadOrCreateCA = %v", err)
	}
	return ca
}

// newP256 makes a device key.
func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCSR makes a DER CSR for key with the given template (nil for a bare one).
func newCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest = %v", err)
	}
	return der
}

// newDeviceCert issues a device certificate from ca for a fresh key and
// returns it ready for a TLS client.
func newDeviceCert(t *testing.T, ca *CA, key crypto.Signer, id DeviceIdentity, now time.Time) tls.Certificate {
	t.Helper()
	der, cert, err := ca.SignDeviceCSR(newCSR(t, key, nil), id, now, 0)
	if err != nil {
		t.Fatalf("SignDeviceCSR = %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// signingSetup is a keyring, a verifier for testOrg/testDevice trusting it, and
// a valid body to sign.
type signingSetup struct {
	keys     *Keyring
	verifier *Verifier
	body     *agentv1.CommandBody
}

func setupSigning(t *testing.T) signingSetup {
	t.Helper()
	kr, err := LoadOrCreateSigningKeys(t.TempDir())
	if err != nil {
		t.Fatalf("LoadOrCreateSigningKeys = %v", err)
	}
	v, err := NewVerifier(testOrg, testDevice, kr.VerificationKeys())
	if err != nil {
		t.Fatalf("NewVerifier = %v", err)
	}
	return signingSetup{keys: kr, verifier: v, body: lockBody(testOrg, testDevice, 7)}
}

// lockBody is a valid lock command issued at testNow, valid for an hour.
func lockBody(org, device string, seq uint64) *agentv1.CommandBody {
	return &agentv1.CommandBody{
		OrgId:             org,
		DeviceId:          device,
		Sequence:          seq,
		IssuedAtUnixNano:  testNow.UnixNano(),
		ExpiresAtUnixNano: testNow.Add(time.Hour).UnixNano(),
		Kind:              agentv1.CommandKind_COMMAND_KIND_LOCK,
		Policy:            &agentv1.Policy{Version: 3, Domains: []string{"api.openai.com", "api.anthropic.com"}, Cidrs: []string{"192.0.2.0/24"}},
		LockoutId:         "lo_42",
	}
}

// signRaw signs arbitrary bytes as a command body with the keyring's active
// key, bypassing Sign's checks, to build commands a broken or hostile signer
// might send.
func signRaw(t *testing.T, kr *Keyring, body []byte) *agentv1.SignedCommand {
	t.Helper()
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return &agentv1.SignedCommand{
		KeyId:     kr.active,
		Body:      body,
		Signature: ed25519.Sign(kr.keys[kr.active], signedMessage(body)),
	}
}

func mustSign(t *testing.T, kr *Keyring, body *agentv1.CommandBody) *agentv1.SignedCommand {
	t.Helper()
	sc, err := kr.Sign(body)
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	return sc
}
