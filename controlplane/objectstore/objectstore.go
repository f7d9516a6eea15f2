// Package objectstore keeps evidence write-once: snapshot PDFs, their
// RFC 3161 tokens and custody checkpoints are stored so that nobody — not
// even the control plane — can change or delete them before their
// retention ends.
//
// Two backends implement [Store]: package s3store (S3 Object Lock in
// COMPLIANCE mode, enforced by the bucket) and package localstore (a local
// write-once directory, the embedded default, enforced by its own code).
// Package objectstoretest is the conformance suite both run.
package objectstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store keeps objects write-once: a key is written at most once, and an
// object cannot be deleted before its retain-until time.
type Store interface {
	// Put writes a new object. It refuses a key that already holds
	// different content (ErrExists); a Put of the same key with the same
	// bytes returns the stored object, so a retried step is harmless.
	Put(ctx context.Context, p PutParams) (Object, error)
	// Get returns an object's content and description. versionID may be
	// empty for the current version. The reader fails with ErrCorrupt at
	// the end when the content does not match the recorded SHA-256.
	Get(ctx context.Context, key, versionID string) (io.ReadCloser, Object, error)
	// Stat describes an object, with its retention as the backend
	// enforces it (for S3, read back from the bucket).
	Stat(ctx context.Context, key, versionID string) (Object, error)
	// PresignGet returns a URL that lets its holder download this exact
	// version until ttl passes (at most MaxPresignTTL). The local store's
	// URL is a path served by its Handler on the API server; resolve it
	// against the API's origin.
	PresignGet(ctx context.Context, key, versionID string, ttl time.Duration) (string, error)
	// Delete removes one version once its retention has ended; before,
	// it returns ErrRetained.
	Delete(ctx context.Context, key, versionID string) error
	// CheckWriteOnce reports whether the backend can keep its promises
	// (for S3: the bucket has Object Lock and versioning enabled). The
	// server refuses to start when it fails.
	CheckWriteOnce(ctx context.Context) error
}

// PutParams describe an object to write.
type PutParams struct {
	// Key names the object; see ValidateKey and the key builders.
	Key string
	// Body is the whole content. Evidence objects are small enough to
	// hold in memory, and the checksum must be known before the upload.
	Body []byte
	// SHA256 of Body. When set it must match (else ErrChecksumMismatch),
	// so a caller that timestamped a hash stores exactly those bytes; when
	// zero it is computed.
	SHA256 Digest
	// ContentType is recorded and served with the object.
	ContentType string
	// MinRetention is the org's own minimum; the store's configured
	// retention applies when it is longer.
	MinRetention Period
}

// Object describes a stored object version.
type Object struct {
	Key         string    `json:"key"`
	VersionID   string    `json:"version_id"`
	SHA256      Digest    `json:"sha256"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type,omitempty"`
	RetainUntil time.Time `json:"retain_until"`
	// Mode says who enforces the retention: ModeCompliance (S3 Object
	// Lock) or ModeLocal (this program's local store).
	Mode string `json:"mode"`
}

// Retention modes.
const (
	// ModeCompliance is S3 Object Lock's COMPLIANCE mode: no user,
	// including the account's root, can shorten or remove the lock.
	ModeCompliance = "COMPLIANCE"
	// ModeLocal is the local store's retention, enforced by this program
	// and file permissions; the machine's root can still remove files.
	ModeLocal = "LOCAL"
)

// MaxPresignTTL is the longest a presigned URL may live: S3's limit for
// SigV4 presigned URLs, applied to both backends.
const MaxPresignTTL = 7 * 24 * time.Hour

// DefaultBucket is the S3 bucket evidence goes to unless configured.
const DefaultBucket = "toktra-audit-logs"

// Errors every backend returns, checked with errors.Is.
var (
	ErrInvalidKey       = errors.New("invalid object key")
	ErrExists           = errors.New("object already exists with different content")
	ErrNotFound         = errors.New("object not found")
	ErrRetained         = errors.New("object is under retention")
	ErrChecksumMismatch = errors.New("body does not match its SHA-256")
	ErrCorrupt          = errors.New("stored object does not match its recorded SHA-256")
	ErrNotWriteOnce     = errors.New("object storage is not write-once")
)

// Digest is a SHA-256 hash; it reads and writes as lowercase hex.
type Digest [sha256.Size]byte

// Sum returns the SHA-256 of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

// IsZero reports whether d is unset.
func (d Digest) IsZero() bool { return d == Digest{} }

// String returns d in lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Base64 returns d in standard base64, as S3's x-amz-checksum-sha256 carries it.
func (d Digest) Base64() string { return base64.StdEncoding.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDigest reads a hex SHA-256.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != hex.EncodedLen(len(d)) {
		return d, fmt.Errorf("sha-256 %q: want %d hex digits", s, hex.EncodedLen(len(d)))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("sha-256 %q: %w", s, err)
	}
	return d, nil
}

// ParseDigestBase64 reads a base64 SHA-256 (S3's checksum form).
func ParseDigestBase64(s string) (Digest, error) {
	var d Digest
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("sha-256 checksum %q: not base64 of %d bytes", s, len(d))
	}
	copy(d[:], b)
	return d, nil
}

// CheckBody returns the SHA-256 of p.Body, checking it against p.SHA256
// when the caller gave one.
func CheckBody(p PutParams) (Digest, error) {
	sum := Sum(p.Body)
	if !p.SHA256.IsZero() && sum != p.SHA256 {
		return sum, fmt.Errorf("%s: given %s, body hashes to %s: %w", p.Key, p.SHA256, sum, ErrChecksumMismatch)
	}
	return sum, nil
}

// VerifyingReader returns a reader of r that fails with ErrCorrupt at the
// end of the content unless it is exactly size bytes hashing to want.
func VerifyingReader(r io.ReadCloser, key string, size int64, want Digest) io.ReadCloser {
	return &verifyingReader{r: r, key: key, size: size, want: want, h: sha256.New()}
}

type verifyingReader struct {
	r    io.ReadCloser
	key  string
	size int64
	n    int64
	want Digest
	h    interface {
		io.Writer
		Sum([]byte) []byte
	}
	err error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("%s: longer than its recorded %d bytes: %w", v.key, v.size, ErrCorrupt)
		return n, v.err
	}
	if errors.Is(err, io.EOF) {
		var got Digest
		copy(got[:], v.h.Sum(nil))
		if v.n != v.size || got != v.want {
			v.err = fmt.Errorf("%s: read %d bytes hashing to %s, recorded %d bytes %s: %w", v.key, v.n, got, v.size, v.want, ErrCorrupt)
			return n, v.err
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }
