package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Sealer encrypts secrets for storage and decrypts them again. It is safe for
// concurrent use.
type Sealer struct {
	ring   Keyring
	random io.Reader // crypto/rand.Reader except in tests
}

// NewSealer returns a Sealer that seals under ring's active KEK and opens
// with whichever of ring's KEKs an envelope names. A *LocalKEK is a Keyring;
// wrap other KEKs with NewKeyring.
func NewSealer(ring Keyring) *Sealer {
	return &Sealer{ring: ring, random: rand.Reader}
}

// Seal encrypts plaintext under a fresh data key bound to aad, wraps the data
// key with the active KEK, and returns the envelope. aad names where the
// secret belongs (e.g. "org_x/provider/openai"); Open must be given the same.
func (s *Sealer) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	kek := s.ring.Active()
	if kek == nil {
		return nil, errors.New("sealing secret: keyring has no active key-encryption key")
	}
	dataKey := make([]byte, dataKeySize)
	defer clear(dataKey)
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(s.random, dataKey); err != nil {
		return nil, fmt.Errorf("sealing secret: generating data key: %w", err)
	}
	if _, err := io.ReadFull(s.random, nonce); err != nil {
		return nil, fmt.Errorf("sealing secret: generating nonce: %w", err)
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("sealing secret: %w", err)
	}
	ciphertext := aead.Seal(nil, nonce, plaintext, dataAAD(aad))
	kekID := kek.KeyID()
	wrapped, err := kek.Wrap(ctx, dataKey, aad)
	if err != nil {
		return nil, fmt.Errorf("sealing secret: wrapping data key with %s: %w", kekID, err)
	}
	env := envelope{kekID: kekID, wrappedKey: wrapped, nonce: nonce, ciphertext: ciphertext}
	out, err := env.marshal()
	if err != nil {
		return nil, fmt.Errorf("sealing secret: %w", err)
	}
	return out, nil
}

// Open decrypts an envelope made by Seal, picking the KEK by the id the
// envelope names. It fails with ErrAuthentication when aad differs from the
// one given to Seal or any byte was changed, and with ErrMalformed,
// ErrUnsupportedVersion or ErrUnknownKEK when the envelope cannot be used at
// all.
func (s *Sealer) Open(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	env, err := parseEnvelope(sealed)
	if err != nil {
		return nil, fmt.Errorf("opening secret: %w", err)
	}
	dataKey, err := s.unwrap(ctx, env, aad)
	if err != nil {
		return nil, fmt.Errorf("opening secret: %w", err)
	}
	defer clear(dataKey)
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("opening secret: %w", err)
	}
	plaintext, err := aead.Open(nil, env.nonce, env.ciphertext, dataAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("opening secret: decrypting with data key: %w", ErrAuthentication)
	}
	return plaintext, nil
}

// Rewrap re-wraps the data key of sealed under the active KEK and returns
// the new envelope; the encrypted secret itself is carried over unchanged.
// Run it over stored secrets after a rotation, then retire the old KEK. An
// envelope already under the active KEK is returned as is.
//
// Rewrap checks that the data key really decrypts the secret before
// re-wrapping it, so a tampered envelope is never blessed with a fresh
// wrapping.
func (s *Sealer) Rewrap(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	env, err := parseEnvelope(sealed)
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: %w", err)
	}
	kek := s.ring.Active()
	if kek == nil {
		return nil, errors.New("re-wrapping secret: keyring has no active key-encryption key")
	}
	dataKey, err := s.unwrap(ctx, env, aad)
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: %w", err)
	}
	defer clear(dataKey)
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: %w", err)
	}
	plaintext, err := aead.Open(nil, env.nonce, env.ciphertext, dataAAD(aad))
	clear(plaintext)
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: decrypting with data key: %w", ErrAuthentication)
	}
	if env.kekID == kek.KeyID() {
		return sealed, nil
	}
	wrapped, err := kek.Wrap(ctx, dataKey, aad)
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: wrapping data key with %s: %w", kek.KeyID(), err)
	}
	out := envelope{kekID: kek.KeyID(), wrappedKey: wrapped, nonce: env.nonce, ciphertext: env.ciphertext}
	b, err := out.marshal()
	if err != nil {
		return nil, fmt.Errorf("re-wrapping secret: %w", err)
	}
	return b, nil
}

// unwrap finds the envelope's KEK and returns the plaintext data key.
func (s *Sealer) unwrap(ctx context.Context, env *envelope, aad []byte) ([]byte, error) {
	kek, ok := s.ring.Lookup(env.kekID)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKEK, env.kekID)
	}
	dataKey, err := kek.Unwrap(ctx, env.wrappedKey, aad)
	if err != nil {
		return nil, fmt.Errorf("unwrapping data key with %s: %w", env.kekID, err)
	}
	if len(dataKey) != dataKeySize {
		clear(dataKey)
		return nil, fmt.Errorf("unwrapping data key with %s: got %d bytes, want %d: %w", env.kekID, len(dataKey), dataKeySize, ErrAuthentication)
	}
	return dataKey, nil
}

func dataAAD(aad []byte) []byte {
	return append([]byte(dataAADPrefix), aad...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating aes cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating gcm: %w", err)
	}
	return aead, nil
}
