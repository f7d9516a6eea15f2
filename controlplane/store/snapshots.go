package store

import (
	"context"
	"fmt"
	"time"
)

// SnapshotStore keeps each lockout's signed audit snapshot (the PDF, its
// SHA-256 and the RFC 3161 token over that hash) from the moment it is
// rendered until, and after, it is written to the write-once store.
type SnapshotStore interface {
	// PutSnapshot records a lockout's snapshot. A lockout has one: when it
	// already has a snapshot, that one is returned unchanged and created is
	// false (a re-run step must not replace evidence already made).
	PutSnapshot(ctx context.Context, p PutSnapshotParams) (s Snapshot, created bool, err error)
	// GetSnapshot returns a snapshot by id, with its PDF.
	GetSnapshot(ctx context.Context, orgID, id string) (Snapshot, error)
	// GetLockoutSnapshot returns the lockout's snapshot, with its PDF.
	GetLockoutSnapshot(ctx context.Context, orgID, lockoutID string) (Snapshot, error)
	// MarkSnapshotUploaded records where the write-once store keeps the
	// snapshot. It is set once: a second call with the same object key and
	// version is a no-op, another one is ErrConflict.
	MarkSnapshotUploaded(ctx context.Context, p MarkSnapshotUploadedParams) (Snapshot, error)
}

// Snapshot is a lockout's signed audit snapshot.
type Snapshot struct {
	OrgID     string
	LockoutID string
	ID        string
	PDF       []byte
	// SHA256 is the hash of PDF; TimestampToken is an RFC 3161 token over it.
	SHA256         []byte
	TimestampToken []byte
	CreatedAt      time.Time
	// Set once uploaded.
	ObjectKey   string
	VersionID   string
	RetainUntil *time.Time
	UploadedAt  *time.Time
}

// PutSnapshotParams records a rendered, signed snapshot.
type PutSnapshotParams struct {
	OrgID, LockoutID, ID string
	PDF, SHA256          []byte
	TimestampToken       []byte
	At                   time.Time
}

// MarkSnapshotUploadedParams records a snapshot's place in the write-once store.
type MarkSnapshotUploadedParams struct {
	OrgID, ID   string
	ObjectKey   string
	VersionID   string
	RetainUntil time.Time
	At          time.Time
}

// CheckSnapshotUpload is how both backends decide a MarkSnapshotUploaded
// on the row as it now is: the upload it asked for is recorded (nil), or
// another one was recorded before (ErrConflict).
func CheckSnapshotUpload(s Snapshot, p MarkSnapshotUploadedParams) error {
	if s.UploadedAt != nil && s.ObjectKey == p.ObjectKey && s.VersionID == p.VersionID {
		return nil
	}
	return fmt.Errorf("snapshot %s was uploaded as %s (version %s): %w", s.ID, s.ObjectKey, s.VersionID, ErrConflict)
}
