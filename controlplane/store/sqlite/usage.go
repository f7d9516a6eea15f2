package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed usage.sql
	usageSQL     string
	usageQueries = sqlq.MustParse(usageSQL)

	qAdvanceDeviceBatch  = usageQueries.MustGet("AdvanceDeviceBatch")
	qInsertDeviceUsage   = usageQueries.MustGet("InsertDeviceUsage")
	qUpsertProviderUsage = usageQueries.MustGet("UpsertProviderUsage")
	qScanUserUsage       = usageQueries.MustGet("ScanUserUsage")
	qSummarizeUserUsage  = usageQueries.MustGet("SummarizeUserUsage")
	qListUsageDays       = usageQueries.MustGet("ListUsageDays")
	qGetUsageCursor      = usageQueries.MustGet("GetUsageCursor")
	qPutUsageCursor      = usageQueries.MustGet("PutUsageCursor")
	qDeleteUsageBefore   = usageQueries.MustGet("DeleteUsageBefore")
	qListUsageSources    = usageQueries.MustGet("ListUsageSources")
)

// AppendDeviceUsage advances the device's batch sequence and inserts the
// events with one prepared statement, in one transaction.
func (s *Store) AppendDeviceUsage(ctx context.Context, p store.AppendDeviceUsageParams) (bool, error) {
	if p.BatchSeq > 1<<63-1 {
		return false, fmt.Errorf("appending usage of device %s: batch sequence %d out of range", p.DeviceID, p.BatchSeq)
	}
	applied := false
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var seq int64
		err := tx.QueryRowContext(ctx, qAdvanceDeviceBatch, p.OrgID, p.DeviceID, int64(p.BatchSeq), micros(p.At)).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // seen before
		}
		if err != nil {
			return translate(err)
		}
		applied = true
		if len(p.Events) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, qInsertDeviceUsage)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range p.Events {
			e := &p.Events[i]
			user := e.UserID
			if user == "" {
				user = p.UserID
			}
			_, err := stmt.ExecContext(ctx, p.OrgID, optString(user), p.DeviceID, e.Provider, e.Model, e.Domain,
				e.RemoteAddr, e.RemotePort, e.Protocol, micros(e.StartedAt), micros(e.EndedAt),
				e.BytesSent, e.BytesReceived, e.InputTokens, e.OutputTokens, e.Requests,
				e.ProcessName, e.ProcessPath, e.PID, e.UID, e.APIKeyID, e.ProviderUserID)
			if err != nil {
				return fmt.Errorf("event %d: %w", i, translate(err))
			}
		}
		return nil
	})
	if err != nil {
		// A failed transaction stores nothing, the batch row included.
		return false, fmt.Errorf("appending usage batch %d of device %s: %w", p.BatchSeq, p.DeviceID, err)
	}
	return applied, nil
}

// UpsertProviderUsage inserts or replaces each row by (org, provider, key)
// in one transaction.
func (s *Store) UpsertProviderUsage(ctx context.Context, p store.UpsertProviderUsageParams) error {
	for i, e := range p.Events {
		if e.Key == "" {
			return fmt.Errorf("upserting %s usage: event %d has no key", p.Provider, i)
		}
	}
	if len(p.Events) == 0 {
		return nil
	}
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, qUpsertProviderUsage)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range p.Events {
			_, err := stmt.ExecContext(ctx, p.OrgID, optString(e.UserID), optString(e.DeviceID), p.Provider,
				e.Model, e.Domain, e.RemoteAddr, e.RemotePort, e.Protocol, micros(e.StartedAt), micros(e.EndedAt),
				e.BytesSent, e.BytesReceived, e.InputTokens, e.OutputTokens, e.Requests,
				e.ProcessName, e.ProcessPath, e.PID, e.UID, e.APIKeyID, e.ProviderUserID, e.Key)
			if err != nil {
				return translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upserting %d %s usage rows: %w", len(p.Events), p.Provider, err)
	}
	return nil
}

// ScanUserUsage streams the user's events from one query on a reader.
func (s *Store) ScanUserUsage(ctx context.Context, p store.ScanUserUsageParams, fn func(store.UsageEvent) error) error {
	rows, err := s.reader.QueryContext(ctx, qScanUserUsage, p.OrgID, p.UserID, micros(p.From), micros(p.To))
	if err != nil {
		return fmt.Errorf("scanning usage of user %s: %w", p.UserID, translate(err))
	}
	defer rows.Close()
	e := store.UsageEvent{OrgID: p.OrgID}
	var (
		user, device, key sql.NullString
		started, ended    int64
	)
	for rows.Next() {
		err := rows.Scan(&user, &device, &e.Source, &e.Provider, &e.Model, &e.Domain, &e.RemoteAddr, &e.RemotePort,
			&e.Protocol, &started, &ended, &e.BytesSent, &e.BytesReceived, &e.InputTokens, &e.OutputTokens,
			&e.Requests, &e.ProcessName, &e.ProcessPath, &e.PID, &e.UID, &e.APIKeyID, &e.ProviderUserID, &key)
		if err != nil {
			return fmt.Errorf("scanning usage of user %s: %w", p.UserID, err)
		}
		e.UserID, e.DeviceID, e.Key = user.String, device.String, key.String
		e.StartedAt, e.EndedAt = fromMicros(started), fromMicros(ended)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scanning usage of user %s: %w", p.UserID, err)
	}
	return nil
}

