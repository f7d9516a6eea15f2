// Package pipeline runs a lockout's steps as durable jobs (River, on the
// store's own database): revoke the user at each connected LLM provider,
// then lock their devices. Each step's state changes in the same
// transaction that enqueues the next, so a crash at any point resumes
// where it stopped and no step's effect is lost or doubled.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
)

// The steps of a lockout, in order. Capture and revoke run per provider,
// capture first; their step states are derived from the per-provider
// records.
const (
	StepCapture = "capture"
	StepRevoke  = "revoke"
	StepLock    = "lock"
)

// Steps lists the pipeline's steps in order; the last two run when the
// pipeline has its Evidence configured.
var Steps = []string{StepCapture, StepRevoke, StepLock, StepSnapshot, StepUpload}

// Revocations and device locks have queues (and workers) of their own, so
// a lock never waits behind provider calls queued before it.
// Snapshots (CPU-heavy rendering) and uploads have a small queue of
// their own too.
const (
	queue         = "lockout"
	lockQueue     = "lockout_lock"
	evidenceQueue = "lockout_evidence"
	// evidenceWorkers bounds concurrent renderings.
	evidenceWorkers = 2
)

// Connector is what the pipeline needs of a provider connector.
type Connector interface {
	Name() string
	RevokeUser(ctx context.Context, email string) (providers.Revocation, error)
}

// Config wires a Pipeline.
type Config struct {
	Store  store.Store
	Issuer *fleet.Issuer
	// Connect builds the connector for an org's stored provider connection.
	Connect func(ctx context.Context, c store.ProviderConnection) (Connector, error)
	Clock   clock.Clock
	Logger  *slog.Logger
	// Registerer receives the pipeline's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Workers is how many jobs run at once (default 20).
	Workers int
	// RevokeAttempts is the retry budget of one provider's revocation
	// (default 8); after it the revocation is marked unconfirmed.
	RevokeAttempts int
	// RetryBase is the first retry's delay, doubled per attempt with full
	// jitter up to RetryMax (defaults 2s and 5m). A provider's Retry-After
	// is honoured when longer.
	RetryBase, RetryMax time.Duration
	// LockGrace is the longest the device lock waits for the providers'
	// first revocation attempts (default 1s): a slow provider never delays
	// it more than that, a fast one not at all.
	LockGrace time.Duration
	// JobTimeout bounds one attempt of one job (default 60s).
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before it is taken to
	// have died with its process (a crash) and is run again (default 90s;
	// at least JobTimeout, so a slow attempt is never run twice at once).
	RescueAfter time.Duration
	// Evidence configures steps 3 and 4 (the audit snapshot and its
	// write-once upload). The server always sets it; without it a
	// lockout's pipeline ends with the device lock.
	Evidence *Evidence
	// Jobs adds other packages' jobs to the pipeline's job client (usage
	// ingestion): one client, whose elected leader alone enqueues periodic
	// jobs, schedules them all.
	Jobs []Jobs
	// PollInterval is how often idle workers look for jobs when no
	// notification arrives (default 200ms; SQLite has no notifications
	// between processes, so this bounds how soon a job starts there).
	PollInterval time.Duration
}

// Jobs are another package's queues, workers and periodic jobs.
type Jobs struct {
	Queues   map[string]river.QueueConfig
	Register func(*river.Workers) error
	Periodic []*river.PeriodicJob
}

// Pipeline runs lockout pipelines.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// Bound to the backend's transaction type by New.
	insertTx    func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	retryTx     func(ctx context.Context, tx any, id int64) error
	start, stop func(ctx context.Context) error
}

