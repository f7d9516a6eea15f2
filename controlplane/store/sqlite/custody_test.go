package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

// The database file itself refuses UPDATE and DELETE of custody records,
// to anyone who opens it directly.
func TestCustodyAppendOnly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "toktra.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("sqlite.Open() error = %v", err)
	}
	defer s.Close()
	raw, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatalf("opening the file directly: %v", err)
	}
	defer raw.Close()
	storetest.ExerciseCustodyAppendOnly(t, s, func(stmt string) error {
		_, err := raw.ExecContext(t.Context(), stmt)
		return err
	})
}
