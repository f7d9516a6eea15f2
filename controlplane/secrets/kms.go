package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// KMSClient is the part of the AWS KMS API that KMSKEK uses; *kms.Client
// implements it.
type KMSClient interface {
	Encrypt(ctx context.Context, params *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, params *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

var (
	_ KMSClient    = (*kms.Client)(nil)
	_ KeyEncrypter = (*KMSKEK)(nil)
)

// kmsKeyIDTag prefixes a KMSKEK's id in envelopes.
const kmsKeyIDTag = "kms:"

// Encryption context keys. KMS binds the context to the ciphertext and logs
// it in CloudTrail, so the aad (which names an org and a row, never a
// secret) shows up in the audit trail of every unwrap.
const (
	kmsContextPurpose   = "toktra:purpose"
	kmsContextAAD       = "toktra:aad"
	kmsContextAADBase64 = "toktra:aad-base64"
	kmsPurposeValue     = "secrets/v1/data-key"
)

// KMSKEK is a key-encryption key held by AWS KMS: data keys are wrapped with
// KMS Encrypt and unwrapped with KMS Decrypt, the aad passed as the
// encryption context. The key material never leaves KMS.
type KMSKEK struct {
	client KMSClient
	keyID  string
}

// NewKMSKEK returns a KEK that uses the KMS key keyID, a symmetric
// encryption key named by key ARN, key id, alias name ("alias/toktra") or
// alias ARN. Prefer the key ARN: the KEK id stored in envelopes is "kms:"
// plus keyID, and an alias later pointed at another key would make older
// envelopes fail with IncorrectKeyException. (KMS's own automatic rotation
// keeps the key ARN and is invisible here.)
//
// In production build the client with config.LoadDefaultConfig and
// kms.NewFromConfig.
func NewKMSKEK(client KMSClient, keyID string) (*KMSKEK, error) {
	if client == nil {
		return nil, errors.New("creating kms kek: nil client")
	}
	if keyID == "" {
		return nil, errors.New("creating kms kek: empty key id")
	}
	if n := len(kmsKeyIDTag) + len(keyID); n > 255 {
		return nil, fmt.Errorf("creating kms kek: key id is %d bytes, at most %d fit", len(keyID), 255-len(kmsKeyIDTag))
	}
	return &KMSKEK{client: client, keyID: keyID}, nil
}

// KeyID returns "kms:" followed by the configured KMS key id.
func (k *KMSKEK) KeyID() string { return kmsKeyIDTag + k.keyID }

// Wrap encrypts dataKey with KMS Encrypt under the configured key.
func (k *KMSKEK) Wrap(ctx context.Context, dataKey, aad []byte) ([]byte, error) {
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             &k.keyID,
		Plaintext:         dataKey,
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return nil, k.kmsError("encrypt", err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, errors.New("kms encrypt: response has no ciphertext")
	}
	return out.CiphertextBlob, nil
}

// Unwrap decrypts a wrapped data key with KMS Decrypt, pinned to the
// configured key.
func (k *KMSKEK) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             &k.keyID,
		CiphertextBlob:    wrapped,
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return nil, k.kmsError("decrypt", err)
	}
	return out.Plaintext, nil
}

// kmsError (whose callers name the key already) translates the KMS errors callers act on into this package's
// sentinels, keeping the AWS error in the chain for its details.
func (k *KMSKEK) kmsError(op string, err error) error {
	var sentinel error
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AccessDeniedException":
			sentinel = ErrKEKAccessDenied
		case "InvalidCiphertextException", "IncorrectKeyException":
			sentinel = ErrAuthentication
		case "NotFoundException", "DisabledException", "KMSInvalidStateException",
			"KeyUnavailableException", "InvalidKeyUsageException":
			sentinel = ErrKEKUnavailable
		}
	}
	if sentinel == nil {
		return fmt.Errorf("kms %s: %w", op, err)
	}
	return fmt.Errorf("kms %s: %w: %w", op, sentinel, err)
}

// encryptionContext derives the KMS encryption context from aad. Context
// values are strings, so aad that is not UTF-8 goes under a different key in
// base64; the two forms can never be confused because KMS requires the exact
// same set of pairs.
func encryptionContext(aad []byte) map[string]string {
	ec := map[string]string{kmsContextPurpose: kmsPurposeValue}
	switch {
	case len(aad) == 0:
	case utf8.Valid(aad):
		ec[kmsContextAAD] = string(aad)
	default:
		ec[kmsContextAADBase64] = base64.StdEncoding.EncodeToString(aad)
	}
	return ec
}
