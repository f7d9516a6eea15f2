package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// snapshotTests are the SnapshotStore's cases, run by Exercise.
var snapshotTests = []struct {
	name string
	run  func(t *testing.T, f *fixture)
}{
	{"Snapshots", testSnapshots},
}

func (f *fixture) snapshotParams(t *testing.T, orgID string, pdf string) (store.Lockout, store.PutSnapshotParams) {
	t.Helper()
	u := f.user(t, orgID, "snap@example.com")
	l := f.lockout(t, orgID, u.ID)
	h := sha256.Sum256([]byte(pdf))
	return l, store.PutSnapshotParams{OrgID: orgID, LockoutID: l.ID, ID: store.NewID("snap"), PDF: []byte(pdf),
		SHA256: h[:], TimestampToken: []byte("token"), At: base}
}

func testSnapshots(t *testing.T, f *fixture) {
	l, p := f.snapshotParams(t, f.orgA.ID, "%PDF-1.7 first")
	s, created, err := f.s.PutSnapshot(f.ctx, p)
	if err != nil || !created {
		t.Fatalf("PutSnapshot() = %v, %v; want created", created, err)
	}
	if s.ID != p.ID || s.LockoutID != l.ID || !bytes.Equal(s.PDF, p.PDF) || !bytes.Equal(s.SHA256, p.SHA256) ||
		!bytes.Equal(s.TimestampToken, p.TimestampToken) || !s.CreatedAt.Equal(base.Truncate(time.Microsecond)) || s.UploadedAt != nil {
		t.Errorf("PutSnapshot() = %+v; want the params back, not uploaded", s)
	}
	// A re-run step renders another PDF: the first one stays.
	second := p
	second.ID, second.PDF = store.NewID("snap"), []byte("%PDF-1.7 second")
	again, created, err := f.s.PutSnapshot(f.ctx, second)
	if err != nil || created || again.ID != p.ID || !bytes.Equal(again.PDF, p.PDF) {
		t.Errorf("PutSnapshot(second) = %s %q, created %v, %v; want the first, unchanged", again.ID, again.PDF, created, err)
	}
	for name, get := range map[string]func() (store.Snapshot, error){
		"GetSnapshot":        func() (store.Snapshot, error) { return f.s.GetSnapshot(f.ctx, f.orgA.ID, p.ID) },
		"GetLockoutSnapshot": func() (store.Snapshot, error) { return f.s.GetLockoutSnapshot(f.ctx, f.orgA.ID, l.ID) },
	} {
		if got, err := get(); err != nil || got.ID != p.ID || !bytes.Equal(got.PDF, p.PDF) {
			t.Errorf("%s() = %s, %v; want %s", name, got.ID, err, p.ID)
		}
	}
	// Org B sees nothing of A's.
	if _, err := f.s.GetSnapshot(f.ctx, f.orgB.ID, p.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSnapshot(org B, A's id) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.GetLockoutSnapshot(f.ctx, f.orgB.ID, l.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetLockoutSnapshot(org B, A's lockout) error = %v; want ErrNotFound", err)
	}
	bp := p
	bp.OrgID, bp.ID = f.orgB.ID, store.NewID("snap")
	if _, _, err := f.s.PutSnapshot(f.ctx, bp); err == nil {
		t.Errorf("PutSnapshot(org B, A's lockout) error = nil; want a refusal")
	}
	up := store.MarkSnapshotUploadedParams{OrgID: f.orgB.ID, ID: p.ID, ObjectKey: "k", VersionID: "v1", RetainUntil: base.AddDate(7, 0, 0), At: base}
	if _, err := f.s.MarkSnapshotUploaded(f.ctx, up); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkSnapshotUploaded(org B) error = %v; want ErrNotFound", err)
	}

	up.OrgID = f.orgA.ID
	got, err := f.s.MarkSnapshotUploaded(f.ctx, up)
	if err != nil || got.ObjectKey != "k" || got.VersionID != "v1" || got.UploadedAt == nil || got.RetainUntil == nil ||
		!got.RetainUntil.Equal(up.RetainUntil.Truncate(time.Microsecond)) {
		t.Fatalf("MarkSnapshotUploaded() = %+v, %v; want the upload recorded", got, err)
	}
	if _, err := f.s.MarkSnapshotUploaded(f.ctx, up); err != nil {
		t.Errorf("MarkSnapshotUploaded(same again) error = %v; want nil", err)
	}
	other := up
	other.VersionID = "v2"
	if _, err := f.s.MarkSnapshotUploaded(f.ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Errorf("MarkSnapshotUploaded(other version) error = %v; want ErrConflict", err)
	}
	if got, _ := f.s.GetSnapshot(f.ctx, f.orgA.ID, p.ID); got.VersionID != "v1" {
		t.Errorf("after a refused re-upload, version = %q; want v1", got.VersionID)
	}
}

// ExerciseSnapshotsAppendOnly checks that the database itself refuses to
// change or delete a snapshot's evidence, whoever connects (exec runs a
// statement on a raw connection to the store's database).
func ExerciseSnapshotsAppendOnly(t *testing.T, s store.Store, exec func(sql string) error) {
	t.Helper()
	f := &fixture{s: s, ctx: t.Context()}
	f.orgA = f.createOrg(t, "Org A")
	_, p := f.snapshotParams(t, f.orgA.ID, "%PDF-1.7 evidence")
	if _, _, err := s.PutSnapshot(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSnapshotUploaded(f.ctx, store.MarkSnapshotUploadedParams{OrgID: f.orgA.ID, ID: p.ID, ObjectKey: "k", VersionID: "v1", RetainUntil: base, At: base}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"UPDATE snapshots SET pdf = sha256",
		"UPDATE snapshots SET sha256 = sha256",
		"UPDATE snapshots SET version_id = 'v2'",
		"DELETE FROM snapshots",
	} {
		// Even a no-op update is refused once the row is uploaded.
		if err := exec(stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("exec(%q) error = %v; want the append-only trigger's refusal", stmt, err)
		}
	}
	got, err := s.GetSnapshot(f.ctx, f.orgA.ID, p.ID)
	if err != nil || !bytes.Equal(got.PDF, p.PDF) || got.VersionID != "v1" {
		t.Errorf("after refused statements snapshot = %q %q, %v; want unchanged", got.PDF, got.VersionID, err)
	}
}
