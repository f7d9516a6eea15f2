package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestLoadOrCreateEvidenceSigner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadOrCreateEvidenceSigner(dir, ca, testNow)
	if err != nil {
		t.Fatalf("LoadOrCreateEvidenceSigner(new) = %v", err)
	}
	c := s.Certificate()
	if err := CheckEvidenceCert(c); err != nil {
		t.Errorf("CheckEvidenceCert(issued) = %v; want nil", err)
	}
	if got, want := c.KeyUsage, x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment; got != want {
		t.Errorf("KeyUsage = %v; want %v", got, want)
	}
	if got, want := c.NotAfter, testNow.Add(DefaultEvidenceCertLifetime); !got.Equal(want) {
		t.Errorf("NotAfter = %v; want %v", got, want)
	}
	if !s.Signer().Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
		t.Error("Signer() does not match Certificate()")
	}
	if len(s.Chain()) != 2 || s.Chain()[1] != ca.Certificate() {
		t.Errorf("Chain() = %d certificates; want the leaf and the CA", len(s.Chain()))
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	verifyAt := func(usage x509.ExtKeyUsage) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verifyAt(x509.ExtKeyUsageEmailProtection); err != nil {
		t.Errorf("Verify(document signer) = %v; want nil", err)
	}
	// The evidence certificate must never pass as a device or a server.
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if err := verifyAt(u); err == nil {
			t.Errorf("Verify(usage %v) = nil; want an error", u)
		}
	}
	if _, err := IdentityFromCert(c); err == nil {
		t.Error("the evidence certificate names a device identity; want none")
	}

	if runtime.GOOS != "windows" {
		for name, want := range map[string]os.FileMode{EvidenceKeyFile: 0o600, EvidenceCertFile: 0o644} {
			info, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != want {
				t.Errorf("mode of %s = %v; want %v", name, info.Mode().Perm(), want)
			}
		}
	}

	// Loading again gives the same key and certificate.
	again, err := LoadOrCreateEvidenceSigner(dir, ca, testNow.Add(time.Hour))
	if err != nil {
		t.Fatalf("LoadOrCreateEvidenceSigner(again) = %v", err)
	}
	if again.Certificate().SerialNumber.Cmp(c.SerialNumber) != 0 {
		t.Error("LoadOrCreateEvidenceSigner(again) issued a new certificate; want the stored one")
	}

	// Close to expiry, the same key gets a new certificate.
	late := c.NotAfter.Add(-30 * 24 * time.Hour)
	renewed, err := LoadOrCreateEvidenceSigner(dir, ca, late)
	if err != nil {
		t.Fatalf("LoadOrCreateEvidenceSigner(near expiry) = %v", err)
	}
	if renewed.Certificate().SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("LoadOrCreateEvidenceSigner(near expiry) kept the old certificate; want a new one")
	}
	if !renewed.Certificate().PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.PublicKey) {
		t.Error("the renewed certificate has a new key; want the stored key")
	}
}

func TestLoadOrCreateEvidenceSignerReissuesForAnotherCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := LoadOrCreateCA(filepath.Join(dir, "first"), testNow)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := LoadOrCreateEvidenceSigner(dir, first, testNow)
	if err != nil {
		t.Fatal(err)
	}
	second := newTestCA(t)
	s2, err := LoadOrCreateEvidenceSigner(dir, second, testNow)
	if err != nil {
		t.Fatalf("LoadOrCreateEvidenceSigner(other CA) = %v", err)
	}
	if err := s2.Certificate().CheckSignatureFrom(second.Certificate()); err != nil {
		t.Errorf("certificate after a CA change is not from the new CA: %v", err)
	}
	if s2.Certificate().SerialNumber.Cmp(s1.Certificate().SerialNumber) == 0 {
		t.Error("the certificate of the old CA was kept")
	}
}

func TestLoadOrCreateEvidenceSignerRefusesOpenKey(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateEvidenceSigner(dir, ca, testNow); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, EvidenceKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateEvidenceSigner(dir, ca, testNow); err == nil {
		t.Error("LoadOrCreateEvidenceSigner(key mode 0644) = nil error; want a refusal")
	}
}

func TestIssueEvidenceCertRefuses(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name     string
		pub      any
		lifetime time.Duration
	}{
		{"ed25519 key", edPub, 0},
		{"negative lifetime", &newP256(t).PublicKey, -time.Hour},
	} {
		if _, err := ca.IssueEvidenceCert(tc.pub, testNow, tc.lifetime); err == nil {
			t.Errorf("IssueEvidenceCert(%s) = nil error; want one", tc.name)
		}
	}
}

func TestCheckEvidenceCertRefusesOtherCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	server, err := ca.IssueServerCert([]string{"localhost"}, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*x509.Certificate{"server": server.Leaf, "ca": ca.Certificate()} {
		if err := CheckEvidenceCert(c); err == nil {
			t.Errorf("CheckEvidenceCert(%s certificate) = nil; want an error", name)
		}
	}
}
