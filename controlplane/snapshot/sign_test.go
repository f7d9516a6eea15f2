package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/pki"
)

// testTSA is the local TSA of controlplane/tsa served over HTTP on a
// loopback test server, and a tsa.Client for it: the production path of
// a remote TSA, with every check the client makes.
type testTSA struct {
	local   *tsa.Local
	client  *tsa.Client
	rootPEM []byte
}

func newTestTSA(t testing.TB) *testTSA {
	t.Helper()
	local, err := tsa.LoadOrCreateLocal(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatalf("tsa.LoadOrCreateLocal = %v", err)
	}
	srv := httptest.NewServer(local)
	t.Cleanup(srv.Close)
	client, err := tsa.NewClient(tsa.ClientConfig{PrimaryURL: srv.URL, Roots: local.Roots(), MaxAttempts: 1})
	if err != nil {
		t.Fatalf("tsa.NewClient = %v", err)
	}
	return &testTSA{local: local, client: client, rootPEM: local.RootPEM()}
}

// signSetup makes a control plane CA with its evidence signer in a fresh
// directory, and a TSA.
func signSetup(t testing.TB) (*pki.CA, *pki.EvidenceSigner, *testTSA) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := pki.LoadOrCreateEvidenceSigner(dir, ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca, ev, newTestTSA(t)
}

// nssTrusting makes an NSS database that trusts the CA, for pdfsig -nssdir.
func nssTrusting(t *testing.T, caPEM []byte) string {
	t.Helper()
	dir := t.TempDir()
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		t.Fatalf("certutil not found: install Debian libnss3-tools (%v)", err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + dir, "--empty-password"},
		{"-A", "-d", "sql:" + dir, "-n", "toktra-ca", "-t", "C,C,C", "-i", caPath},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return "sql:" + dir
}

// pdfsig runs poppler's pdfsig, which exits non-zero for a document whose
// signature does not verify: the output says why either way.
func pdfsig(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("pdfsig")
	if err != nil {
		t.Fatalf("pdfsig not found: install Debian poppler-utils (%v)", err)
	}
	out, _ := exec.Command(path, args...).CombinedOutput()
	return string(out)
}

func TestSignVerifiesWithPdfsig(t *testing.T) {
	t.Parallel()
	ca, ev, ts := signSetup(t)
	doc := render(t, fixture(500))
	signed, err := snapshot.Sign(context.Background(), doc, snapshot.Signer{
		Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client, Reason: "Audit snapshot of lockout lo_9c1e5b",
	})
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	if !bytes.HasPrefix(signed, doc) {
		t.Fatal("Sign() changed the rendered bytes; want an incremental update after them")
	}
	path := writePDF(t, signed)
	out := pdfsig(t, "-nssdir", nssTrusting(t, ca.CertPEM()), path)
	for _, want := range []string{
		"Signature Validation: Signature is Valid.",
		"Certificate Validation: Certificate is Trusted.",
		"Signer Certificate Common Name: Toktra Evidence Signing",
		"Signature Type: adbe.pkcs7.detached",
		"Total document signed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pdfsig output lacks %q:\n%s", want, out)
		}
	}
	// Without trusting our CA the signature is still intact, and the
	// signer unknown.
	out = pdfsig(t, "-nssdir", nssTrusting(t, newTestTSA(t).rootPEM), path)
	if !strings.Contains(out, "Signature Validation: Signature is Valid.") || strings.Contains(out, "Certificate is Trusted") {
		t.Errorf("pdfsig without our root:\n%s\nwant a valid signature from an untrusted certificate", out)
	}
	// The text is still readable after signing.
	if got := squash(text(t, path)); !strings.Contains(got, "Email ana.djordjevic@example.com") {
		t.Errorf("pdftotext of the signed PDF lacks the identity")
	}
}

func TestSignedByteChangeIsDetected(t *testing.T) {
	t.Parallel()
	_, ev, ts := signSetup(t)
	doc := render(t, fixture(200))
	signed, err := snapshot.Sign(context.Background(), doc, snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client})
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	title := bytes.Index(signed, []byte("/Title ("))
	if title < 0 {
		t.Fatal("no title in the signed PDF")
	}
	for _, tc := range []struct {
		name string
		at   int
	}{
		{"title in the info dictionary", title + 12},
		{"first page stream", bytes.Index(signed, []byte("stream\n")) + 20},
		{"inside the attachment", bytes.Index(signed, []byte("/Type /EmbeddedFile")) + 120},
		{"last byte before the signature", bytes.Index(signed, []byte("/Contents<")) - 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			changed := bytes.Clone(signed)
			changed[tc.at] ^= 0x01
			out := pdfsig(t, writePDF(t, changed))
			if !strings.Contains(out, "Digest Mismatch") {
				t.Errorf("pdfsig after changing byte %d (%s):\n%s\nwant Digest Mismatch", tc.at, tc.name, out)
			}
		})
	}
}

// TestSignatureTimestampVerifiesWithOpenSSL checks the embedded signature
// timestamp independently: openssl ts -verify over the digest of the
// signature value, against the TSA's root.
func TestSignatureTimestampVerifiesWithOpenSSL(t *testing.T) {
	t.Parallel()
	_, ev, ts := signSetup(t)
	signed, err := snapshot.Sign(context.Background(), render(t, fixture(50)), snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client})
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	m := regexp.MustCompile(`/Contents<([0-9a-fA-F]+)>`).FindSubmatch(signed)
	if m == nil {
		t.Fatal("no signature contents in the signed PDF")
	}
	der, err := hex.DecodeString(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil { // drops the zero padding
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(raw.FullBytes)
	if err != nil {
		t.Fatalf("parsing the signature: %v", err)
	}
	var token []byte
	for _, a := range p7.Signers[0].UnauthenticatedAttributes {
		if a.Type.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}) {
			token = a.Value.Bytes // the attribute value SET holds the token
		}
	}
	if token == nil {
		t.Fatal("the signature has no id-aa-timeStampToken attribute")
	}
	dir := t.TempDir()
	tokenPath, rootPath := filepath.Join(dir, "token.der"), filepath.Join(dir, "root.pem")
	os.WriteFile(tokenPath, token, 0o600)
	os.WriteFile(rootPath, ts.rootPEM, 0o600)
	digest := sha256.Sum256(p7.Signers[0].EncryptedDigest)
	out, err := exec.Command("openssl", "ts", "-verify", "-digest", hex.EncodeToString(digest[:]),
		"-in", tokenPath, "-token_in", "-CAfile", rootPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Errorf("openssl ts -verify = %v\n%s\nwant Verification: OK", err, out)
	}
}

func TestTSAFromCertificate(t *testing.T) {
	t.Parallel()
	ts := newTestTSA(t)
	cert := ts.local.SignerCertificate()
	got := snapshot.TSAFromCertificate("local", "http://127.0.0.1/tsa", cert)
	sum := sha256.Sum256(cert.Raw)
	if got.Fingerprint != hex.EncodeToString(sum[:]) || got.Subject != cert.Subject.String() || got.Serial != cert.SerialNumber.Text(16) {
		t.Errorf("TSAFromCertificate = %+v; want the certificate's subject, serial and SHA-256", got)
	}
}
