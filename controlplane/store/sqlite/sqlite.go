// Package sqlite is the embedded store.Store: one SQLite file, pure Go
// (modernc.org/sqlite, no cgo), so the control plane runs on a fresh machine
// with nothing installed.
//
// The database runs in WAL mode with foreign keys on. Writes go through a
// single connection whose transactions begin IMMEDIATE (they take the write
// lock up front, so they never fail half-way on a lock upgrade); reads use a
// separate read-only pool and run alongside them. Command notices
// (SubscribeCommands) are broadcast in process after commit: they cover
// commands inserted through this Store value, which for the embedded store is
// the whole control plane.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

	qCreateSchemaMigrations = dialectQueries.MustGet("CreateSchemaMigrations")
	qHasSchemaMigration     = dialectQueries.MustGet("HasSchemaMigration")
	qInsertSchemaMigration  = dialectQueries.MustGet("InsertSchemaMigration")
	qPing                   = queries.MustGet("Ping")
)

// busyTimeout is how long a statement waits for another connection's lock
// (a checkpoint, or a second process on the same file) before failing.
const busyTimeout = 10 * time.Second

// Store is the SQLite store.Store. It is safe for concurrent use.
type Store struct {
	// writer and reader are the single writer connection and the read-only
	// pool, or both the transaction for a Store made by InTx.
	writer dbtx
	reader dbtx
	hub    *notice.Hub

	writerDB, readerDB *sql.DB
	// tx is set on a Store made by InTx; notices wait in pending until commit.
	tx      *sql.Tx
	pending *[]store.CommandNotice

	closeOnce sync.Once
	closeErr  error
}

// dbtx is what *sql.DB and *sql.Tx share.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var errInTx = errors.New("not available inside InTx")

// InTx runs fn in one IMMEDIATE transaction on the writer connection; the
// Store fn gets reads and writes inside it, and tx is the *sql.Tx, for a
// job queue that shares the database file to enqueue in the same commit.
// Command notices are published after the commit.
func (s *Store) InTx(ctx context.Context, fn func(st store.Store, tx any) error) error {
	if s.tx != nil {
		return fn(s, s.tx)
	}
	var pending []store.CommandNotice
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		child := &Store{writer: tx, reader: tx, hub: s.hub, writerDB: s.writerDB, readerDB: s.readerDB, tx: tx, pending: &pending}
		return fn(child, tx)
	})
	if err != nil {
		return err
	}
	for _, n := range pending {
		s.hub.Publish(n)
	}
	return nil
}

// publish sends a notice now, or at commit inside InTx.
func (s *Store) publish(n store.CommandNotice) {
	if s.pending != nil {
		*s.pending = append(*s.pending, n)
		return
	}
	s.hub.Publish(n)
}

// Open opens (creating if needed) the database file at path and brings its
// schema up to date. path must be a file name: the store keeps a writer and
// a reader pool on it, which an in-memory database cannot share.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("opening sqlite store: %q is not a plain file path", path)
	}
	common := url.Values{}
	common.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	common.Set("_foreign_keys", "1")

	wv := cloneValues(common)
	wv.Set("_journal_mode", "WAL")
	wv.Set("_synchronous", "FULL")
	wv.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", path+"?"+wv.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
	}
	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("migrating sqlite store %s: %w", path, err)
	}

	rv := cloneValues(common)
	rv.Set("_query_only", "1")
	reader, err := sql.Open("sqlite", path+"?"+rv.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening sqlite store %s for reading: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("opening sqlite store %s for reading: %w", path, err)
	}
	return &Store{writer: writer, reader: reader, writerDB: writer, readerDB: reader, hub: notice.NewHub()}, nil
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own IMMEDIATE transaction.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := sqlq.LoadMigrations(migrationsFS, "migrations")
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := inTx(ctx, db, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, qCreateSchemaMigrations); err != nil {
				return fmt.Errorf("creating schema_migrations: %w", err)
			}
			var applied bool
			if err := tx.QueryRowContext(ctx, qHasSchemaMigration, m.Version).Scan(&applied); err != nil {
				return fmt.Errorf("reading schema_migrations: %w", err)
			}
			if applied {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, qInsertSchemaMigration, m.Version, m.Name); err != nil {
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

// inTx runs fn in a transaction on db and commits if fn returns nil. On a
// transaction already (a Store made by InTx) fn joins it.
func inTx(ctx context.Context, db dbtx, fn func(*sql.Tx) error) error {
	if tx, ok := db.(*sql.Tx); ok {
		return fn(tx)
	}
	tx, err := db.(*sql.DB).BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// Ping checks both connection pools answer.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.reader.QueryRowContext(ctx, qPing).Scan(&one); err != nil {
		return fmt.Errorf("pinging sqlite store: %w", err)
	}
	if err := s.writerDB.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging sqlite store writer: %w", err)
	}
	return nil
}

// Close ends every subscription and closes the database. Calling it again
// returns the first call's result.
func (s *Store) Close() error {
	if s.tx != nil {
		return fmt.Errorf("closing the store: %w", errInTx)
	}
	s.closeOnce.Do(func() {
		s.hub.Close()
		s.closeErr = errors.Join(s.readerDB.Close(), s.writerDB.Close())
	})
	return s.closeErr
}

// translate turns driver errors into the store's sentinels, keeping the
// original in the chain for its detail.
func translate(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			// A reference to a row outside the org (or to no row at all).
			return fmt.Errorf("%w: referenced row: %w", store.ErrNotFound, err)
		}
	}
	return err
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// Times are stored as microseconds since the Unix epoch, UTC; optional ones
// are NULL when zero or nil.

func micros(t time.Time) int64 { return t.UnixMicro() }

func optMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromOptMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

func ptrFromOptMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// queryList runs a query on the reader pool and scans every row with scan.
func queryList[T any](ctx context.Context, db dbtx, query string, scan func(rowScanner) (T, error), args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
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
func execOne(ctx context.Context, db dbtx, query string, args ...any) error {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// WriterDB is the store's single writer connection, for a job queue that
// shares the database file (River's SQLite driver): SQLite allows one
// writer, so sharing it avoids SQLITE_BUSY between the two.
func (s *Store) WriterDB() *sql.DB { return s.writerDB }
