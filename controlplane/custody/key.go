package custody

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/toktra/toktra/internal/atomicfile"
)

// Files of the checkpoint key's directory.
const (
	// CheckpointKeyFile holds the signed-note private key ("PRIVATE+KEY+..."), mode 0600.
	CheckpointKeyFile = "checkpoint-key"
	// CheckpointVerifierKeyFile holds the public verifier key, mode 0644:
	// what customers keep to check checkpoints.
	CheckpointVerifierKeyFile = "checkpoint-key.pub"
)

// CheckpointKey signs checkpoints: an Ed25519 signed-note key.
type CheckpointKey struct {
	Signer note.Signer
	// VerifierKey is the public key in signed-note form
	// ("<name>+<hash>+<base64>"), for note.NewVerifier.
	VerifierKey string
}

// LoadOrCreateCheckpointKey loads the key kept in dir or creates one named
// name there. dir is created 0700; a private key file readable by group or
// others is refused.
func LoadOrCreateCheckpointKey(dir, name string) (*CheckpointKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	skPath, vkPath := filepath.Join(dir, CheckpointKeyFile), filepath.Join(dir, CheckpointVerifierKeyFile)
	sk, err := readKeyFile(skPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, fmt.Errorf("checkpoint key: generating: %w", err)
		}
		if err := atomicfile.WriteFile(skPath, []byte(skey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
		if err := atomicfile.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
		sk = skey
	case err != nil:
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	signer, err := note.NewSigner(sk)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", skPath, err)
	}
	vkey, err := verifierKeyOf(sk)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", skPath, err)
	}
	// The public file is derived data: rewrite it if it is missing or stale.
	if cur, err := os.ReadFile(vkPath); err != nil || strings.TrimSpace(string(cur)) != vkey {
		if err := atomicfile.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
	}
	return &CheckpointKey{Signer: signer, VerifierKey: vkey}, nil
}

func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("private key file %s has mode %#o; run chmod 600 %s", path, info.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// verifierKeyOf derives the verifier key from a signed-note private key
// ("PRIVATE+KEY+<name>+<hash hex>+<base64(alg || seed)>").
func verifierKeyOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a signed-note private key")
	}
	key, err := decodeEd25519Seed(parts[4])
	if err != nil {
		return "", err
	}
	return note.NewEd25519VerifierKey(parts[2], key)
}

// decodeEd25519Seed returns the public key of a signed-note Ed25519 private
// key's base64 body (algorithm byte 1, then the 32-byte seed).
func decodeEd25519Seed(b64 string) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("not an Ed25519 signed-note private key")
	}
	return ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey), nil
}
