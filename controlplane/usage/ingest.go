package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
)

// IngestConfig wires an Ingester.
type IngestConfig struct {
	Store store.Store
	// Open builds the usage reader of an org's stored provider connection
	// (unsealing its admin key).
	Open   func(ctx context.Context, c store.ProviderConnection) (providers.OrgUsageReader, error)
	Clock  clock.Clock
	Logger *slog.Logger
	// Interval is how often every connected provider is read (default 1h).
	Interval time.Duration
	// Overlap is how many hour buckets before the cursor are read again, so
	// that late-settling buckets are replaced with their final numbers
	// (default 3).
	Overlap int
	// FirstLookback is how far back the first ingestion of a connection
	// reads (default 7 days).
	FirstLookback time.Duration
	// MaxWindow bounds one ingestion's read; the cursor carries on from
	// there on the next run (default 7 days).
	MaxWindow time.Duration
	// Retention is how long usage events are kept (default 400 days).
	Retention time.Duration
	// RetentionInterval is how often old events are removed (default 6h).
	RetentionInterval time.Duration
	// Attempts is how many times a rate-limited or failing provider read is
	// tried within one run, waiting its Retry-After or a backoff between
	// tries (default 4).
	Attempts int
	// RetryWait is the first backoff between attempts, doubled each time
	// (default 5s; a longer Retry-After wins, up to MaxRetryWait).
	RetryWait, MaxRetryWait time.Duration
	// Sleep waits d or until ctx ends; tests replace it (default a timer).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Defaults of IngestConfig.
const (
	DefaultInterval          = time.Hour
	DefaultOverlap           = 3
	DefaultFirstLookback     = 7 * 24 * time.Hour
	DefaultMaxWindow         = 7 * 24 * time.Hour
	DefaultRetention         = 400 * 24 * time.Hour
	DefaultRetentionInterval = 6 * time.Hour
	// MinRetention is the shortest retention accepted: the detector reads
	// a 90-day baseline before a 14-day window.
	MinRetention = 104 * 24 * time.Hour
)

// retentionBatch is how many events one retention statement removes, so
// that no single transaction holds months of rows.
const retentionBatch = 10_000

// upsertBatch is how many provider rows go in one transaction.
const upsertBatch = 1000

// Ingester reads the providers' usage reports into the store and applies
// the retention. Every run is idempotent: rows replace each other by their
// bucket identity and the cursor only moves after the rows are stored, so
// a crash, a retry or two replicas running at once double-count nothing.
type Ingester struct {
	cfg IngestConfig
	log *slog.Logger
}

// NewIngester checks cfg and fills in its defaults.
func NewIngester(cfg IngestConfig) (*Ingester, error) {
	if cfg.Store == nil || cfg.Open == nil {
		return nil, errors.New("usage: ingester needs a store and an opener")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.Interval, DefaultInterval)
	def(&cfg.FirstLookback, DefaultFirstLookback)
	def(&cfg.MaxWindow, DefaultMaxWindow)
	def(&cfg.Retention, DefaultRetention)
	def(&cfg.RetentionInterval, DefaultRetentionInterval)
	def(&cfg.RetryWait, 5*time.Second)
	def(&cfg.MaxRetryWait, 5*time.Minute)
	if cfg.Overlap == 0 {
		cfg.Overlap = DefaultOverlap
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 4
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	switch {
	case cfg.Interval < time.Minute:
		return nil, fmt.Errorf("usage: ingestion interval %s is under a minute", cfg.Interval)
	case cfg.Overlap < 0 || cfg.Attempts < 1:
		return nil, fmt.Errorf("usage: overlap %d and attempts %d must be ≥ 0 and ≥ 1", cfg.Overlap, cfg.Attempts)
	case cfg.MaxWindow < time.Hour || cfg.FirstLookback < time.Hour:
		return nil, errors.New("usage: max window and first lookback must be at least an hour")
	case cfg.Retention < MinRetention:
		return nil, fmt.Errorf("usage: retention %s is shorter than the %s the detector reads", cfg.Retention, MinRetention)
	}
	return &Ingester{cfg: cfg, log: cfg.Logger.With("component", "usage")}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IngestResult says what one ingestion of one connection did.
type IngestResult struct {
	OrgID, Provider string
	// From and To are the hours read.
	From, To time.Time
	// Rows were stored (new or replacing); Unattributed of them belong to no
	// store user.
	Rows, Unattributed int
	// Attempts is how many reads it took.
	Attempts int
}

// IngestAll ingests every connected provider of every org, one after the
// other. A connection that fails is logged and left for the next run (its
// cursor did not move, so nothing is skipped); the others go on. The
// error joins the failures.
func (in *Ingester) IngestAll(ctx context.Context) error {
	srcs, err := in.cfg.Store.ListUsageSources(ctx)
	if err != nil {
		return fmt.Errorf("usage: listing sources: %w", err)
	}
	var errs []error
	for _, src := range srcs {
		res, err := in.IngestSource(ctx, src)
		if err != nil {
			in.log.Warn("usage ingestion failed", "org", src.OrgID, "provider", src.Provider, "error", err)
			errs = append(errs, err)
			continue
		}
		in.log.Info("usage ingested", "org", src.OrgID, "provider", src.Provider, "from", res.From, "to", res.To,
			"rows", res.Rows, "unattributed", res.Unattributed)
	}
	return errors.Join(errs...)
}

// IngestSource reads one org's usage at one provider from its cursor
// (less the overlap) up to now, stores it and moves the cursor.
func (in *Ingester) IngestSource(ctx context.Context, src store.UsageSource) (IngestResult, error) {
	res := IngestResult{OrgID: src.OrgID, Provider: src.Provider}
	now := in.cfg.Clock.Now().UTC()
	conn, err := in.cfg.Store.GetProviderConnection(ctx, src.OrgID, src.Provider)
	if err != nil {
		return res, fmt.Errorf("usage: %s connection of org %s: %w", src.Provider, src.OrgID, err)
	}
	reader, err := in.cfg.Open(ctx, conn)
	if err != nil {
		return res, fmt.Errorf("usage: opening %s of org %s: %w", src.Provider, src.OrgID, err)
	}
	from := now.Add(-in.cfg.FirstLookback)
	cur, err := in.cfg.Store.GetUsageCursor(ctx, src.OrgID, src.Provider)
	switch {
	case err == nil:
		from = cur.Through.Add(-time.Duration(in.cfg.Overlap) * time.Hour)
	case !errors.Is(err, store.ErrNotFound):
		return res, fmt.Errorf("usage: reading cursor: %w", err)
	}
	if oldest := now.Add(-in.cfg.Retention); from.Before(oldest) {
		from = oldest
	}
	to := from.Add(in.cfg.MaxWindow)
	if to.After(now) {
		to = now
	}
	if !to.After(from) {
		return res, nil // the cursor is ahead of the clock: nothing to read yet
	}
	res.From, res.To = providers.UsageHours(from, to)

	var buckets []providers.OrgUsageBucket
	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		buckets, err = reader.ReadOrgUsage(ctx, res.From, res.To)
		if err == nil {
			break
		}
		if attempt == in.cfg.Attempts || !errors.Is(err, providers.ErrRetryable) {
			return res, fmt.Errorf("usage: reading %s usage of org %s: %w", src.Provider, src.OrgID, err)
		}
		wait := in.cfg.RetryWait << (attempt - 1)
		var pe *providers.Error
		if errors.As(err, &pe) && pe.RetryAfter > wait {
			wait = pe.RetryAfter
		}
		if err := in.cfg.Sleep(ctx, min(wait, in.cfg.MaxRetryWait)); err != nil {
			return res, err
		}
	}

	users := map[string]string{} // email → store user id ("" when none)
	rows := make([]store.UsageEvent, 0, len(buckets))
	for _, b := range buckets {
		user, err := in.userByEmail(ctx, src.OrgID, b.Email, users)
		if err != nil {
			return res, err
		}
		if user == "" {
			res.Unattributed++
		}
		var reqs int64
		if b.Requests != nil {
			reqs = *b.Requests
		}
		rows = append(rows, store.UsageEvent{
			UserID: user, Source: store.UsageSourceProvider, Provider: src.Provider, Model: b.Model,
			StartedAt: b.Start, EndedAt: b.End, InputTokens: b.InputTokens, OutputTokens: b.OutputTokens,
			Requests: reqs, APIKeyID: b.APIKeyID, ProviderUserID: b.UserID, Key: bucketKey(b),
		})
	}
	for i := 0; i < len(rows); i += upsertBatch {
		chunk := rows[i:min(i+upsertBatch, len(rows))]
		if err := in.cfg.Store.UpsertProviderUsage(ctx, store.UpsertProviderUsageParams{OrgID: src.OrgID, Provider: src.Provider, Events: chunk}); err != nil {
			return res, fmt.Errorf("usage: storing %s usage of org %s: %w", src.Provider, src.OrgID, err)
		}
	}
	res.Rows = len(rows)
	// The cursor never moves back: a run that read less (an old
	// FirstLookback) leaves a later cursor alone.
	through := res.To
	if cur.Through.After(through) {
		through = cur.Through
	}
	if _, err := in.cfg.Store.PutUsageCursor(ctx, store.PutUsageCursorParams{OrgID: src.OrgID, Provider: src.Provider, Through: through, At: now}); err != nil {
		return res, fmt.Errorf("usage: moving the %s cursor of org %s: %w", src.Provider, src.OrgID, err)
	}
	return res, nil
}

// userByEmail finds the store user with the provider member's email, once
// per run; "" when there is none (the row is kept, unattributed).
func (in *Ingester) userByEmail(ctx context.Context, orgID, email string, cache map[string]string) (string, error) {
	if email == "" {
		return "", nil
	}
	if id, ok := cache[email]; ok {
		return id, nil
	}
	u, err := in.cfg.Store.GetUserByEmail(ctx, orgID, email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cache[email] = ""
		return "", nil
	case err != nil:
		return "", fmt.Errorf("usage: finding user %s: %w", email, err)
	}
	cache[email] = u.ID
	return u.ID, nil
}

// bucketKey is a bucket's identity at its provider: the hour and every
// dimension the report was grouped by. A re-read bucket has the same key,
// so its row replaces the earlier one.
func bucketKey(b providers.OrgUsageBucket) string {
	return strings.Join([]string{strconv.FormatInt(b.Start.Unix(), 10), strconv.FormatInt(int64(b.End.Sub(b.Start)/time.Second), 10),
		b.UserID, b.APIKeyID, b.ProjectOrWorkspace, b.Model}, "|")
}

// ApplyRetention removes every org's events older than the retention, in
// batches, and says how many it removed.
func (in *Ingester) ApplyRetention(ctx context.Context) (int64, error) {
	cutoff := in.cfg.Clock.Now().Add(-in.cfg.Retention)
	var total int64
	for {
		n, err := in.cfg.Store.DeleteUsageBefore(ctx, cutoff, retentionBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("usage: applying retention: %w", err)
		}
		if n < retentionBatch {
			return total, nil
		}
	}
}
