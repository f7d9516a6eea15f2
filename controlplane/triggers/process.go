package triggers

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr"
)

// ProcessArgs is the processing of one inbox event.
type ProcessArgs struct {
	OrgID   string `json:"org_id"`
	EventID string `json:"event_id"`
}

// Kind names the job.
func (ProcessArgs) Kind() string { return "trigger_process" }

// enqueueProcess enqueues an event's processing in tx: at once, or at its
// due time when it is scheduled. The job is idempotent (it acts only on a
// pending or scheduled event), so a second one is harmless.
func (s *Service) enqueueProcess(ctx context.Context, tx any, e store.TriggerEvent, _ bool) error {
	opts := &river.InsertOpts{Queue: queue, MaxAttempts: s.cfg.ProcessAttempts}
	if e.State == store.TriggerScheduled {
		opts.ScheduledAt = s.queueTime(e.DueAt)
	}
	if _, err := s.insertTx(ctx, tx, ProcessArgs{OrgID: e.OrgID, EventID: e.ID}, opts); err != nil {
		return fmt.Errorf("enqueueing trigger event %s: %w", e.ID, err)
	}
	return nil
}

type processWorker struct {
	river.WorkerDefaults[ProcessArgs]
	s *Service
}

// NextRetry spaces retries: RetryBase, then four times longer each
// attempt, at most an hour (on the job queue's clock).
func (w *processWorker) NextRetry(job *river.Job[ProcessArgs]) time.Time {
	d := w.s.cfg.RetryBase << (2 * min(job.Attempt-1, 10))
	if d <= 0 || d > time.Hour {
		d = time.Hour
	}
	return queueClock.Now().Add(d)
}

// decision is what processing makes of an event.
type decision struct {
	action string // "lock", "schedule" or "ignore"
	email  string
	dueAt  time.Time
	reason string
	detail json.RawMessage
}

// permanentError is a failure retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Work processes one event: decides (asking BambooHR when needed), then
// locks the user out, schedules, ignores or records an unknown user.
func (w *processWorker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	s, a := w.s, job.Args
	e, err := s.store.GetTriggerEvent(ctx, a.OrgID, a.EventID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("trigger event %s does not exist", a.EventID))
	}
	if err != nil {
		return err
	}
	if e.State != store.TriggerPending && e.State != store.TriggerScheduled {
		return nil // done by an earlier run
	}
	now := s.clock.Now()
	if e.State == store.TriggerScheduled && now.Before(e.DueAt) {
		return river.JobSnooze(e.DueAt.Sub(now))
	}
	d, err := s.decide(ctx, e, now)
	if err != nil {
		return s.attemptFailed(ctx, job, e, err)
	}
	switch d.action {
	case "ignore":
		return s.finish(ctx, e, func(p *store.UpdateTriggerEventParams) {
			p.State, p.LastError, p.Detail = store.TriggerIgnored, d.reason, d.detail
		})
	case "schedule":
		return s.store.InTx(ctx, func(st store.Store, tx any) error {
			next, err := st.UpdateTriggerEvent(ctx, s.update(e, job.Attempt, func(p *store.UpdateTriggerEventParams) {
				p.State, p.DueAt, p.Email, p.LastError, p.Detail = store.TriggerScheduled, d.dueAt, d.email, "", d.detail
			}))
			if err != nil {
				return err
			}
			s.log.Info("termination scheduled", "org", e.OrgID, "event", e.ID, "due", d.dueAt)
			return s.enqueueProcess(ctx, tx, next, false)
		})
	}
	return s.lock(ctx, e, job.Attempt, d)
}

// update builds the update of e from its current fields.
func (s *Service) update(e store.TriggerEvent, attempt int, mutate func(*store.UpdateTriggerEventParams)) store.UpdateTriggerEventParams {
	p := store.UpdateTriggerEventParams{
		OrgID: e.OrgID, ID: e.ID, From: []store.TriggerEventState{store.TriggerPending, store.TriggerScheduled},
		State: e.State, DueAt: e.DueAt, Attempts: max(attempt, e.Attempts), LastError: e.LastError, Email: e.Email,
		UserID: e.UserID, LockoutID: e.LockoutID, At: s.clock.Now(),
	}
	mutate(&p)
	return p
}

func (s *Service) finish(ctx context.Context, e store.TriggerEvent, mutate func(*store.UpdateTriggerEventParams)) error {
	_, err := s.store.UpdateTriggerEvent(ctx, s.update(e, e.Attempts, mutate))
	if errors.Is(err, store.ErrConflict) {
		return nil // another run finished it
	}
	return err
}

// attemptFailed records a failed attempt; the last one (or a failure
// retrying cannot fix) marks the event failed for admins to see.
func (s *Service) attemptFailed(ctx context.Context, job *river.Job[ProcessArgs], e store.TriggerEvent, cause error) error {
	var perm *permanentError
	final := job.Attempt >= job.MaxAttempts || errors.As(cause, &perm)
	_, err := s.store.UpdateTriggerEvent(ctx, s.update(e, job.Attempt, func(p *store.UpdateTriggerEventParams) {
		p.LastError = cause.Error()
		if final {
			p.State = store.TriggerFailed
		}
	}))
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	if final {
		s.log.Error("trigger event failed", "org", e.OrgID, "event", e.ID, "source", e.Source, "err", cause)
		return nil
	}
	s.log.Warn("processing trigger event failed; retrying", "org", e.OrgID, "event", e.ID, "attempt", job.Attempt, "err", cause)
	return cause
}

