package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed usage.sql
	usageSQL     string
	usageQueries = sqlq.MustParse(usageSQL)

	qAdvanceDeviceBatch  = usageQueries.MustGet("AdvanceDeviceBatch")
	qUpsertProviderUsage = usageQueries.MustGet("UpsertProviderUsage")
	qScanUserUsage       = usageQueries.MustGet("ScanUserUsage")
	qSummarizeUserUsage  = usageQueries.MustGet("SummarizeUserUsage")
	qListUsageDays       = usageQueries.MustGet("ListUsageDays")
	qGetUsageCursor      = usageQueries.MustGet("GetUsageCursor")
	qPutUsageCursor      = usageQueries.MustGet("PutUsageCursor")
	qDeleteUsageBefore   = usageQueries.MustGet("DeleteUsageBefore")
	qListUsageSources    = usageQueries.MustGet("ListUsageSources")
)

// usageColumns are the columns a device batch is copied into, in order.
var usageColumns = []string{
	"org_id", "user_id", "device_id", "source", "provider", "model", "domain",
	"remote_addr", "remote_port", "protocol", "started_at", "ended_at", "bytes_sent", "bytes_received",
	"input_tokens", "output_tokens", "requests", "process_name", "process_path", "pid", "uid",
	"api_key_id", "provider_user_id",
}

// Postgres refuses COPY FROM into a table under row-level security, so a
// batch is copied into a temporary staging table (per connection, emptied
// at commit) and moved with one INSERT ... SELECT, which the org policy
// checks. Both steps are set-based: the cost per row stays that of COPY.
const (
	createUsageStaging = `CREATE TEMP TABLE IF NOT EXISTS usage_events_staging (
    org_id text, user_id text, device_id text, source text, provider text, model text, domain text,
    remote_addr text, remote_port integer, protocol text, started_at timestamptz, ended_at timestamptz,
    bytes_sent bigint, bytes_received bigint, input_tokens bigint, output_tokens bigint, requests bigint,
    process_name text, process_path text, pid bigint, uid bigint, api_key_id text, provider_user_id text
) ON COMMIT DELETE ROWS`
	moveUsageStaging = `INSERT INTO usage_events (org_id, user_id, device_id, source, provider, model, domain,
    remote_addr, remote_port, protocol, started_at, ended_at, bytes_sent, bytes_received,
    input_tokens, output_tokens, requests, process_name, process_path, pid, uid,
    api_key_id, provider_user_id)
SELECT org_id, user_id, device_id, source, provider, model, domain,
    remote_addr, remote_port, protocol, started_at, ended_at, bytes_sent, bytes_received,
    input_tokens, output_tokens, requests, process_name, process_path, pid, uid,
    api_key_id, provider_user_id
FROM usage_events_staging`
)

