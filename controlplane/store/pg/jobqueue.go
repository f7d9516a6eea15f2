package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

var (
	qLockJobQueueMigrations   = dialectQueries.MustGet("LockJobQueueMigrations")
	qUnlockJobQueueMigrations = dialectQueries.MustGet("UnlockJobQueueMigrations")
	qGrantJobQueue            = dialectQueries.MustGet("GrantJobQueue")
)

// jobQueueLockKey serializes the job queue's migrations across replicas
// ("toktra" in ASCII, then 2).
const jobQueueLockKey int64 = 0x746f6b7472610002

// migrateJobQueue brings River's tables up to date and grants the
// application role what River does with them.
//
// The job queue shares the store's database and its pool (Pool), so River
// runs as toktra_app, which may not create tables: its migrations must run
// here, as the owner, before the pool switches roles. A caller that runs
// River's migrator again on Pool finds nothing left to do, which needs only
// reading river_migration. Granting after migrating, on every start, covers
// tables whenever River adds them, without default privileges that would
// also hand UPDATE and DELETE on every future table of ours to the app.
func migrateJobQueue(ctx context.Context, pool *pgxpool.Pool) error {
	// River takes no lock of its own: replicas starting together would both
	// create its tables. The lock is held by a connection River does not use.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, qLockJobQueueMigrations, jobQueueLockKey); err != nil {
		return fmt.Errorf("taking the job queue's migration lock: %w", err)
	}
	defer func() {
		// Unlock with a context of its own: ctx may be what failed. Should
		// unlocking fail, closing the connection ends the session and its lock.
		if _, err := conn.Exec(context.WithoutCancel(ctx), qUnlockJobQueueMigrations, jobQueueLockKey); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("preparing River's migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("applying River's migrations: %w", err)
	}
	if _, err := conn.Exec(ctx, qGrantJobQueue); err != nil {
		return fmt.Errorf("granting the application role River's tables: %w", err)
	}
	return nil
}
