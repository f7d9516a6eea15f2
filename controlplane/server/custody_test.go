package server

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// The embedded default: the local TSA, called in-process (by custody and
// the PDF signer), gives tokens that chain to the root it publishes.
func TestOpenCustodyLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := OpenCustody(dir, CustodyConfig{TSAURL: DefaultTSAURL("")}, st, nil, clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := tsa.ParseRootsPEM(c.TSARootPEM)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("pdf"))
	tok, err := c.Timestamper.Timestamp(context.Background(), d[:])
	if err != nil {
		t.Fatalf("Timestamp(local) = %v", err)
	}
	if _, err := tsa.Verify(tok.DER, d[:], roots); err != nil {
		t.Errorf("Verify(local token, published root) = %v", err)
	}
	if c.Service.VerifierKey() == "" {
		t.Error("no checkpoint verifier key")
	}
}

func TestOpenCustodyRemoteNeedsRoots(t *testing.T) {
	t.Parallel()
	if DefaultTSAURL("postgres://db") != tsa.DigiCertURL {
		t.Errorf("DefaultTSAURL(postgres) = %q; want DigiCert's", DefaultTSAURL("postgres://db"))
	}
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := OpenCustody(dir, CustodyConfig{TSAURL: tsa.DigiCertURL}, st, nil, clock.Real{}, nil); err != nil {
		t.Fatalf("OpenCustody(DigiCert, embedded root) = %v", err)
	}
	if _, err := OpenCustody(dir, CustodyConfig{TSAURL: "http://tsa.example"}, st, nil, clock.Real{}, nil); err == nil {
		t.Error("OpenCustody(another remote TSA without roots) = nil; want an error")
	}
}