// AppendDeviceUsage stores the batch once: the device's batch row advances
// and the events are copied in, in one transaction.
func (s *Store) AppendDeviceUsage(ctx context.Context, p store.AppendDeviceUsageParams) (bool, error) {
	if p.BatchSeq > 1<<63-1 {
		return false, fmt.Errorf("appending usage of device %s: batch sequence %d out of range", p.DeviceID, p.BatchSeq)
	}
	applied := false
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var seq int64
		err := tx.QueryRow(ctx, qAdvanceDeviceBatch, p.OrgID, p.DeviceID, int64(p.BatchSeq), ts(p.At)).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // seen before
		}
		if err != nil {
			return translate(err)
		}
		applied = true
		if len(p.Events) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, createUsageStaging); err != nil {
			return fmt.Errorf("creating the staging table: %w", err)
		}
		row := make([]any, len(usageColumns))
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(p.Events) {
				return nil, nil
			}
			e := &p.Events[i]
			i++
			user := e.UserID
			if user == "" {
				user = p.UserID
			}
			row[0], row[1], row[2], row[3] = p.OrgID, optString(user), p.DeviceID, store.UsageSourceDevice
			row[4], row[5], row[6], row[7] = e.Provider, e.Model, e.Domain, e.RemoteAddr
			row[8], row[9], row[10], row[11] = int32(e.RemotePort), e.Protocol, ts(e.StartedAt), ts(e.EndedAt)
			row[12], row[13], row[14], row[15], row[16] = e.BytesSent, e.BytesReceived, e.InputTokens, e.OutputTokens, e.Requests
			row[17], row[18], row[19], row[20] = e.ProcessName, e.ProcessPath, e.PID, e.UID
			row[21], row[22] = e.APIKeyID, e.ProviderUserID
			return row, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"usage_events_staging"}, usageColumns, src); err != nil {
			return fmt.Errorf("copying %d events: %w", len(p.Events), err)
		}
		if _, err := tx.Exec(ctx, moveUsageStaging); err != nil {
			return fmt.Errorf("moving %d events: %w", len(p.Events), translate(err))
		}
		// ON COMMIT DELETE ROWS empties the staging table at commit; inside
		// InTx the commit may be far off, so empty it now.
		if s.tx != nil {
			if _, err := tx.Exec(ctx, "TRUNCATE usage_events_staging"); err != nil {
				return fmt.Errorf("emptying the staging table: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("appending usage batch %d of device %s: %w", p.BatchSeq, p.DeviceID, err)
	}
	return applied, nil
}

// UpsertProviderUsage inserts or replaces each row by (org, provider, key),
// all in one transaction, sent as one pipelined batch.
func (s *Store) UpsertProviderUsage(ctx context.Context, p store.UpsertProviderUsageParams) error {
	for i, e := range p.Events {
		if e.Key == "" {
			return fmt.Errorf("upserting %s usage: event %d has no key", p.Provider, i)
		}
	}
	if len(p.Events) == 0 {
		return nil
	}
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range p.Events {
			b.Queue(qUpsertProviderUsage, p.OrgID, optString(e.UserID), optString(e.DeviceID), p.Provider,
				e.Model, e.Domain, e.RemoteAddr, int32(e.RemotePort), e.Protocol, ts(e.StartedAt), ts(e.EndedAt),
				e.BytesSent, e.BytesReceived, e.InputTokens, e.OutputTokens, e.Requests,
				e.ProcessName, e.ProcessPath, e.PID, e.UID, e.APIKeyID, e.ProviderUserID, e.Key)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("upserting %d %s usage rows: %w", len(p.Events), p.Provider, translate(err))
	}
	return nil
}

// ScanUserUsage streams the user's events from one query, in one
// transaction, calling fn per row.
func (s *Store) ScanUserUsage(ctx context.Context, p store.ScanUserUsageParams, fn func(store.UsageEvent) error) error {
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, qScanUserUsage, p.OrgID, p.UserID, ts(p.From), ts(p.To))
		if err != nil {
			return err
		}
		defer rows.Close()
		e := store.UsageEvent{OrgID: p.OrgID}
		var (
			user, device, key *string
			port              int32
			started, ended    time.Time
		)
		for rows.Next() {
			err := rows.Scan(&user, &device, &e.Source, &e.Provider, &e.Model, &e.Domain, &e.RemoteAddr, &port,
				&e.Protocol, &started, &ended, &e.BytesSent, &e.BytesReceived, &e.InputTokens, &e.OutputTokens,
				&e.Requests, &e.ProcessName, &e.ProcessPath, &e.PID, &e.UID, &e.APIKeyID, &e.ProviderUserID, &key)
			if err != nil {
				return err
			}
			e.UserID, e.DeviceID, e.Key = deref(user), deref(device), deref(key)
			e.RemotePort = int(port)
			e.StartedAt, e.EndedAt = started.UTC(), ended.UTC()
			if err := fn(e); err != nil {
				return errStop{err}
			}
		}
		return rows.Err()
	})
	if se, ok := err.(errStop); ok {
		return se.err
	}
	if err != nil {
		return fmt.Errorf("scanning usage of user %s: %w", p.UserID, translate(err))
	}
	return nil
}

