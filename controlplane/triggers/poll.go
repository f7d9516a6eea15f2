package triggers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers/workday"
)

// PollArgs is one run of an org's poller, due at RunAt (Unix
// microseconds): the poll's next_run_at when it was enqueued, which is
// how a run superseded by a new configuration knows to do nothing.
type PollArgs struct {
	OrgID  string `json:"org_id"`
	Source string `json:"source"`
	RunAt  int64  `json:"run_at"`
	// Config is set on the run a configuration change asks for, so it is
	// never taken for a duplicate of a run still finishing with the same
	// RunAt (jobs are marked completed asynchronously).
	Config string `json:"config,omitempty"`
}

// Kind names the job.
func (PollArgs) Kind() string { return "trigger_poll" }

func (s *Service) enqueuePoll(ctx context.Context, tx any, p store.TriggerPoll, config ...string) error {
	args := PollArgs{OrgID: p.OrgID, Source: p.Source, RunAt: p.NextRunAt.UnixMicro()}
	if len(config) > 0 {
		args.Config = config[0]
	}
	_, err := s.insertTx(ctx, tx, args, &river.InsertOpts{
		Queue: queue, ScheduledAt: s.queueTime(p.NextRunAt), MaxAttempts: 25,
		// One job per run waiting, whoever enqueues it (EnsurePolls on
		// every replica); a finished run's job does not count, so a new
		// configuration saved at the same instant still gets its run.
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled,
		}},
	})
	if err != nil {
		return fmt.Errorf("enqueueing %s poll of org %s: %w", p.Source, p.OrgID, err)
	}
	return nil
}

// EnsurePolls makes sure every org's next poll has its job: a chain
// broken by a job given up, or lost with a database restore, is mended.
func (s *Service) EnsurePolls(ctx context.Context) error {
	scheds, err := s.store.ListTriggerPollSchedules(ctx)
	if err != nil {
		return err
	}
	for _, sc := range scheds {
		err := s.store.InTx(ctx, func(st store.Store, tx any) error {
			return s.enqueuePoll(ctx, tx, store.TriggerPoll{OrgID: sc.OrgID, Source: sc.Source, NextRunAt: sc.NextRunAt})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type pollWorker struct {
	river.WorkerDefaults[PollArgs]
	s *Service
}

// errSuperseded rolls back a run whose outcome another recorded first.
var errSuperseded = errors.New("poll run superseded")

// Work reads the report for the window since the cursor (less the
// overlap), puts each termination in the inbox (deduplicated by worker and
// event), and records the outcome with the next run, enqueued in the same
// transaction. A failed read is recorded and the chain goes on.
func (w *pollWorker) Work(ctx context.Context, job *river.Job[PollArgs]) error {
	s, a := w.s, job.Args
	if a.Source != SourceWorkday {
		return river.JobCancel(fmt.Errorf("no poller for %q", a.Source))
	}
	poll, err := s.store.GetTriggerPoll(ctx, a.OrgID, a.Source)
	if errors.Is(err, store.ErrNotFound) {
		return nil // disconnected
	}
	if err != nil {
		return err
	}
	if poll.NextRunAt.UnixMicro() != a.RunAt {
		return nil // superseded by a new configuration, or already run
	}
	in, err := s.store.GetTriggerIntegration(ctx, a.OrgID, SourceWorkday)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var (
		st  workdaySettings
		sec workdaySecrets
	)
	if err := json.Unmarshal(in.Settings, &st); err != nil {
		return fmt.Errorf("reading workday settings: %w", err)
	}
	if err := s.open(ctx, in, &sec); err != nil {
		return err
	}
	now := s.clock.Now()
	cursor := poll.Cursor
	if cursor.IsZero() {
		cursor = in.CreatedAt
	}
	from := cursor.Add(-s.cfg.PollOverlap)
	client := &workday.Client{HTTP: s.cfg.HTTP}
	auth := workday.Auth{Username: st.Username, Password: sec.Password, TokenURL: st.TokenURL, ClientID: st.ClientID,
		ClientSecret: sec.ClientSecret, RefreshToken: sec.RefreshToken}
	entries, fetchErr := client.Fetch(ctx, st.ReportURL, auth, from, now)
	runID := "poll:" + strconv.FormatInt(job.ID, 10)
	var accepted, duplicates int
	err = s.store.InTx(ctx, func(tx store.Store, txh any) error {
		accepted, duplicates = 0, 0
		errText := ""
		if fetchErr != nil {
			errText = fetchErr.Error()
		} else {
			raw, _ := json.Marshal(entries)
			sum := sha256.Sum256(raw)
			if err := tx.RecordTriggerDelivery(ctx, store.RecordTriggerDeliveryParams{OrgID: a.OrgID, Source: SourceWorkday,
				DeliveryID: runID, PayloadSHA256: sum[:], Events: len(entries), ReceivedAt: now}); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return errSuperseded
				}
				return err
			}
			for _, e := range entries {
				if e.Rescinded {
					continue
				}
				state, due := store.TriggerPending, time.Time{}
				if e.Date().After(now) {
					state, due = store.TriggerScheduled, e.Date()
				}
				detail, _ := json.Marshal(map[string]any{"termination_date": e.TerminationDate, "event_completed": e.Completed})
				added, err := s.addEvent(ctx, tx, txh, store.AddTriggerEventParams{
					OrgID: a.OrgID, Source: SourceWorkday, DeliveryID: runID, Subject: e.WorkerID, VendorEventID: e.EventID,
					EventType: "termination", Email: e.Email, PayloadSHA256: sum[:], Detail: detail, State: state, DueAt: due, ReceivedAt: now,
				})
				if err != nil {
					return err
				}
				if added {
					accepted++
				} else {
					duplicates++
				}
			}
		}
		next, err := tx.FinishTriggerPoll(ctx, store.FinishTriggerPollParams{OrgID: a.OrgID, Source: SourceWorkday,
			ExpectNextRunAt: poll.NextRunAt, Err: errText, Cursor: now, NextRunAt: now.Add(poll.Interval), At: now})
		if errors.Is(err, store.ErrConflict) {
			return errSuperseded
		}
		if err != nil {
			return err
		}
		return s.enqueuePoll(ctx, txh, next)
	})
	if errors.Is(err, errSuperseded) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording workday poll of org %s: %w", a.OrgID, err)
	}
	if fetchErr != nil {
		s.log.Warn("workday poll failed; the next run is scheduled", "org", a.OrgID, "err", fetchErr)
	} else {
		s.log.Info("workday polled", "org", a.OrgID, "terminations", len(entries), "accepted", accepted, "duplicates", duplicates)
	}
	return nil
}
