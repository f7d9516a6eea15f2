// Package pg is the Postgres store.Store (github.com/jackc/pgx/v5), the store
// of record in production and the one several stateless control-plane
// replicas share.
//
// Command sequences are allocated under the device row's lock, so replicas
// never hand out the same one. Command notices travel through Postgres
// itself: InsertCommand sends pg_notify in its transaction (delivered only on
// commit, to every replica), and SubscribeCommands listens on a dedicated
// connection that reconnects with backoff when it drops, telling subscribers
// to reload since notices may have been missed.
//
// Tenant isolation is enforced twice. Every query filters by org, and every
// method that takes an org runs in a transaction scoped to it
// (toktra.org_id), under the toktra_app role, which owns nothing and sees
// only that org's rows through Row-Level Security (migration 004). The few
// lookups that must cross orgs go through SECURITY DEFINER functions that
// return only what the lookup needs.
package pg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/internal/notice"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var _ store.Store = (*Store)(nil)

var (
	//go:embed queries.sql
	queriesSQL string
	//go:embed dialect.sql
	dialectSQL string
	//go:embed migrations/*.up.sql
	migrationsFS embed.FS

	queries        = sqlq.MustParse(queriesSQL)
	dialectQueries = sqlq.MustParse(dialectSQL)

	qLockMigrations         = dialectQueries.MustGet("LockMigrations")
	qCreateSchemaMigrations = dialectQueries.MustGet("CreateSchemaMigrations")
	qHasSchemaMigration     = dialectQueries.MustGet("HasSchemaMigration")
	qInsertSchemaMigration  = dialectQueries.MustGet("InsertSchemaMigration")
	qPing                   = queries.MustGet("Ping")
	qSetOrg                 = dialectQueries.MustGet("SetOrg")
	qSetAppRole             = dialectQueries.MustGet("SetAppRole")
)

// migrationLockKey is the advisory lock that serializes migrations across
// replicas ("toktra" in ASCII, then 1).
const migrationLockKey int64 = 0x746f6b7472610001

// Store is the Postgres store.Store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// q runs the queries scoped to no org (Ping and the cross-org lookups):
	// the pool, or the transaction for a Store made by InTx. Everything else
	// goes through inOrg.
	q   db
	tx  pgx.Tx
	hub *notice.Hub
	log *slog.Logger

	// heartbeat is how long the listener waits for a notice before checking
	// its connection is still alive.
	heartbeat time.Duration

	mu             sync.Mutex
	closed         bool
	listenerActive bool
	stopListener   context.CancelFunc
	listening      chan struct{} // closed once the first LISTEN succeeds
	listenerDone   chan struct{} // closed when the listener goroutine ends

	closeOnce sync.Once
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets where the store reports trouble it handles itself (the
// LISTEN connection dropping and reconnecting). By default it is discarded.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Open connects to the database named by dsn (a libpq URL or key=value
// string; pgxpool settings such as pool_max_conns are honoured) and brings
// its schema up to date.
//
// The DSN's role is the schema owner: it runs the store's migrations and the
// job queue's (River's), on a short-lived pool of its own, and must be able
// to create the toktra_app role (CREATEROLE) the first time. Every query
// after that runs as toktra_app, which owns nothing and is subject to
// Row-Level Security: the pool's connections SET ROLE when they connect.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing postgres dsn: %w", err)
	}
	if err := migrateAsOwner(ctx, cfg.Copy()); err != nil {
		return nil, err
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, qSetAppRole); err != nil {
			return fmt.Errorf("switching to the application role: %w", err)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	s := &Store{
		pool:         pool,
		q:            pool,
		hub:          notice.NewHub(),
		log:          slog.New(slog.DiscardHandler),
		heartbeat:    30 * time.Second,
		listening:    make(chan struct{}),
		listenerDone: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// migrateAsOwner runs the migrations as the DSN's own role, which owns the
// schema, before any connection switches to the application role.
func migrateAsOwner(ctx context.Context, cfg *pgxpool.Config) error {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("opening postgres pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrating postgres store: %w", err)
	}
	if err := migrateJobQueue(ctx, pool); err != nil {
		return fmt.Errorf("migrating the job queue: %w", err)
	}
	return nil
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := sqlq.LoadMigrations(migrationsFS, "migrations")
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, qLockMigrations, migrationLockKey); err != nil {
				return fmt.Errorf("taking migration lock: %w", err)
			}
			if _, err := tx.Exec(ctx, qCreateSchemaMigrations); err != nil {
				return fmt.Errorf("creating schema_migrations: %w", err)
			}
			var applied bool
			if err := tx.QueryRow(ctx, qHasSchemaMigration, m.Version).Scan(&applied); err != nil {
				return fmt.Errorf("reading schema_migrations: %w", err)
			}
			if applied {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, qInsertSchemaMigration, m.Version, m.Name); err != nil {
				return fmt.Errorf("recording migration: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("applying migration %03d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.q.QueryRow(ctx, qPing).Scan(&one); err != nil {
		return fmt.Errorf("pinging postgres store: %w", err)
	}
	return nil
}

// Close stops the listener, ends every subscription and closes the pool.
// Calling it again does nothing.
func (s *Store) Close() error {
	if s.tx != nil {
		return fmt.Errorf("closing the store: %w", errInTx)
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		active := s.listenerActive
		if active {
			s.stopListener()
		}
		s.mu.Unlock()
		if active {
			<-s.listenerDone
		}
		s.hub.Close()
		s.pool.Close()
	})
	return nil
}

// translate turns pgx errors into the store's sentinels, keeping the
// original in the chain for its detail.
func translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case "23503": // foreign_key_violation: a reference outside the org, or to nothing
			return fmt.Errorf("%w: referenced row: %w", store.ErrNotFound, err)
		}
	}
	return err
}