// errStop carries fn's own error out of a scan unwrapped.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SummarizeUserUsage totals the user's events by UTC day, source, provider
// and model in SQL.
func (s *Store) SummarizeUserUsage(ctx context.Context, p store.SummarizeUserUsageParams) ([]store.UsageSummary, error) {
	sums, err := orgList(ctx, s, p.OrgID, func(r rowScanner) (store.UsageSummary, error) {
		var u store.UsageSummary
		var day time.Time
		err := r.Scan(&day, &u.Source, &u.Provider, &u.Model, &u.Events, &u.Requests, &u.InputTokens,
			&u.OutputTokens, &u.BytesSent, &u.BytesReceived)
		u.Day = utcMidnight(day)
		return u, err
	}, qSummarizeUserUsage, p.OrgID, p.UserID, ts(p.From), ts(p.To))
	if err != nil {
		return nil, fmt.Errorf("summarizing usage of user %s: %w", p.UserID, translate(err))
	}
	return sums, nil
}

// ListUsageDays totals every attributed user's events by UTC day in SQL.
func (s *Store) ListUsageDays(ctx context.Context, p store.ListUsageDaysParams) ([]store.UsageDay, error) {
	days, err := orgList(ctx, s, p.OrgID, func(r rowScanner) (store.UsageDay, error) {
		var d store.UsageDay
		var day time.Time
		err := r.Scan(&d.UserID, &day, &d.Events, &d.Tokens, &d.Models, &d.Providers,
			&d.MinBytesSent, &d.MaxBytesSent, &d.MeanBytesSent)
		d.Day = utcMidnight(day)
		return d, err
	}, qListUsageDays, p.OrgID, ts(p.From), ts(p.To))
	if err != nil {
		return nil, fmt.Errorf("listing usage days of org %s: %w", p.OrgID, translate(err))
	}
	return days, nil
}

// utcMidnight reads a date_trunc'd timestamp (without zone) as UTC.
func utcMidnight(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// GetUsageCursor returns how far the org's usage from provider is ingested.
func (s *Store) GetUsageCursor(ctx context.Context, orgID, provider string) (store.UsageCursor, error) {
	c, err := orgRow(ctx, s, orgID, scanUsageCursor, qGetUsageCursor, orgID, provider)
	if err != nil {
		return store.UsageCursor{}, fmt.Errorf("getting %s usage cursor: %w", provider, translate(err))
	}
	return c, nil
}

// PutUsageCursor creates or replaces the org's cursor for provider.
func (s *Store) PutUsageCursor(ctx context.Context, p store.PutUsageCursorParams) (store.UsageCursor, error) {
	c, err := orgRow(ctx, s, p.OrgID, scanUsageCursor, qPutUsageCursor, p.OrgID, p.Provider, ts(p.Through), ts(p.At))
	if err != nil {
		return store.UsageCursor{}, fmt.Errorf("putting %s usage cursor: %w", p.Provider, translate(err))
	}
	return c, nil
}

func scanUsageCursor(r rowScanner) (store.UsageCursor, error) {
	var c store.UsageCursor
	var through, updated time.Time
	if err := r.Scan(&c.OrgID, &c.Provider, &through, &updated); err != nil {
		return store.UsageCursor{}, err
	}
	c.Through, c.UpdatedAt = fromTS(through), fromTS(updated)
	return c, nil
}

// DeleteUsageBefore removes up to limit events of any org older than the
// cutoff, through the delete_usage_before definer function.
func (s *Store) DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 || limit > 1<<31-1 {
		return 0, fmt.Errorf("deleting usage before %s: limit %d out of range", before.Format(time.RFC3339), limit)
	}
	var n int64
	if err := s.q.QueryRow(ctx, qDeleteUsageBefore, ts(before), int32(limit)).Scan(&n); err != nil {
		return 0, fmt.Errorf("deleting usage before %s: %w", before.Format(time.RFC3339), translate(err))
	}
	return n, nil
}

// ListUsageSources lists every org's connected providers, through the
// usage_sources definer function.
func (s *Store) ListUsageSources(ctx context.Context) ([]store.UsageSource, error) {
	srcs, err := queryList(ctx, s.q, qListUsageSources, func(r rowScanner) (store.UsageSource, error) {
		var u store.UsageSource
		err := r.Scan(&u.OrgID, &u.Provider)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing usage sources: %w", translate(err))
	}
	return srcs, nil
}
