package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestParsePin(t *testing.T) {
	t.Parallel()
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		in     string
		wantOK bool
	}{
		{"sha256:" + hex64, true},
		{"sha256:" + strings.ToUpper(hex64), true},
		{"", false},
		{hex64, false},
		{"sha1:" + hex64, false},
		{"SHA256:" + hex64, false},
		{"sha256:" + hex64[:62], false},
		{"sha256:" + hex64 + "00", false},
		{"sha256:" + hex64[:62] + "zz", false},
		{"sha256: " + hex64[1:], false},
	}
	for _, tt := range tests {
		got, err := ParsePin(tt.in)
		if (err == nil) != tt.wantOK {
			t.Errorf("ParsePin(%q) = %x, %v; want ok=%v", tt.in, got, err, tt.wantOK)
		}
		if err == nil && len(got) != 32 {
			t.Errorf("ParsePin(%q) = %d bytes; want 32", tt.in, len(got))
		}
	}
}

// impostorCA makes a CA with the same subject as ca but a key of its own: what
// an attacker who copies our CA's name would present.
func impostorCA(t *testing.T, ca *CA) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *ca.Certificate()
	tmpl.PublicKey, tmpl.Raw, tmpl.RawSubjectPublicKeyInfo, tmpl.SubjectKeyId = nil, nil, nil, nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.String() != ca.Certificate().Subject.String() {
		t.Fatalf("impostor subject = %q; want %q", cert.Subject, ca.Certificate().Subject)
	}
	return newCAFrom(cert, key)
}

func TestVerifyPinnedChain(t *testing.T) {
	t.Parallel()
	const host = "control.example.com"
	ca := newTestCA(t)
	other := newTestCA(t)
	impostor := impostorCA(t, ca)

	issue := func(c *CA) tls.Certificate {
		sc, err := c.IssueServerCert([]string{host}, testNow, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	real, fake := issue(ca), issue(impostor)
	device := newDeviceCert(t, ca, newP256(t), DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}, testNow)
	leafOnly := func(c tls.Certificate) []byte { return c.Certificate[0] }

	tests := []struct {
		name       string
		pin        string
		serverName string
		chain      [][]byte
		now        time.Time
		wantOK     bool
	}{
		{"right pin", ca.Pin(), host, real.Certificate, testNow, true},
		{"right pin in upper case", "sha256:" + strings.ToUpper(strings.TrimPrefix(ca.Pin(), "sha256:")), host, real.Certificate, testNow, true},
		{"wrong pin", other.Pin(), host, real.Certificate, testNow, false},
		{"other CA with the same subject", ca.Pin(), host, fake.Certificate, testNow, false},
		{"leaf not signed by the pinned CA", ca.Pin(), host, [][]byte{leafOnly(fake), ca.Certificate().Raw}, testNow, false},
		{"impostor chain with the real CA appended", ca.Pin(), host, [][]byte{leafOnly(fake), impostor.Certificate().Raw, ca.Certificate().Raw}, testNow, false},
		{"CA missing from the chain", ca.Pin(), host, [][]byte{leafOnly(real)}, testNow, false},
		{"pin of the leaf", pinOf(real.Leaf), host, real.Certificate, testNow, false},
		{"pinned certificate is not a CA", pinOf(real.Leaf), host, [][]byte{leafOnly(real), leafOnly(real)}, testNow, false},
		{"wrong server name", ca.Pin(), "evil.example.com", real.Certificate, testNow, false},
		{"no server name", ca.Pin(), "", real.Certificate, testNow, false},
		{"expired leaf", ca.Pin(), host, real.Certificate, testNow.Add(2 * time.Hour), false},
		{"client certificate as leaf", ca.Pin(), testDevice, [][]byte{device.Certificate[0], ca.Certificate().Raw}, testNow, false},
		{"invalid pin", "sha256:xyz", host, real.Certificate, testNow, false},
		{"empty chain", ca.Pin(), host, nil, testNow, false},
		{"garbage certificate", ca.Pin(), host, [][]byte{leafOnly(real), []byte("garbage")}, testNow, false},
		{"overlong chain", ca.Pin(), host, append([][]byte{leafOnly(real)}, repeat(ca.Certificate().Raw, maxPeerChainLength)...), testNow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := verifyPinnedChain(tt.pin, tt.serverName, func() time.Time { return tt.now })(tt.chain, nil)
			if (err == nil) != tt.wantOK {
				t.Errorf("VerifyPinnedChain(%s) = %v; want ok=%v", tt.name, err, tt.wantOK)
			}
		})
	}
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
