package pg

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed snapshots.sql
	snapshotsSQL     string
	snapshotsQueries = sqlq.MustParse(snapshotsSQL)

	qInsertSnapshot       = snapshotsQueries.MustGet("InsertSnapshot")
	qGetSnapshot          = snapshotsQueries.MustGet("GetSnapshot")
	qGetLockoutSnapshot   = snapshotsQueries.MustGet("GetLockoutSnapshot")
	qMarkSnapshotUploaded = snapshotsQueries.MustGet("MarkSnapshotUploaded")
)

// PutSnapshot records the lockout's snapshot unless it has one, and returns
// the one it has.
func (s *Store) PutSnapshot(ctx context.Context, p store.PutSnapshotParams) (store.Snapshot, bool, error) {
	var (
		snap    store.Snapshot
		created bool
	)
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, qInsertSnapshot, p.OrgID, p.ID, p.LockoutID, p.PDF, p.SHA256, p.TimestampToken, ts(p.At))
		if err != nil {
			return translate(err)
		}
		created = tag.RowsAffected() == 1
		snap, err = scanSnapshot(tx.QueryRow(ctx, qGetLockoutSnapshot, p.OrgID, p.LockoutID))
		return translate(err)
	})
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("putting the snapshot of lockout %s: %w", p.LockoutID, err)
	}
	return snap, created, nil
}

// GetSnapshot returns a snapshot by id.
func (s *Store) GetSnapshot(ctx context.Context, orgID, id string) (store.Snapshot, error) {
	snap, err := orgRow(ctx, s, orgID, scanSnapshot, qGetSnapshot, orgID, id)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("getting snapshot %s: %w", id, translate(err))
	}
	return snap, nil
}

// GetLockoutSnapshot returns the lockout's snapshot.
func (s *Store) GetLockoutSnapshot(ctx context.Context, orgID, lockoutID string) (store.Snapshot, error) {
	snap, err := orgRow(ctx, s, orgID, scanSnapshot, qGetLockoutSnapshot, orgID, lockoutID)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("getting the snapshot of lockout %s: %w", lockoutID, translate(err))
	}
	return snap, nil
}

// MarkSnapshotUploaded records the snapshot's upload, once.
func (s *Store) MarkSnapshotUploaded(ctx context.Context, p store.MarkSnapshotUploadedParams) (store.Snapshot, error) {
	var snap store.Snapshot
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qMarkSnapshotUploaded, p.OrgID, p.ID, p.ObjectKey, p.VersionID, ts(p.RetainUntil), ts(p.At)); err != nil {
			return translate(err)
		}
		var err error
		snap, err = scanSnapshot(tx.QueryRow(ctx, qGetSnapshot, p.OrgID, p.ID))
		if err != nil {
			return translate(err)
		}
		return store.CheckSnapshotUpload(snap, p)
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("recording the upload of snapshot %s: %w", p.ID, err)
	}
	return snap, nil
}

func scanSnapshot(r rowScanner) (store.Snapshot, error) {
	var (
		s                store.Snapshot
		created          time.Time
		retain, uploaded *time.Time
	)
	if err := r.Scan(&s.OrgID, &s.ID, &s.LockoutID, &s.PDF, &s.SHA256, &s.TimestampToken, &created,
		&s.ObjectKey, &s.VersionID, &retain, &uploaded); err != nil {
		return store.Snapshot{}, err
	}
	s.CreatedAt = fromTS(created)
	s.RetainUntil = ptrFromOptTS(retain)
	s.UploadedAt = ptrFromOptTS(uploaded)
	return s, nil
}
