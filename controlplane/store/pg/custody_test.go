package pg_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store/pgtest"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

// The database refuses UPDATE, DELETE and TRUNCATE of custody records to
// anyone who connects to it directly, and the application role holds no
// UPDATE or DELETE privilege on them at all.
func TestCustodyAppendOnly(t *testing.T) {
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
	storetest.ExerciseCustodyAppendOnly(t, s, exec)
	for _, table := range []string{"custody_nodes", "custody_tokens", "custody_checkpoints"} {
		if err := exec("TRUNCATE " + table + " CASCADE"); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("exec(TRUNCATE %s) error = %v; want the append-only trigger's refusal", table, err)
		}
		for _, priv := range []string{"UPDATE", "DELETE", "TRUNCATE"} {
			var has bool
			if err := raw.QueryRow(t.Context(), "SELECT has_table_privilege($1, $2, $3)", appRole, table, priv).Scan(&has); err != nil {
				t.Fatal(err)
			}
			if has {
				t.Errorf("%s holds %s on %s; want only SELECT and INSERT", appRole, priv, table)
			}
		}
	}
}
