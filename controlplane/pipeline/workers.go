package pipeline

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
)

type revokeWorker struct {
	river.WorkerDefaults[RevokeArgs]
	p *Pipeline
	// retryDelay carries a failed attempt's chosen delay to NextRetry, by job id.
	retryDelay sync.Map
}

// NextRetry spaces retries with jittered exponential backoff, honouring
// the provider's Retry-After. The time is on the job queue's clock (real
// time), not the injected business clock: the queue schedules by it.
func (w *revokeWorker) NextRetry(job *river.Job[RevokeArgs]) time.Time {
	d := w.p.backoff(job.Attempt, 0)
	if v, ok := w.retryDelay.LoadAndDelete(job.ID); ok {
		d = v.(time.Duration)
	}
	return queueClock.Now().Add(d)
}

// queueClock is the job queue's clock: River schedules by real time.
var queueClock clock.Clock = clock.Real{}

// Work makes one attempt at one provider's revocation and records its
// outcome; the device lock is released at the first attempt's end.
func (w *revokeWorker) Work(ctx context.Context, job *river.Job[RevokeArgs]) error {
	p, a := w.p, job.Args
	st := p.cfg.Store
	log := p.log.With("org", a.OrgID, "lockout", a.LockoutID, "provider", a.Provider, "attempt", job.Attempt)
	prev, err := st.GetProviderRevocation(ctx, a.OrgID, a.LockoutID, a.Provider)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("no revocation record for %s in lockout %s", a.Provider, a.LockoutID))
	}
	if err != nil {
		return err
	}
	if prev.State != store.RevocationPending {
		// Finished by an earlier run whose completion was lost in a crash.
		return nil
	}
	l, err := st.GetLockout(ctx, a.OrgID, a.LockoutID)
	if err != nil {
		return err
	}
	user, err := st.GetUser(ctx, a.OrgID, l.UserID)
	if err != nil {
		return err
	}

	var (
		rev     providers.Revocation
		callErr error
	)
	conn, err := st.GetProviderConnection(ctx, a.OrgID, a.Provider)
	switch {
	case errors.Is(err, store.ErrNotFound):
		callErr = providers.Permanent(fmt.Errorf("%s was disconnected from the org before the revocation ran", a.Provider))
	case err != nil:
		return err
	default:
		connector, cerr := p.cfg.Connect(ctx, conn)
		if cerr != nil {
			callErr = providers.Permanent(fmt.Errorf("connecting to %s: %w", a.Provider, cerr))
			break
		}
		// The usage comes first: once the user is removed, the provider
		// no longer attributes it to them.
		if retry, err := w.captureUsage(ctx, job, connector, l, user.Email); err != nil {
			return err
		} else if retry != nil {
			callErr = retry
			break
		}
		rev, callErr = connector.RevokeUser(ctx, user.Email)
	}

	now := p.cfg.Clock.Now()
	final := callErr == nil || !providers.Retryable(callErr) || job.Attempt >= job.MaxAttempts
	state := store.RevocationConfirmed
	lastErr := ""
	if callErr != nil {
		lastErr = callErr.Error()
		state = store.RevocationPending
		if final {
			state = store.RevocationUnconfirmed
		}
	}
	var node store.CustodyNode
	err = st.InTx(ctx, func(st store.Store, tx any) error {
		if _, err := st.PutProviderRevocation(ctx, store.PutProviderRevocationParams{
			OrgID: a.OrgID, LockoutID: a.LockoutID, Provider: a.Provider, State: state, Attempts: job.Attempt,
			Confirmation: confirmation(rev), LastError: lastErr, At: now,
		}); err != nil {
			return err
		}
		if final && p.custodyEnabled() {
			var err error
			node, err = p.recordEvidence(ctx, st, a.OrgID, a.LockoutID, custody.KindProviderConfirmation, a.Provider, map[string]any{
				"provider": a.Provider, "state": string(state), "attempts": job.Attempt, "error": lastErr,
				"confirmation": confirmation(rev), "at": now.UTC().Format(time.RFC3339Nano),
			})
			if err != nil {
				return err
			}
		}
		if job.Attempt == 1 || final {
			return p.lockNow(ctx, tx, a.OrgID, a.LockoutID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording %s revocation: %w", a.Provider, err)
	}
	if node.Hash != nil {
		p.stamp(ctx, a.OrgID, node)
	}
	p.metrics.revocations.WithLabelValues(a.Provider, string(state)).Inc()
	switch {
	case callErr == nil:
		log.Info("provider revocation confirmed", "actions", len(rev.Actions), "user_found", rev.UserFound)
		return nil
	case final:
		p.metrics.unconfirmed.WithLabelValues(a.Provider).Inc()
		log.Error("provider revocation unconfirmed; the pipeline goes on", "err", callErr)
		return nil
	default:
		retryAfter, _ := providers.RetryAfter(callErr)
		w.retryDelay.Store(job.ID, p.backoff(job.Attempt, retryAfter))
		log.Warn("provider revocation failed; retrying", "err", callErr)
		return callErr
	}
}

// UsageWindow is how far back the usage captured before revocation goes.
const UsageWindow = 14 * 24 * time.Hour

// captureUsage records the user's usage at the provider for the window
// before the lockout, once. A failure it may retry comes back as retry (the
// attempt ends there, without revoking); past half the revocation budget
// the capture is recorded as failed and the revocation goes on without it.
func (w *revokeWorker) captureUsage(ctx context.Context, job *river.Job[RevokeArgs], c Connector, l store.Lockout, email string) (retry, err error) {
	p, a := w.p, job.Args
	capturer, ok := c.(providers.UsageCapturer)
	if !ok {
		return nil, nil
	}
	existing, err := p.cfg.Store.ListUsageCaptures(ctx, a.OrgID, a.LockoutID)
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		if e.Provider == a.Provider && e.State != store.CapturePending {
			return nil, nil
		}
	}
	from, to := l.CreatedAt.Add(-UsageWindow), l.CreatedAt
	capture, cerr := capturer.CaptureUsage(ctx, email, from, to)
	state, lastErr := store.CaptureCaptured, ""
	if cerr != nil {
		lastErr = cerr.Error()
		state = store.CaptureFailed
		if providers.Retryable(cerr) && job.Attempt < max(1, job.MaxAttempts/2) {
			state, retry = store.CapturePending, fmt.Errorf("capturing usage: %w", cerr)
		}
	}
	raw, merr := json.Marshal(capture)
	if merr != nil {
		raw = nil
	}
	if _, err := p.cfg.Store.PutUsageCapture(ctx, store.PutUsageCaptureParams{
		OrgID: a.OrgID, LockoutID: a.LockoutID, Provider: a.Provider, State: state, Attempts: job.Attempt,
		WindowFrom: from, WindowTo: to, Capture: raw, LastError: lastErr, At: p.cfg.Clock.Now(),
	}); err != nil {
		return nil, fmt.Errorf("recording %s usage capture: %w", a.Provider, err)
	}
	if state == store.CaptureFailed {
		p.log.Error("usage capture given up; revoking without it", "lockout", a.LockoutID, "provider", a.Provider, "err", cerr)
	}
	if state != store.CapturePending && p.custodyEnabled() {
		// The capture itself can be large: the node names its hash.
		n, err := p.recordEvidence(ctx, p.cfg.Store, a.OrgID, a.LockoutID, custody.KindUsageCapture, a.Provider, map[string]any{
			"provider": a.Provider, "state": string(state), "error": lastErr,
			"window_from": from.UTC().Format(time.RFC3339Nano), "window_to": to.UTC().Format(time.RFC3339Nano),
			"capture_sha256": hex.EncodeToString(sha256Of(raw)), "capture_bytes": len(raw),
		})
		if err != nil {
			return nil, fmt.Errorf("recording the %s usage capture's custody node: %w", a.Provider, err)
		}
		p.stamp(ctx, a.OrgID, n)
	}
	return retry, nil
}

type lockWorker struct {
	river.WorkerDefaults[LockArgs]
	p *Pipeline
}

// Work sends the lock command to each of the user's devices that has none
// for this lockout, in the transaction that records the step done.
func (w *lockWorker) Work(ctx context.Context, job *river.Job[LockArgs]) error {
	p, a := w.p, job.Args
	started := p.cfg.Clock.Now()
	err := p.cfg.Store.InTx(ctx, func(st store.Store, tx any) error {
		l, err := st.GetLockout(ctx, a.OrgID, a.LockoutID)
		if errors.Is(err, store.ErrNotFound) {
			return river.JobCancel(fmt.Errorf("lockout %s does not exist", a.LockoutID))
		}
		if err != nil {
			return err
		}
		note := ""
		if l.State == store.LockoutOpen {
			if err := p.cfg.Issuer.SendToUserDevices(ctx, st, l, store.CommandLock); err != nil {
				return err
			}
		} else {
			note = "lockout overridden before the devices were locked"
		}
		_, err = st.UpdateLockoutStep(ctx, store.UpdateLockoutStepParams{
			OrgID: a.OrgID, LockoutID: a.LockoutID, Step: StepLock, State: store.StepDone,
			Attempts: job.Attempt, LastError: note, At: p.cfg.Clock.Now(),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("locking devices of lockout %s: %w", a.LockoutID, err)
	}
	p.metrics.lockStep.Observe(p.cfg.Clock.Now().Sub(started).Seconds())
	return nil
}

type metrics struct {
	revocations *prometheus.CounterVec
	unconfirmed *prometheus.CounterVec
	lockStep    prometheus.Histogram
	snapshots   prometheus.Counter
	uploads     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toktra_provider_revocation_attempts_total", Help: "Provider revocation attempts by provider and resulting state.",
		}, []string{"provider", "state"}),
		unconfirmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toktra_provider_revocations_unconfirmed_total", Help: "Provider revocations given up after the retry budget or a permanent error.",
		}, []string{"provider"}),
		lockStep: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "toktra_pipeline_lock_step_seconds", Help: "Time to issue a lockout's device lock commands.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	m.snapshots = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "toktra_snapshots_total", Help: "Audit snapshots rendered, signed and timestamped.",
	})
	m.uploads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "toktra_snapshot_uploads_total", Help: "Audit snapshots stored in the write-once store.",
	})
	if reg != nil {
		reg.MustRegister(m.revocations, m.unconfirmed, m.lockStep, m.snapshots, m.uploads)
	}
	return m
}
