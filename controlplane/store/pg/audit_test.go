package pg_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store/pgtest"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

// The database refuses UPDATE, DELETE and TRUNCATE on the audit log, to
// anyone who connects to it directly.
func TestAuditAppendOnly(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	raw, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer raw.Close(context.Background())
	exec := func(stmt string) error {
		_, err := raw.Exec(t.Context(), stmt)
		return err
	}
	storetest.ExerciseAppendOnly(t, s, exec)
	if err := exec("TRUNCATE audit_log"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("exec(TRUNCATE audit_log) error = %v; want the append-only trigger's refusal", err)
	}
}

// Snapshots, too, are evidence the database keeps unchanged.
func TestSnapshotsAppendOnly(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	raw, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer raw.Close(context.Background())
	exec := func(stmt string) error {
		_, err := raw.Exec(t.Context(), stmt)
		return err
	}
	storetest.ExerciseSnapshotsAppendOnly(t, s, exec)
	if err := exec("TRUNCATE snapshots"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("exec(TRUNCATE snapshots) error = %v; want the append-only trigger's refusal", err)
	}
}
