package secrets

import (
	"encoding/binary"
	"fmt"
)

// The envelope, version 1, all integers big-endian:
//
//	offset  size  field
//	0       4     magic "TKSE" (Toktra sealed envelope)
//	4       1     version = 1
//	5       1     n = length of the KEK id, 1..255
//	6       n     KEK id (e.g. "local:1a2b3c4d5e6f7a8b", "kms:arn:aws:kms:...")
//	6+n     2     m = length of the wrapped data key, 1..65535
//	8+n     m     wrapped data key (KEK-specific format)
//	8+n+m   12    AES-GCM nonce
//	20+n+m  rest  AES-256-GCM ciphertext of the secret, 16-byte tag included
//
// The secret's GCM additional data is dataAADPrefix followed by the caller's
// aad. The header (KEK id, wrapped key) is deliberately left out of it: it is
// protected by the KEK's own authentication, and leaving it out lets Rewrap
// replace it without decrypting the secret. Every field has exactly one
// encoding (lengths are exact, the ciphertext runs to the end), so no two
// distinct byte strings open to the same secret.
const (
	envelopeMagic   = "TKSE"
	envelopeVersion = 1
	nonceSize       = 12
	tagSize         = 16
	dataKeySize     = 32
	dataAADPrefix   = "toktra/secrets/v1/data\x00"
)

// envelope is the parsed form of a sealed secret.
type envelope struct {
	kekID      string
	wrappedKey []byte
	nonce      []byte
	ciphertext []byte
}

func (e *envelope) marshal() ([]byte, error) {
	if len(e.kekID) == 0 || len(e.kekID) > 255 {
		return nil, fmt.Errorf("kek id %q: length %d outside 1..255", e.kekID, len(e.kekID))
	}
	if len(e.wrappedKey) == 0 || len(e.wrappedKey) > 0xffff {
		return nil, fmt.Errorf("wrapped key length %d outside 1..65535", len(e.wrappedKey))
	}
	if len(e.nonce) != nonceSize {
		return nil, fmt.Errorf("nonce length %d, want %d", len(e.nonce), nonceSize)
	}
	b := make([]byte, 0, len(envelopeMagic)+2+len(e.kekID)+2+len(e.wrappedKey)+nonceSize+len(e.ciphertext))
	b = append(b, envelopeMagic...)
	b = append(b, envelopeVersion, byte(len(e.kekID)))
	b = append(b, e.kekID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.wrappedKey)))
	b = append(b, e.wrappedKey...)
	b = append(b, e.nonce...)
	b = append(b, e.ciphertext...)
	return b, nil
}

// parseEnvelope splits b into its fields. The returned slices alias b.
func parseEnvelope(b []byte) (*envelope, error) {
	if len(b) < len(envelopeMagic)+1 || string(b[:len(envelopeMagic)]) != envelopeMagic {
		return nil, fmt.Errorf("%w: missing %q header", ErrMalformed, envelopeMagic)
	}
	b = b[len(envelopeMagic):]
	if b[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	b = b[1:]
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: truncated before kek id", ErrMalformed)
	}
	n := int(b[0])
	b = b[1:]
	if n == 0 || len(b) < n {
		return nil, fmt.Errorf("%w: truncated kek id", ErrMalformed)
	}
	var e envelope
	e.kekID, b = string(b[:n]), b[n:]
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: truncated before wrapped key", ErrMalformed)
	}
	m := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if m == 0 || len(b) < m {
		return nil, fmt.Errorf("%w: truncated wrapped key", ErrMalformed)
	}
	e.wrappedKey, b = b[:m], b[m:]
	if len(b) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: truncated ciphertext", ErrMalformed)
	}
	e.nonce, e.ciphertext = b[:nonceSize], b[nonceSize:]
	return &e, nil
}

// EnvelopeKEKID reports which KEK a sealed secret's data key is wrapped
// under, without decrypting anything; a re-wrap job uses it to find the
// secrets still sealed under a retired KEK.
func EnvelopeKEKID(sealed []byte) (string, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return "", err
	}
	return e.kekID, nil
}
