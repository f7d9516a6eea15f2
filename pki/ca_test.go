package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateCA(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreateCA(dir, testNow)
	if err != nil {
		t.Fatalf("LoadOrCreateCA(new) = %v", err)
	}
	c := ca.Certificate()
	checks := []struct {
		what      string
		got, want any
	}{
		{"IsCA", c.IsCA, true},
		{"BasicConstraintsValid", c.BasicConstraintsValid, true},
		{"MaxPathLen", c.MaxPathLen, 0},
		{"MaxPathLenZero", c.MaxPathLenZero, true},
		{"KeyUsage", c.KeyUsage, x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		{"NotBefore", c.NotBefore, testNow.Add(-MaxClockSkew)},
		{"NotAfter", c.NotAfter, testNow.Add(10 * 365 * 24 * time.Hour)},
		{"public key is P-256", c.PublicKey.(*ecdsa.PublicKey).Curve, elliptic.P256()},
		{"CN prefix", strings.HasPrefix(c.Subject.CommonName, "Toktra Device CA "), true},
		{"serial bits <= 128", c.SerialNumber.BitLen() <= 128, true},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("CA certificate %s = %v; want %v", ck.what, ck.got, ck.want)
		}
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	if got, want := ca.Pin(), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Pin() = %q; want %q", got, want)
	}
	if _, err := ParsePin(ca.Pin()); err != nil {
		t.Errorf("ParsePin(Pin()) = %v; want nil", err)
	}

	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{
			dir:                            0o700 | os.ModeDir,
			filepath.Join(dir, CACertFile): 0o644,
			filepath.Join(dir, CAKeyFile):  0o600,
		} {
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode() != want {
				t.Errorf("mode of %s = %v; want %v", path, info.Mode(), want)
			}
		}
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Errorf("ca.pem = %q; want CertPEM() %q", onDisk, ca.CertPEM())
	}

	again, err := LoadOrCreateCA(dir, testNow.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("LoadOrCreateCA(existing) = %v", err)
	}
	if !again.Certificate().Equal(c) || again.Pin() != ca.Pin() {
		t.Errorf("LoadOrCreateCA(existing) loaded another CA (pin %s); want the stored one (pin %s)", again.Pin(), ca.Pin())
	}
}

func TestLoadOrCreateCARefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		now     time.Time
		posix   bool
		wantMsg string
	}{
		{"key readable by group", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, CAKeyFile), 0o640) }, testNow, true, "chmod 600"},
		{"key readable by others", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, CAKeyFile), 0o604) }, testNow, true, "accessible by group or others"},
		{"cert without key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) }, testNow, false, "exists without"},
		{"key without cert", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CACertFile)) }, testNow, false, "exists without"},
		{"key of another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := LoadOrCreateCA(other, testNow); err != nil {
				t.Fatal(err)
			}
			rename(t, filepath.Join(other, CAKeyFile), filepath.Join(dir, CAKeyFile))
		}, testNow, false, "does not match"},
		{"expired", func(*testing.T, string) {}, testNow.Add(11 * 365 * 24 * time.Hour), false, "expired"},
		{"cert not PEM", func(t *testing.T, dir string) { write(t, filepath.Join(dir, CACertFile), "junk") }, testNow, false, "PEM"},
		{"trailing data after key", func(t *testing.T, dir string) {
			data, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, CAKeyFile), string(data)+"junk")
		}, testNow, false, "unexpected data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.posix && runtime.GOOS == "windows" {
				t.Skip("windows file modes do not carry POSIX permission bits")
			}
			dir := t.TempDir()
			if _, err := LoadOrCreateCA(dir, testNow); err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, dir)
			_, err := LoadOrCreateCA(dir, tt.now)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadOrCreateCA(%s) = %v; want an error containing %q", tt.name, err, tt.wantMsg)
			}
		})
	}
}

func TestSignDeviceCSR(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	id := DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A CSR that asks for names it must not get.
	greedy := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "admin", Organization: []string{"Evil"}},
		DNSNames: []string{"control.example.com"},
		URIs:     []*url.URL{{Scheme: "toktra", Host: "org", Path: "/org_other/device/dev-9"}},
	}
	tests := []struct {
		name string
		csr  []byte
	}{
		{"P-256", newCSR(t, newP256(t), nil)},
		{"Ed25519", newCSR(t, edKey, nil)},
		{"P-256 asking for other names", newCSR(t, newP256(t), greedy)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			der, cert, err := ca.SignDeviceCSR(tt.csr, id, testNow, 0)
			if err != nil {
				t.Fatalf("SignDeviceCSR(%s) = %v; want nil", tt.name, err)
			}
			if !bytes.Equal(der, cert.Raw) {
				t.Errorf("SignDeviceCSR(%s): DER and parsed certificate differ", tt.name)
			}
			got, err := IdentityFromCert(cert)
			if err != nil || got != id {
				t.Errorf("IdentityFromCert(SignDeviceCSR(%s)) = %v, %v; want %v", tt.name, got, err, id)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"CN", cert.Subject.CommonName, testDevice},
				{"Organization", len(cert.Subject.Organization), 0},
				{"DNSNames", len(cert.DNSNames), 0},
				{"URIs", len(cert.URIs), 1},
				{"ExtKeyUsage", len(cert.ExtKeyUsage) == 1 && cert.ExtKeyUsage[0] == x509.ExtKeyUsageClientAuth, true},
				{"IsCA", cert.IsCA, false},
				{"NotBefore", cert.NotBefore, testNow.Add(-5 * time.Minute)},
				{"NotAfter", cert.NotAfter, testNow.Add(DefaultDeviceCertLifetime)},
				{"serial bits <= 128", cert.SerialNumber.BitLen() <= 128 && cert.SerialNumber.Sign() > 0, true},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("SignDeviceCSR(%s) %s = %v; want %v", tt.name, ck.what, ck.got, ck.want)
				}
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Certificate())
			opts := x509.VerifyOptions{Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("device certificate does not verify for client auth: %v", err)
			}
			opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if _, err := cert.Verify(opts); err == nil {
				t.Errorf("device certificate verifies for server auth; want it refused")
			}
		})
	}
}

