package e2e

import (
	"testing"

	"github.com/toktra/toktra/controlplane/store/pgtest"
)

func runWithPostgres(m *testing.M) int { return pgtest.Run(m) }

func newPostgresDatabase(t testing.TB) string { return pgtest.NewDatabaseUnix(t) }