// db is what a pool and a transaction have in common.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	// Begin starts a transaction, or a savepoint inside one.
	Begin(ctx context.Context) (pgx.Tx, error)
}

var errInTx = errors.New("not available inside InTx")

// InTx runs fn in one transaction; the Store fn gets reads and writes
// inside it, and tx is the pgx.Tx, for a job queue on the same database to
// enqueue in the same commit. Command notices (pg_notify) are delivered by
// Postgres at commit.
func (s *Store) InTx(ctx context.Context, fn func(st store.Store, tx any) error) error {
	if s.tx != nil {
		return fn(s, s.tx)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(&Store{pool: s.pool, q: tx, tx: tx, hub: s.hub, log: s.log}, tx)
	})
}

// inOrg runs fn in a transaction scoped to orgID: its first statement sets
// toktra.org_id, so Row-Level Security shows fn only that org's rows and
// refuses rows of any other, whatever fn's queries say. Outside InTx the
// transaction is fn's own. Inside InTx fn shares InTx's transaction, which
// is scoped again on every call, since successive calls may name different
// orgs; the setting is transaction-local, so it ends with the transaction.
func (s *Store) inOrg(ctx context.Context, orgID string, fn func(tx pgx.Tx) error) error {
	if s.tx != nil {
		if err := setOrg(ctx, s.tx, orgID); err != nil {
			return err
		}
		return fn(s.tx)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := setOrg(ctx, tx, orgID); err != nil {
			return err
		}
		return fn(tx)
	})
}

// inOrgAtomic is inOrg for a method whose statements must take effect
// together or not at all even inside InTx, where fn runs in a savepoint.
func (s *Store) inOrgAtomic(ctx context.Context, orgID string, fn func(tx pgx.Tx) error) error {
	return s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		if s.tx == nil {
			return fn(tx)
		}
		return pgx.BeginFunc(ctx, tx, fn)
	})
}

func setOrg(ctx context.Context, tx pgx.Tx, orgID string) error {
	if _, err := tx.Exec(ctx, qSetOrg, orgID); err != nil {
		return fmt.Errorf("scoping the transaction to org %s: %w", orgID, err)
	}
	return nil
}

// orgRow runs a query of orgID's rows and scans the one row it returns.
func orgRow[T any](ctx context.Context, s *Store, orgID string, scan func(rowScanner) (T, error), query string, args ...any) (T, error) {
	var v T
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		v, err = scan(tx.QueryRow(ctx, query, args...))
		return err
	})
	return v, err
}

// orgList runs a query of orgID's rows and scans every row with scan.
func orgList[T any](ctx context.Context, s *Store, orgID string, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	var vs []T
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		var err error
		vs, err = queryList(ctx, tx, query, scan, args...)
		return err
	})
	return vs, err
}

// orgExecOne is execOne on orgID's rows.
func (s *Store) orgExecOne(ctx context.Context, orgID, query string, args ...any) error {
	return s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		return execOne(ctx, tx, query, args...)
	})
}

// rowScanner is what pgx.Row and pgx.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// ts is how a time goes to Postgres: UTC, microseconds (what it keeps).
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// optTS is ts for optional times: the zero time is NULL.
func optTS(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	v := ts(t)
	return &v
}

// fromTS normalizes a time read back to UTC (pgx returns local time).
func fromTS(t time.Time) time.Time { return t.UTC() }

func fromOptTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func ptrFromOptTS(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// queryList runs a query and scans every row with scan.
func queryList[T any](ctx context.Context, q db, query string, scan func(rowScanner) (T, error), args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// execOne runs an UPDATE that must match exactly one row of the org.
func execOne(ctx context.Context, q db, query string, args ...any) error {
	tag, err := q.Exec(ctx, query, args...)
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Pool is the store's connection pool, for a job queue that shares the
// database (River's pgx driver).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