func TestSignDeviceCSRLifetime(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	id := DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}
	tests := []struct {
		now      time.Time
		lifetime time.Duration
		want     time.Time
	}{
		{testNow, 0, testNow.Add(DefaultDeviceCertLifetime)},
		{testNow, time.Hour, testNow.Add(time.Hour)},
		// Near the CA's end, a certificate ends with the CA.
		{ca.Certificate().NotAfter.Add(-time.Hour), 0, ca.Certificate().NotAfter},
	}
	for _, tt := range tests {
		_, cert, err := ca.SignDeviceCSR(newCSR(t, newP256(t), nil), id, tt.now, tt.lifetime)
		if err != nil {
			t.Fatalf("SignDeviceCSR(now %v, %v) = %v", tt.now, tt.lifetime, err)
		}
		if !cert.NotAfter.Equal(tt.want) {
			t.Errorf("SignDeviceCSR(now %v, %v).NotAfter = %v; want %v", tt.now, tt.lifetime, cert.NotAfter, tt.want)
		}
	}
}

func TestSignDeviceCSRRefuses(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	id := DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSig := newCSR(t, newP256(t), nil)
	badSig[len(badSig)-5] ^= 0xff // inside the signature, the last field

	tests := []struct {
		name     string
		csr      []byte
		id       DeviceIdentity
		lifetime time.Duration
		wantMsg  string
	}{
		{"RSA key", newCSR(t, rsaKey, nil), id, 0, "*rsa.PublicKey keys are not accepted"},
		{"P-384 key", newCSR(t, p384, nil), id, 0, "only P-256"},
		{"bad signature", badSig, id, 0, "checking device csr signature"},
		{"not a CSR", []byte("hello"), id, 0, "parsing device csr"},
		{"empty", nil, id, 0, "parsing device csr"},
		{"oversize", make([]byte, maxCSRSize+1), id, 0, "at most"},
		{"empty device id", newCSR(t, newP256(t), nil), DeviceIdentity{OrgID: testOrg}, 0, "device id: empty"},
		{"device id with slash", newCSR(t, newP256(t), nil), DeviceIdentity{OrgID: testOrg, DeviceID: "a/b"}, 0, "not in [A-Za-z0-9_-]"},
		{"negative lifetime", newCSR(t, newP256(t), nil), id, -time.Hour, "negative lifetime"},
	}
	for _, tt := range tests {
		_, _, err := ca.SignDeviceCSR(tt.csr, tt.id, testNow, tt.lifetime)
		if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("SignDeviceCSR(%s) = %v; want an error containing %q", tt.name, err, tt.wantMsg)
		}
	}
}

func TestIssueServerCert(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	sc, err := ca.IssueServerCert([]string{"control.example.com", "127.0.0.1", "::1"}, testNow, 0)
	if err != nil {
		t.Fatalf("IssueServerCert = %v", err)
	}
	if len(sc.Certificate) != 2 || !bytes.Equal(sc.Certificate[1], ca.Certificate().Raw) {
		t.Fatalf("IssueServerCert chain has %d certificates; want the leaf and the CA", len(sc.Certificate))
	}
	leaf := sc.Leaf
	if !leaf.NotAfter.Equal(testNow.Add(DefaultServerCertLifetime)) {
		t.Errorf("IssueServerCert NotAfter = %v; want %v", leaf.NotAfter, testNow.Add(DefaultServerCertLifetime))
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(leaf.DNSNames) != 1 {
		t.Errorf("IssueServerCert SANs = %v %v; want 127.0.0.1, ::1 and control.example.com", leaf.IPAddresses, leaf.DNSNames)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	for _, name := range []string{"control.example.com", "127.0.0.1", "::1"} {
		opts := x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", name, err)
		}
	}
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err == nil {
		t.Errorf("server certificate verifies for client auth; want it refused")
	}

	for _, hosts := range [][]string{nil, {""}, {"bad host"}, {"*.example.com"}, {"-a.example.com"}, {"fe80::1%eth0"}} {
		if _, err := ca.IssueServerCert(hosts, testNow, 0); err == nil {
			t.Errorf("IssueServerCert(%q) = nil error; want an error", hosts)
		}
	}
}
