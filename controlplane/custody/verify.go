package custody

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/toktra/toktra/controlplane/tsa"
)

// VerifyNode checks a published node offline: its payload hashes to its
// PayloadHash, its fields hash to its Hash (the encoding in the package
// documentation), and token (its own Token when nil) is an RFC 3161 token
// over that hash from a TSA chaining to roots. It returns the checked token.
func VerifyNode(n Node, token []byte, roots *x509.CertPool) (*tsa.Token, error) {
	ph, err := decodeHash("payload_hash", n.PayloadHash)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(PayloadHash(n.Payload), ph) {
		return nil, fmt.Errorf("node %s: payload does not hash to payload_hash", n.Hash)
	}
	claimed, err := n.HashBytes()
	if err != nil {
		return nil, err
	}
	computed, err := n.ComputeHash()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(claimed, computed) {
		return nil, fmt.Errorf("node %s: its fields hash to %x; it was changed after it was recorded", n.Hash, computed)
	}
	if token == nil {
		token = n.Token
	}
	if len(token) == 0 {
		return nil, fmt.Errorf("node %s has no time-stamp token yet", n.Hash)
	}
	tok, err := tsa.Verify(token, computed, roots)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Hash, err)
	}
	return tok, nil
}

// VerifyCheckpoint checks a signed checkpoint note against the log's
// verifier key and origin and returns what it says.
func VerifyCheckpoint(signedNote []byte, origin, verifierKey string) (*log.Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier key: %w", err)
	}
	cp, _, _, err := log.ParseCheckpoint(signedNote, origin, v)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if len(cp.Hash) != 32 {
		return nil, errors.New("checkpoint: root hash is not 32 bytes")
	}
	return cp, nil
}