// New builds a Pipeline on a River driver for the store's database. The
// River schema must be migrated (Migrate) first.
func New[TTx any](driver riverdriver.Driver[TTx], cfg Config) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Issuer == nil || cfg.Connect == nil {
		return nil, errors.New("pipeline: store, issuer and connect are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Workers = orDefault(cfg.Workers, 20)
	cfg.RevokeAttempts = orDefault(cfg.RevokeAttempts, 8)
	cfg.RetryBase = orDefault(cfg.RetryBase, 2*time.Second)
	cfg.RetryMax = orDefault(cfg.RetryMax, 5*time.Minute)
	cfg.LockGrace = orDefault(cfg.LockGrace, time.Second)
	cfg.PollInterval = orDefault(cfg.PollInterval, 200*time.Millisecond)
	cfg.JobTimeout = orDefault(cfg.JobTimeout, 60*time.Second)
	cfg.RescueAfter = orDefault(cfg.RescueAfter, 90*time.Second)
	if cfg.RescueAfter <= cfg.JobTimeout {
		return nil, fmt.Errorf("pipeline: rescue-after (%s) must be longer than the job timeout (%s)", cfg.RescueAfter, cfg.JobTimeout)
	}
	if cfg.Evidence != nil {
		if err := cfg.Evidence.validate(); err != nil {
			return nil, err
		}
		ev := *cfg.Evidence
		ev.withDefaults()
		cfg.Evidence = &ev
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger.With("component", "pipeline"), metrics: newMetrics(cfg.Registerer)}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &revokeWorker{p: p}); err != nil {
		return nil, err
	}
	if err := river.AddWorkerSafely(workers, &lockWorker{p: p}); err != nil {
		return nil, err
	}
	queues := map[string]river.QueueConfig{queue: {MaxWorkers: cfg.Workers}, lockQueue: {MaxWorkers: cfg.Workers}}
	if cfg.Evidence != nil {
		if err := river.AddWorkerSafely(workers, &snapshotWorker{p: p}); err != nil {
			return nil, err
		}
		if err := river.AddWorkerSafely(workers, &uploadWorker{p: p}); err != nil {
			return nil, err
		}
		queues[evidenceQueue] = river.QueueConfig{MaxWorkers: evidenceWorkers}
	}
	var periodic []*river.PeriodicJob
	for _, j := range cfg.Jobs {
		if err := j.Register(workers); err != nil {
			return nil, err
		}
		for name, q := range j.Queues {
			if _, taken := queues[name]; taken {
				return nil, fmt.Errorf("pipeline: queue %q is taken", name)
			}
			queues[name] = q
		}
		periodic = append(periodic, j.Periodic...)
	}
	client, err := river.NewClient(driver, &river.Config{
		Queues:               queues,
		PeriodicJobs:         periodic,
		Workers:              workers,
		Logger:               p.log,
		FetchPollInterval:    cfg.PollInterval,
		FetchCooldown:        10 * time.Millisecond,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		// River's reindexer needs to own its tables; on Postgres the
		// application runs as a role that owns none (Row-Level Security).
		// Its indexes are small and churn-resistant; reindex from
		// maintenance, as the owner, if ever needed.
		ReindexerSchedule: river.NeverSchedule(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating job client: %w", err)
	}
	p.insertTx = func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
		t, ok := tx.(TTx)
		if !ok {
			return nil, fmt.Errorf("pipeline: transaction is %T, not the job queue's", tx)
		}
		return client.InsertTx(ctx, t, args, opts)
	}
	p.retryTx = func(ctx context.Context, tx any, id int64) error {
		t, ok := tx.(TTx)
		if !ok {
			return fmt.Errorf("pipeline: transaction is %T, not the job queue's", tx)
		}
		_, err := client.JobRetryTx(ctx, t, id)
		return err
	}
	p.start, p.stop = client.Start, client.Stop
	return p, nil
}

// InsertTx enqueues a job in tx (the store's transaction handle from
// store.InTx), for the packages whose jobs run on this client (Config.Jobs).
func (p *Pipeline) InsertTx(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	return p.insertTx(ctx, tx, args, opts)
}

// Start works jobs until Stop.
func (p *Pipeline) Start(ctx context.Context) error { return p.start(ctx) }

// Stop waits for running jobs to finish (or ctx to end).
func (p *Pipeline) Stop(ctx context.Context) error { return p.stop(ctx) }

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// RevokeArgs is one provider's revocation for one lockout.
type RevokeArgs struct {
	OrgID     string `json:"org_id"`
	LockoutID string `json:"lockout_id"`
	Provider  string `json:"provider"`
}

// Kind names the job.
func (RevokeArgs) Kind() string { return "lockout_revoke" }

// LockArgs is the device lock of one lockout.
type LockArgs struct {
	OrgID     string `json:"org_id"`
	LockoutID string `json:"lockout_id"`
}

// Kind names the job.
func (LockArgs) Kind() string { return "lockout_lock" }

var uniqueByArgs = river.UniqueOpts{ByArgs: true}

// Begin starts a new lockout's pipeline inside the transaction that
// created it: every step recorded as pending, a revocation job per
// connected provider, and the device lock scheduled at most LockGrace
// later (sooner when the providers' first attempts finish).
func (p *Pipeline) Begin(ctx context.Context, st store.Store, tx any, l store.Lockout) error {
	now := p.cfg.Clock.Now()
	steps := Steps
	if p.cfg.Evidence == nil {
		steps = Steps[:3]
	}
	if err := st.InitLockoutSteps(ctx, store.InitLockoutStepsParams{OrgID: l.OrgID, LockoutID: l.ID, Steps: steps, At: now}); err != nil {
		return fmt.Errorf("recording steps of lockout %s: %w", l.ID, err)
	}
	if p.custodyEnabled() {
		// The first evidence event, committed with the lockout itself.
		if _, err := p.recordLockoutNode(ctx, st, l); err != nil {
			return fmt.Errorf("recording the lockout's custody node: %w", err)
		}
	}
	conns, err := st.ListProviderConnections(ctx, l.OrgID)
	if err != nil {
		return fmt.Errorf("listing provider connections: %w", err)
	}
	for _, c := range conns {
		if _, err := st.PutProviderRevocation(ctx, store.PutProviderRevocationParams{
			OrgID: l.OrgID, LockoutID: l.ID, Provider: c.Provider, State: store.RevocationPending, At: now,
		}); err != nil {
			return fmt.Errorf("recording %s revocation: %w", c.Provider, err)
		}
		if _, err := p.insertTx(ctx, tx, RevokeArgs{OrgID: l.OrgID, LockoutID: l.ID, Provider: c.Provider}, &river.InsertOpts{
			Queue: queue, MaxAttempts: p.cfg.RevokeAttempts, UniqueOpts: uniqueByArgs,
		}); err != nil {
			return fmt.Errorf("enqueueing %s revocation: %w", c.Provider, err)
		}
	}
	// Without providers the lock is available at once; with them it waits
	// at most LockGrace (a scheduled job) unless a first attempt ends sooner.
	var lockAt time.Time
	if len(conns) > 0 {
		lockAt = queueClock.Now().Add(p.cfg.LockGrace)
	} else {
		for _, step := range []string{StepCapture, StepRevoke} {
			if _, err := st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
				OrgID: l.OrgID, LockoutID: l.ID, Step: step, State: store.StepDone, LastError: "no providers connected", At: now,
			}); err != nil {
				return err
			}
		}
	}
	if _, err := p.insertTx(ctx, tx, LockArgs{OrgID: l.OrgID, LockoutID: l.ID}, &river.InsertOpts{
		Queue: lockQueue, ScheduledAt: lockAt, UniqueOpts: uniqueByArgs, MaxAttempts: 25,
	}); err != nil {
		return fmt.Errorf("enqueueing device lock: %w", err)
	}
	if p.cfg.Evidence != nil {
		// The snapshot waits, snoozing, for the answers it reports.
		if _, err := p.insertTx(ctx, tx, SnapshotArgs{OrgID: l.OrgID, LockoutID: l.ID}, &river.InsertOpts{
			Queue: evidenceQueue, ScheduledAt: queueClock.Now().Add(p.cfg.LockGrace), UniqueOpts: uniqueByArgs, MaxAttempts: 25,
		}); err != nil {
			return fmt.Errorf("enqueueing the audit snapshot: %w", err)
		}
	}
	return nil
}