// SummarizeUserUsage totals the user's events by UTC day, source, provider
// and model in SQL.
func (s *Store) SummarizeUserUsage(ctx context.Context, p store.SummarizeUserUsageParams) ([]store.UsageSummary, error) {
	sums, err := queryList(ctx, s.reader, qSummarizeUserUsage, func(r rowScanner) (store.UsageSummary, error) {
		var u store.UsageSummary
		var day int64
		err := r.Scan(&day, &u.Source, &u.Provider, &u.Model, &u.Events, &u.Requests, &u.InputTokens,
			&u.OutputTokens, &u.BytesSent, &u.BytesReceived)
		u.Day = fromMicros(day)
		return u, err
	}, p.OrgID, p.UserID, micros(p.From), micros(p.To))
	if err != nil {
		return nil, fmt.Errorf("summarizing usage of user %s: %w", p.UserID, translate(err))
	}
	return sums, nil
}

// ListUsageDays totals every attributed user's events by UTC day in SQL.
func (s *Store) ListUsageDays(ctx context.Context, p store.ListUsageDaysParams) ([]store.UsageDay, error) {
	days, err := queryList(ctx, s.reader, qListUsageDays, func(r rowScanner) (store.UsageDay, error) {
		var (
			d                 store.UsageDay
			day               int64
			models, providers string
		)
		err := r.Scan(&d.UserID, &day, &d.Events, &d.Tokens, &models, &providers,
			&d.MinBytesSent, &d.MaxBytesSent, &d.MeanBytesSent)
		if err != nil {
			return d, err
		}
		d.Day = fromMicros(day)
		if d.Models, err = sortedJSONStrings(models); err != nil {
			return d, err
		}
		d.Providers, err = sortedJSONStrings(providers)
		return d, err
	}, p.OrgID, micros(p.From), micros(p.To))
	if err != nil {
		return nil, fmt.Errorf("listing usage days of org %s: %w", p.OrgID, translate(err))
	}
	return days, nil
}

func sortedJSONStrings(s string) ([]string, error) {
	out := []string{}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decoding %q: %w", s, err)
	}
	slices.Sort(out)
	return out, nil
}

// GetUsageCursor returns how far the org's usage from provider is ingested.
func (s *Store) GetUsageCursor(ctx context.Context, orgID, provider string) (store.UsageCursor, error) {
	c, err := scanUsageCursor(s.reader.QueryRowContext(ctx, qGetUsageCursor, orgID, provider))
	if err != nil {
		return store.UsageCursor{}, fmt.Errorf("getting %s usage cursor: %w", provider, translate(err))
	}
	return c, nil
}

// PutUsageCursor creates or replaces the org's cursor for provider.
func (s *Store) PutUsageCursor(ctx context.Context, p store.PutUsageCursorParams) (store.UsageCursor, error) {
	c, err := scanUsageCursor(s.writer.QueryRowContext(ctx, qPutUsageCursor, p.OrgID, p.Provider, micros(p.Through), micros(p.At)))
	if err != nil {
		return store.UsageCursor{}, fmt.Errorf("putting %s usage cursor: %w", p.Provider, translate(err))
	}
	return c, nil
}

func scanUsageCursor(r rowScanner) (store.UsageCursor, error) {
	var c store.UsageCursor
	var through, updated int64
	if err := r.Scan(&c.OrgID, &c.Provider, &through, &updated); err != nil {
		return store.UsageCursor{}, err
	}
	c.Through, c.UpdatedAt = fromMicros(through), fromMicros(updated)
	return c, nil
}

// DeleteUsageBefore removes up to limit events of any org older than the
// cutoff.
func (s *Store) DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 || limit > 1<<31-1 {
		return 0, fmt.Errorf("deleting usage before %s: limit %d out of range", before.Format(time.RFC3339), limit)
	}
	res, err := s.writer.ExecContext(ctx, qDeleteUsageBefore, micros(before), limit)
	if err != nil {
		return 0, fmt.Errorf("deleting usage before %s: %w", before.Format(time.RFC3339), translate(err))
	}
	return res.RowsAffected()
}

// ListUsageSources lists every org's connected providers.
func (s *Store) ListUsageSources(ctx context.Context) ([]store.UsageSource, error) {
	srcs, err := queryList(ctx, s.reader, qListUsageSources, func(r rowScanner) (store.UsageSource, error) {
		var u store.UsageSource
		err := r.Scan(&u.OrgID, &u.Provider)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing usage sources: %w", translate(err))
	}
	return srcs, nil
}
