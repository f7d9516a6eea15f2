package tsa

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/internal/clock"
)

// newLocal returns a local TSA kept in a fresh directory.
func newLocal(t *testing.T) *Local {
	t.Helper()
	l, err := LoadOrCreateLocal(filepath.Join(t.TempDir(), "tsa"), clock.Real{}, nil)
	if err != nil {
		t.Fatalf("LoadOrCreateLocal: %v", err)
	}
	return l
}

// newLocalWithSigner returns a local TSA (in memory) whose signing
// certificate template is changed by mutate before issuing, to make TSAs
// that a verifier must refuse.
func newLocalWithSigner(t *testing.T, mutate func(*x509.Certificate)) *Local {
	t.Helper()
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "test tsa root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	root, err := createCert(rootTmpl, rootTmpl, rootKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "test tsa"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: oidExtKeyUsageTS}},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	signer, err := createCert(tmpl, root, key, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Local{
		root: root, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}),
		signer: signer, key: key, clock: clock.Real{}, log: slog.New(slog.DiscardHandler),
	}
}

func mustSerial(t *testing.T) *big.Int {
	t.Helper()
	s, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve starts an HTTP server for h and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay, cfg.MaxDelay = time.Millisecond, 5*time.Millisecond
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func digestOf(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// writeFile writes data into the test's directory and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslVerifyToken runs `openssl ts -verify` on a token over digest with
// rootPEM as the only trust anchor and returns its combined output and
// whether it succeeded.
func opensslVerifyToken(t *testing.T, token, digest, rootPEM []byte) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	tok := writeFile(t, dir, "token.der", token)
	ca := writeFile(t, dir, "root.pem", rootPEM)
	out, err := exec.Command("openssl", "ts", "-verify", "-digest", hex.EncodeToString(digest),
		"-in", tok, "-token_in", "-CAfile", ca).CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), "Verification: OK")
}

func requireOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required (Debian package openssl): %v", err)
	}
}