// decide says what to do with an event now. Okta and Workday events were
// judged on arrival; BambooHR's are judged by the employee's record at
// BambooHR, read now (so a termination cancelled before its date is not
// acted on).
func (s *Service) decide(ctx context.Context, e store.TriggerEvent, now time.Time) (decision, error) {
	if e.Source != SourceBambooHR {
		return decision{action: "lock", email: e.Email}, nil
	}
	var det bambooDetail
	_ = json.Unmarshal(e.Detail, &det)
	emp := bamboohr.Employee{ID: e.Subject, WorkEmail: e.Email, Status: det.Status, EmploymentStatus: det.EmploymentStatus, TerminationDate: det.TerminationDate}
	if det.Format == bamboohr.FormatEvent || e.State == store.TriggerScheduled || !emp.Complete() {
		var sec bambooSecrets
		in, err := s.store.GetTriggerIntegration(ctx, e.OrgID, SourceBambooHR)
		if errors.Is(err, store.ErrNotFound) {
			return decision{}, &permanentError{errors.New("bamboohr is no longer connected")}
		}
		if err != nil {
			return decision{}, err
		}
		if err := s.open(ctx, in, &sec); err != nil {
			return decision{}, err
		}
		var st bambooSettings
		if err := json.Unmarshal(in.Settings, &st); err != nil {
			return decision{}, err
		}
		fetched, err := s.bamboo.GetEmployee(ctx, st.Subdomain, sec.APIKey, e.Subject)
		var ae *bamboohr.APIError
		if errors.As(err, &ae) && !ae.Retryable {
			return decision{}, &permanentError{err}
		}
		if err != nil {
			return decision{}, err
		}
		emp = fetched
		if emp.WorkEmail == "" {
			emp.WorkEmail = e.Email
		}
	}
	t := emp.Terminated(now)
	det.Status, det.EmploymentStatus, det.TerminationDate, det.Decision = emp.Status, emp.EmploymentStatus, emp.TerminationDate, t.Reason
	raw, _ := json.Marshal(det)
	d := decision{email: emp.WorkEmail, reason: t.Reason, detail: raw}
	switch {
	case !t.Terminated:
		d.action = "ignore"
	case !t.DueAt(now).IsZero():
		d.action, d.dueAt = "schedule", t.DueAt(now)
	default:
		d.action = "lock"
	}
	return d, nil
}

// lock resolves the user and opens their lockout in the transaction that
// marks the event processed; with no such user the event is recorded as
// unknown_user.
func (s *Service) lock(ctx context.Context, e store.TriggerEvent, attempt int, d decision) error {
	var (
		l       store.Lockout
		created bool
		locked  bool
	)
	err := s.store.InTx(ctx, func(st store.Store, tx any) error {
		user, matchedBy, err := resolveUser(ctx, st, e, d.email)
		if errors.Is(err, store.ErrNotFound) {
			_, err := st.UpdateTriggerEvent(ctx, s.update(e, attempt, func(p *store.UpdateTriggerEventParams) {
				p.State, p.Email, p.Detail = store.TriggerUnknownUser, d.email, d.detail
				p.LastError = unknownUserMessage(e, d.email)
			}))
			return err
		}
		if err != nil {
			return err
		}
		evidence, err := json.Marshal(map[string]any{
			"trigger_event": e.ID, "source": e.Source, "delivery_id": e.DeliveryID, "subject": e.Subject,
			"vendor_event_id": e.VendorEventID, "event_type": e.EventType, "payload_sha256": hex.EncodeToString(e.PayloadSHA256),
			"received_at": e.ReceivedAt.UTC(), "matched_by": matchedBy,
		})
		if err != nil {
			return err
		}
		l, created, err = s.lockouts.LockUserTx(ctx, st, tx, user, e.Source+":"+e.ID, evidence)
		if err != nil {
			return err
		}
		if err := st.PutTriggerIdentity(ctx, store.PutTriggerIdentityParams{OrgID: e.OrgID, Source: e.Source, ExternalID: e.Subject, UserID: user.ID, At: s.clock.Now()}); err != nil {
			return err
		}
		if _, err := st.UpdateTriggerEvent(ctx, s.update(e, attempt, func(p *store.UpdateTriggerEventParams) {
			p.State, p.Email, p.UserID, p.LockoutID, p.LastError, p.Detail = store.TriggerProcessed, d.email, user.ID, l.ID, "", d.detail
		})); err != nil {
			return err
		}
		locked = true
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		return nil // another run finished it first; nothing of ours was kept
	}
	if err != nil {
		return err
	}
	if locked {
		s.lockouts.Started(l, created)
		s.log.Info("trigger started a lockout", "org", e.OrgID, "event", e.ID, "source", e.Source, "lockout", l.ID, "new", created)
	} else {
		s.log.Warn("trigger names no user of the org; recorded", "org", e.OrgID, "event", e.ID, "source", e.Source)
	}
	return nil
}

func unknownUserMessage(e store.TriggerEvent, email string) string {
	if email == "" {
		return fmt.Sprintf("no user of the org has %s id %s, and the event gives no email", e.Source, e.Subject)
	}
	return fmt.Sprintf("no user of the org has email %s or %s id %s", email, e.Source, e.Subject)
}

// resolveUser finds the event's user: by the vendor id learned from an
// earlier event, else by email (case-insensitively).
func resolveUser(ctx context.Context, st store.Store, e store.TriggerEvent, email string) (store.User, string, error) {
	id, err := st.GetTriggerIdentity(ctx, e.OrgID, e.Source, e.Subject)
	if err == nil {
		u, err := st.GetUser(ctx, e.OrgID, id.UserID)
		if err == nil {
			return u, e.Source + "_id", nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.User{}, "", err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.User{}, "", err
	}
	if email == "" {
		return store.User{}, "", store.ErrNotFound
	}
	u, err := st.GetUserByEmail(ctx, e.OrgID, strings.ToLower(email))
	return u, "email", err
}