// Committed is told that a lockout Begin started has committed: when its
// grace ends, its device lock is made available at once. The queue's own
// scheduler would only notice within seconds; the scheduled job stays the
// fallback should this process die first.
func (p *Pipeline) Committed(l store.Lockout) {
	if p.custodyEnabled() {
		// Time-stamp the lockout's node now, off the caller's path (a
		// remote TSA can take seconds); the snapshot step stamps it
		// otherwise.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if n, ok, err := p.findNode(ctx, l.OrgID, l.ID, custody.KindLockout); err == nil && ok {
				p.stamp(ctx, l.OrgID, n)
			}
		}()
	}
	time.AfterFunc(p.cfg.LockGrace, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := p.cfg.Store.InTx(ctx, func(st store.Store, tx any) error {
			return p.lockNow(ctx, tx, l.OrgID, l.ID)
		})
		if err != nil {
			p.log.Warn("releasing the device lock after its grace; the scheduled job will", "lockout", l.ID, "err", err)
		}
	})
}

// lockNow makes the lockout's scheduled device lock run at once.
func (p *Pipeline) lockNow(ctx context.Context, tx any, orgID, lockoutID string) error {
	res, err := p.insertTx(ctx, tx, LockArgs{OrgID: orgID, LockoutID: lockoutID}, &river.InsertOpts{Queue: lockQueue, UniqueOpts: uniqueByArgs, MaxAttempts: 25})
	if err != nil {
		return fmt.Errorf("enqueueing device lock: %w", err)
	}
	if res.UniqueSkippedAsDuplicate && res.Job.State == rivertype.JobStateScheduled {
		return p.retryTx(ctx, tx, res.Job.ID)
	}
	return nil
}

// backoff is full-jitter exponential: a random delay up to base·2^(n-1),
// capped, and never shorter than what the provider asked for.
func (p *Pipeline) backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceiling := p.cfg.RetryBase << min(attempt-1, 20)
	if ceiling <= 0 || ceiling > p.cfg.RetryMax {
		ceiling = p.cfg.RetryMax
	}
	d := time.Duration(rand.Int64N(int64(ceiling))) + ceiling/10
	return max(d, retryAfter)
}

// confirmation encodes a provider's evidence for the record.
func confirmation(r providers.Revocation) json.RawMessage {
	b, err := json.Marshal(r)
	if err != nil {
		return json.RawMessage(`{"error":"confirmation could not be encoded"}`)
	}
	return b
}

// Migrate brings the job queue's own tables up to date on the driver's
// database.
func Migrate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fmt.Errorf("preparing job queue migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating job queue tables: %w", err)
	}
	return nil
}
