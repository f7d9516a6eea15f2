package objectstore

import (
	"fmt"
	"strings"
)

// Key limits. S3 allows 1024 bytes; segments stay well under a file
// name's 255 bytes so the local store can add its own suffixes.
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 200
	MaxKeyDepth   = 16
)

// ValidateKey accepts keys made of "/"-separated segments of ASCII letters,
// digits, '.', '_' and '-', each starting with a letter or digit. That
// excludes absolute paths, empty segments, "." and "..", hidden files,
// backslashes, NUL and every non-ASCII byte, so a key is the same path on
// every backend and cannot leave the local store's directory.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key: %w", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes exceeds %d: %w", len(key), MaxKeyLen, ErrInvalidKey)
	}
	segs := strings.Split(key, "/")
	if len(segs) > MaxKeyDepth {
		return fmt.Errorf("key %q has %d segments, more than %d: %w", key, len(segs), MaxKeyDepth, ErrInvalidKey)
	}
	for _, s := range segs {
		if err := ValidateSegment(s); err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
	}
	return nil
}

// ValidateSegment checks one path segment of a key (also an id that goes
// into one, such as an org id).
func ValidateSegment(s string) error {
	if s == "" {
		return fmt.Errorf("empty segment: %w", ErrInvalidKey)
	}
	if len(s) > MaxSegmentLen {
		return fmt.Errorf("segment of %d bytes exceeds %d: %w", len(s), MaxSegmentLen, ErrInvalidKey)
	}
	if !isAlnum(s[0]) {
		return fmt.Errorf("segment %q must start with a letter or digit: %w", s, ErrInvalidKey)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("segment %q: byte %q not allowed (letters, digits, '.', '_', '-'): %w", s, c, ErrInvalidKey)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// SnapshotKey is where a lockout's snapshot PDF goes:
// orgs/{org}/snapshots/{lockout}/{snapshot}.pdf.
func SnapshotKey(orgID, lockoutID, snapshotID string) (string, error) {
	return join(fmt.Sprintf("orgs/%s/snapshots/%s/%s.pdf", orgID, lockoutID, snapshotID), orgID, lockoutID, snapshotID)
}

// SnapshotTokenKey is where the RFC 3161 token over the snapshot PDF's
// SHA-256 goes, beside the PDF: orgs/{org}/snapshots/{lockout}/{snapshot}.tsr.
func SnapshotTokenKey(orgID, lockoutID, snapshotID string) (string, error) {
	return join(fmt.Sprintf("orgs/%s/snapshots/%s/%s.tsr", orgID, lockoutID, snapshotID), orgID, lockoutID, snapshotID)
}

// CheckpointKey is where an org's signed custody checkpoint of the Merkle
// log at size goes: orgs/{org}/checkpoints/{size}.note, the size padded to
// 20 digits so a listing sorts by size. One checkpoint per size: the log
// only grows, so a later checkpoint has a larger size.
func CheckpointKey(orgID string, size uint64) (string, error) {
	return join(fmt.Sprintf("orgs/%s/checkpoints/%020d.note", orgID, size), orgID)
}

// AuditSegmentKey is where an archived segment of an org's audit log,
// entries first to last inclusive, goes:
// orgs/{org}/audit/{first}-{last}.jsonl (padded like CheckpointKey).
func AuditSegmentKey(orgID string, first, last uint64) (string, error) {
	if last < first {
		return "", fmt.Errorf("audit segment %d-%d ends before it starts: %w", first, last, ErrInvalidKey)
	}
	return join(fmt.Sprintf("orgs/%s/audit/%020d-%020d.jsonl", orgID, first, last), orgID)
}

// join validates each id as one segment (so an id cannot add segments)
// and then the whole key.
func join(key string, ids ...string) (string, error) {
	for _, id := range ids {
		if err := ValidateSegment(id); err != nil {
			return "", fmt.Errorf("id %q: %w", id, err)
		}
	}
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return key, nil
}
