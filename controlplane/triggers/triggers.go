// Package triggers starts lockouts from the organization's identity
// provider and HR system: Okta's event hook, BambooHR's webhook and a
// Workday report polled on a schedule.
//
// Deliveries are accepted fast and processed later. A webhook is
// authenticated, parsed and, in one transaction, recorded (the delivery,
// by its vendor id, so a redelivery or replay is recognized), its events
// put in the inbox (unique by the vendor's own ids, so each is processed
// once however often it arrives) and a durable job enqueued per new event.
// The job resolves the user (by a vendor id learned before, else by email,
// case-insensitively) and opens the lockout in the same transaction that
// marks the event processed. An unknown user is recorded, not dropped,
// for admins to see; a termination dated in the future is scheduled for
// its date (00:00 UTC) and run then.
//
// Workday is polled by a job per org that, in the transaction recording
// its outcome, enqueues the next run: a chain that survives restarts and
// runs once however many replicas there are. Start makes sure every
// org's chain exists.
package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr"
	"github.com/toktra/toktra/internal/clock"
)

// Sources, which are also the integrations' kinds.
const (
	SourceOkta     = "okta"
	SourceBambooHR = "bamboohr"
	SourceWorkday  = "workday"
)

// queue is the triggers' own job queue.
const queue = "triggers"

// Errors a webhook or a configuration call returns, for the API to map.
var (
	// ErrUnknownHook: no integration of that kind has this hook id.
	ErrUnknownHook = errors.New("unknown webhook")
	// ErrUnauthenticated: the secret or signature is missing or wrong.
	ErrUnauthenticated = errors.New("webhook not authenticated")
	// ErrStale: the signed timestamp is outside the replay window.
	ErrStale = errors.New("webhook timestamp outside the replay window")
	// ErrReplayed: this very signed request was already accepted.
	ErrReplayed = errors.New("webhook already received (replayed signature)")
	// ErrMalformed: the body is not the vendor's payload.
	ErrMalformed = errors.New("malformed webhook payload")
)

// InvalidError is a configuration the caller must fix.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// Config wires a Service.
type Config struct {
	Store    store.Store
	Lockouts *lockout.Service
	// Sealer encrypts the integrations' secrets at rest.
	Sealer *secrets.Sealer
	Clock  clock.Clock
	Logger *slog.Logger
	// HTTP calls BambooHR's API and Workday (default: 30s timeout).
	HTTP *http.Client
	// BambooHRBaseURL is BambooHR's API root (default
	// https://api.bamboohr.com; a fake's in tests).
	BambooHRBaseURL string
	// AllowAnyHRISURL lets Workday URLs use http and any host; off in
	// production, where they must be https on *.workday.com or
	// *.myworkday.com (an API key holder could otherwise make the server
	// call arbitrary URLs).
	AllowAnyHRISURL bool
	// ReplayWindow bounds how old (or early) a signed timestamp may be
	// (default 5m).
	ReplayWindow time.Duration
	// SecretGrace is how long an Okta secret keeps working after it was
	// rotated, while the new one is entered at Okta (default 24h).
	SecretGrace time.Duration
	// DefaultPollInterval is Workday's when its config names none
	// (default 1h); MinPollInterval the shortest allowed (default 5m).
	DefaultPollInterval, MinPollInterval time.Duration
	// PollOverlap is how far before its cursor a poll's window starts, to
	// catch events entered late (default 24h).
	PollOverlap time.Duration
	// ProcessAttempts bounds a job's attempts (default 10); the last
	// failure marks the event failed.
	ProcessAttempts int
	// RetryBase is the first retry's delay, four times longer each attempt
	// up to an hour (default 5s).
	RetryBase time.Duration
	// Workers is how many jobs run at once (default 10).
	Workers int
}

// Service receives the triggers' deliveries and processes them.
type Service struct {
	cfg      Config
	store    store.Store
	lockouts *lockout.Service
	sealer   *secrets.Sealer
	clock    clock.Clock
	log      *slog.Logger
	bamboo   *bamboohr.Client

	insertTx func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// New builds a Service. Its jobs run on the pipeline's job client — one
// client per database, since a client's maintenance (its rescuer) discards
// stuck jobs of kinds it has no worker for: pass Jobs() in
// pipeline.Config.Jobs, then Attach the lockout service and the client's
// inserter before the client starts. cfg.Lockouts may be left nil until
// then.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errors.New("triggers: store and sealer are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	cfg.BambooHRBaseURL = orDefault(cfg.BambooHRBaseURL, bamboohr.DefaultBaseURL)
	cfg.ReplayWindow = orDefault(cfg.ReplayWindow, 5*time.Minute)
	cfg.SecretGrace = orDefault(cfg.SecretGrace, 24*time.Hour)
	cfg.DefaultPollInterval = orDefault(cfg.DefaultPollInterval, time.Hour)
	cfg.MinPollInterval = orDefault(cfg.MinPollInterval, 5*time.Minute)
	cfg.PollOverlap = orDefault(cfg.PollOverlap, 24*time.Hour)
	cfg.ProcessAttempts = orDefault(cfg.ProcessAttempts, 10)
	cfg.RetryBase = orDefault(cfg.RetryBase, 5*time.Second)
	cfg.Workers = orDefault(cfg.Workers, 10)
	s := &Service{
		cfg: cfg, store: cfg.Store, lockouts: cfg.Lockouts, sealer: cfg.Sealer, clock: cfg.Clock,
		log:    cfg.Logger.With("component", "triggers"),
		bamboo: &bamboohr.Client{BaseURL: cfg.BambooHRBaseURL, HTTP: cfg.HTTP},
	}
	return s, nil
}

// Jobs are the triggers' queue and workers, for the pipeline's job client.
func (s *Service) Jobs() pipeline.Jobs {
	return pipeline.Jobs{
		Queues: map[string]river.QueueConfig{queue: {MaxWorkers: s.cfg.Workers}},
		Register: func(w *river.Workers) error {
			if err := river.AddWorkerSafely(w, &processWorker{s: s}); err != nil {
				return err
			}
			return river.AddWorkerSafely(w, &pollWorker{s: s})
		},
	}
}

// Attach gives the Service the lockout service its events start lockouts
// with and the job client's transactional insert (pipeline.InsertTx).
func (s *Service) Attach(lockouts *lockout.Service, insertTx func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)) {
	s.lockouts, s.insertTx = lockouts, insertTx
}

// Start makes sure every org's poller has its next run enqueued; the jobs
// run on the pipeline's client, started by its owner.
func (s *Service) Start(ctx context.Context) error {
	if s.lockouts == nil || s.insertTx == nil {
		return errors.New("triggers: Attach the lockout service and the job client first")
	}
	return s.EnsurePolls(ctx)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// queueTime converts a business time to the job queue's clock: River
// schedules by real time, and in production the two are the same clock.
// A test's fake clock starts at the real time, so the offset is small.
func (s *Service) queueTime(t time.Time) time.Time {
	return queueClock.Now().Add(t.Sub(s.clock.Now()))
}

// queueClock is the job queue's clock.
var queueClock clock.Clock = clock.Real{}
