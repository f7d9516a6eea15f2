package tsa

import (
	"bytes"
	"crypto"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/digitorus/timestamp"

	"github.com/toktra/toktra/internal/clock"
)

// FuzzVerifyResponse feeds arbitrary bytes to the path every TSA reply
// takes: response parsing, token parsing and all checks. Nothing may panic,
// and whatever passes must attest the digest and nonce asked for.
func FuzzVerifyResponse(f *testing.F) {
	l, err := LoadOrCreateLocal(filepath.Join(f.TempDir(), "tsa"), clock.Real{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	digest := digestOf("fuzz")
	nonce := big.NewInt(42)
	req, err := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	good, err := l.Respond(req)
	if err != nil {
		f.Fatal(err)
	}
	rejected, _ := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadAlgorithm)
	f.Add(good)
	f.Add(rejected)
	f.Add(good[:len(good)/2])
	roots := l.Roots()
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := VerifyResponse(data, digest, nonce, roots)
		if err == nil && (!bytes.Equal(tok.Digest, digest) || tok.Nonce.Cmp(nonce) != 0) {
			t.Fatalf("VerifyResponse accepted a token over %x with nonce %v", tok.Digest, tok.Nonce)
		}
		if tok, err := Verify(data, digest, roots); err == nil && !bytes.Equal(tok.Digest, digest) {
			t.Fatalf("Verify accepted a token over %x", tok.Digest)
		}
	})
}
