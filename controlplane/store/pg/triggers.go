package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/internal/cursor"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed triggers.sql
	triggersSQL     string
	triggersQueries = sqlq.MustParse(triggersSQL)

	qPutTriggerIntegration     = triggersQueries.MustGet("PutTriggerIntegration")
	qGetTriggerIntegration     = triggersQueries.MustGet("GetTriggerIntegration")
	qTriggerHookOrg            = triggersQueries.MustGet("TriggerHookOrg")
	qListTriggerIntegrations   = triggersQueries.MustGet("ListTriggerIntegrations")
	qDeleteTriggerIntegration  = triggersQueries.MustGet("DeleteTriggerIntegration")
	qRecordTriggerDelivery     = triggersQueries.MustGet("RecordTriggerDelivery")
	qAddTriggerEvent           = triggersQueries.MustGet("AddTriggerEvent")
	qGetTriggerEventByVendorID = triggersQueries.MustGet("GetTriggerEventByVendorID")
	qGetTriggerEvent           = triggersQueries.MustGet("GetTriggerEvent")
	qUpdateTriggerEvent        = triggersQueries.MustGet("UpdateTriggerEvent")
	qListTriggerEvents         = triggersQueries.MustGet("ListTriggerEvents")
	qPutTriggerIdentity        = triggersQueries.MustGet("PutTriggerIdentity")
	qGetTriggerIdentity        = triggersQueries.MustGet("GetTriggerIdentity")
	qPutTriggerPoll            = triggersQueries.MustGet("PutTriggerPoll")
	qGetTriggerPoll            = triggersQueries.MustGet("GetTriggerPoll")
	qFinishTriggerPoll         = triggersQueries.MustGet("FinishTriggerPoll")
	qListTriggerPollSchedules  = triggersQueries.MustGet("ListTriggerPollSchedules")
)

// PutTriggerIntegration creates or replaces the org's integration of the
// kind, keeping when it was first created.
func (s *Store) PutTriggerIntegration(ctx context.Context, p store.PutTriggerIntegrationParams) (store.TriggerIntegration, error) {
	in, err := orgRow(ctx, s, p.OrgID, scanTriggerIntegration, qPutTriggerIntegration,
		p.OrgID, p.Kind, optString(p.HookID), []byte(p.Settings), p.SealedSecrets, ts(p.At))
	if err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("putting %s integration of org %s: %w", p.Kind, p.OrgID, translate(err))
	}
	return in, nil
}

// GetTriggerIntegration returns the org's integration of the kind.
func (s *Store) GetTriggerIntegration(ctx context.Context, orgID, kind string) (store.TriggerIntegration, error) {
	in, err := orgRow(ctx, s, orgID, scanTriggerIntegration, qGetTriggerIntegration, orgID, kind)
	if err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("getting %s integration of org %s: %w", kind, orgID, translate(err))
	}
	return in, nil
}

// GetTriggerIntegrationByHook finds the org of the hook id through a
// function that returns only that (migration 009), then reads the
// integration in that org.
func (s *Store) GetTriggerIntegrationByHook(ctx context.Context, hookID string) (store.TriggerIntegration, error) {
	if hookID == "" {
		return store.TriggerIntegration{}, fmt.Errorf("getting integration by hook: %w", store.ErrNotFound)
	}
	var orgID, kind string
	if err := s.q.QueryRow(ctx, qTriggerHookOrg, hookID).Scan(&orgID, &kind); err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("getting integration by hook: %w", translate(err))
	}
	return s.GetTriggerIntegration(ctx, orgID, kind)
}

// ListTriggerIntegrations returns the org's integrations by kind.
func (s *Store) ListTriggerIntegrations(ctx context.Context, orgID string) ([]store.TriggerIntegration, error) {
	ins, err := orgList(ctx, s, orgID, scanTriggerIntegration, qListTriggerIntegrations, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing integrations of org %s: %w", orgID, translate(err))
	}
	return ins, nil
}

// DeleteTriggerIntegration removes the integration and its poll status.
func (s *Store) DeleteTriggerIntegration(ctx context.Context, orgID, kind string) error {
	if err := s.orgExecOne(ctx, orgID, qDeleteTriggerIntegration, orgID, kind); err != nil {
		return fmt.Errorf("deleting %s integration of org %s: %w", kind, orgID, err)
	}
	return nil
}

func scanTriggerIntegration(r rowScanner) (store.TriggerIntegration, error) {
	var (
		in               store.TriggerIntegration
		hook             *string
		settings         []byte
		created, updated time.Time
	)
	if err := r.Scan(&in.OrgID, &in.Kind, &hook, &settings, &in.SealedSecrets, &created, &updated); err != nil {
		return store.TriggerIntegration{}, err
	}
	if hook != nil {
		in.HookID = *hook
	}
	in.Settings = settings
	in.CreatedAt, in.UpdatedAt = fromTS(created), fromTS(updated)
	return in, nil
}

// RecordTriggerDelivery records a delivery; a repeated id is ErrConflict.
func (s *Store) RecordTriggerDelivery(ctx context.Context, p store.RecordTriggerDeliveryParams) error {
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, qRecordTriggerDelivery, p.OrgID, p.Source, p.DeliveryID, p.PayloadSHA256, p.Events, p.Accepted, ts(p.ReceivedAt))
		return translate(err)
	})
	if err != nil {
		return fmt.Errorf("recording %s delivery %s: %w", p.Source, p.DeliveryID, err)
	}
	return nil
}

// AddTriggerEvent puts the event in the inbox, or returns the one stored
// with the same vendor ids.
func (s *Store) AddTriggerEvent(ctx context.Context, p store.AddTriggerEventParams) (store.TriggerEvent, bool, error) {
	var (
		e     store.TriggerEvent
		added bool
	)
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		e, err = scanTriggerEvent(tx.QueryRow(ctx, qAddTriggerEvent,
			store.NewID("tev"), p.OrgID, p.Source, p.DeliveryID, p.Subject, p.VendorEventID, p.EventType, p.Email,
			p.PayloadSHA256, optJSON(p.Detail), string(p.State), optTS(p.DueAt), ts(p.ReceivedAt)))
		if err == nil {
			added = true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		e, err = scanTriggerEvent(tx.QueryRow(ctx, qGetTriggerEventByVendorID, p.OrgID, p.Source, p.Subject, p.VendorEventID))
		return translate(err)
	})
	if err != nil {
		return store.TriggerEvent{}, false, fmt.Errorf("adding %s event %s/%s: %w", p.Source, p.Subject, p.VendorEventID, err)
	}
	return e, added, nil
}

// GetTriggerEvent returns one inbox event.
func (s *Store) GetTriggerEvent(ctx context.Context, orgID, id string) (store.TriggerEvent, error) {
	e, err := orgRow(ctx, s, orgID, scanTriggerEvent, qGetTriggerEvent, orgID, id)
	if err != nil {
		return store.TriggerEvent{}, fmt.Errorf("getting trigger event %s: %w", id, translate(err))
	}
	return e, nil
}

// UpdateTriggerEvent records an event's progress, from the states given.
func (s *Store) UpdateTriggerEvent(ctx context.Context, p store.UpdateTriggerEventParams) (store.TriggerEvent, error) {
	from := make([]string, len(p.From))
	for i, st := range p.From {
		from[i] = string(st)
	}
	var e store.TriggerEvent
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		e, err = scanTriggerEvent(tx.QueryRow(ctx, qUpdateTriggerEvent,
			p.OrgID, p.ID, from, string(p.State), optTS(p.DueAt), p.Attempts, p.LastError, p.Email,
			optString(p.UserID), optString(p.LockoutID), optJSON(p.Detail), ts(p.At)))
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		// No row: the event is missing, or not in a state of From.
		if _, gerr := scanTriggerEvent(tx.QueryRow(ctx, qGetTriggerEvent, p.OrgID, p.ID)); gerr != nil {
			return translate(gerr)
		}
		return fmt.Errorf("%w: event is not in state %v", store.ErrConflict, p.From)
	})
	if err != nil {
		return store.TriggerEvent{}, fmt.Errorf("updating trigger event %s: %w", p.ID, err)
	}
	return e, nil
}

// ListTriggerEvents lists the org's inbox, newest first.
func (s *Store) ListTriggerEvents(ctx context.Context, p store.ListTriggerEventsParams) (store.TriggerEventPage, error) {
	limit := p.Limit
	switch {
	case limit <= 0:
		limit = defaultPageLimit
	case limit > maxPageLimit:
		limit = maxPageLimit
	}
	var (
		afterAt *time.Time
		afterID string
	)
	if p.Cursor != "" {
		at, id, err := cursor.Decode(p.Cursor)
		if err != nil {
			return store.TriggerEventPage{}, fmt.Errorf("listing trigger events of org %s: %w", p.OrgID, err)
		}
		afterAt, afterID = &at, id
	}
	es, err := orgList(ctx, s, p.OrgID, scanTriggerEvent, qListTriggerEvents,
		p.OrgID, p.Source, string(p.State), p.Email, afterAt, afterID, limit+1)
	if err != nil {
		return store.TriggerEventPage{}, fmt.Errorf("listing trigger events of org %s: %w", p.OrgID, translate(err))
	}
	page := store.TriggerEventPage{Events: es}
	if len(es) > limit {
		page.Events = es[:limit]
		last := es[limit-1]
		page.NextCursor = cursor.Encode(last.ReceivedAt, last.ID)
	}
	return page, nil
}

func scanTriggerEvent(r rowScanner) (store.TriggerEvent, error) {
	var (
		e                   store.TriggerEvent
		state               string
		attempts            int32
		detail              []byte
		due, processed      *time.Time
		userID, lockoutID   *string
		received, updatedAt time.Time
	)
	if err := r.Scan(&e.ID, &e.OrgID, &e.Source, &e.DeliveryID, &e.Subject, &e.VendorEventID, &e.EventType, &e.Email,
		&e.PayloadSHA256, &detail, &state, &due, &attempts, &e.LastError, &userID, &lockoutID,
		&received, &updatedAt, &processed); err != nil {
		return store.TriggerEvent{}, err
	}
	e.Detail = fromOptJSON(detail)
	e.State = store.TriggerEventState(state)
	e.DueAt = fromOptTS(due)
	e.Attempts = int(attempts)
	if userID != nil {
		e.UserID = *userID
	}
	if lockoutID != nil {
		e.LockoutID = *lockoutID
	}
	e.ReceivedAt, e.UpdatedAt = fromTS(received), fromTS(updatedAt)
	e.ProcessedAt = ptrFromOptTS(processed)
	return e, nil
}

// PutTriggerIdentity records which user the vendor's id names.
func (s *Store) PutTriggerIdentity(ctx context.Context, p store.PutTriggerIdentityParams) error {
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, qPutTriggerIdentity, p.OrgID, p.Source, p.ExternalID, p.UserID, ts(p.At))
		return translate(err)
	})
	if err != nil {
		return fmt.Errorf("putting %s identity %s: %w", p.Source, p.ExternalID, err)
	}
	return nil
}

// GetTriggerIdentity returns which user the vendor's id names.
func (s *Store) GetTriggerIdentity(ctx context.Context, orgID, source, externalID string) (store.TriggerIdentity, error) {
	id, err := orgRow(ctx, s, orgID, scanTriggerIdentity, qGetTriggerIdentity, orgID, source, externalID)
	if err != nil {
		return store.TriggerIdentity{}, fmt.Errorf("getting %s identity %s: %w", source, externalID, translate(err))
	}
	return id, nil
}

func scanTriggerIdentity(r rowScanner) (store.TriggerIdentity, error) {
	var (
		id               store.TriggerIdentity
		created, updated time.Time
	)
	if err := r.Scan(&id.OrgID, &id.Source, &id.ExternalID, &id.UserID, &created, &updated); err != nil {
		return store.TriggerIdentity{}, err
	}
	id.CreatedAt, id.UpdatedAt = fromTS(created), fromTS(updated)
	return id, nil
}

// PutTriggerPoll creates or reschedules a poller, keeping its history.
func (s *Store) PutTriggerPoll(ctx context.Context, p store.PutTriggerPollParams) (store.TriggerPoll, error) {
	tp, err := orgRow(ctx, s, p.OrgID, scanTriggerPoll, qPutTriggerPoll,
		p.OrgID, p.Source, int64(p.Interval/time.Second), ts(p.NextRunAt), ts(p.At))
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("putting %s poll of org %s: %w", p.Source, p.OrgID, translate(err))
	}
	return tp, nil
}

// GetTriggerPoll returns a poller's status.
func (s *Store) GetTriggerPoll(ctx context.Context, orgID, source string) (store.TriggerPoll, error) {
	tp, err := orgRow(ctx, s, orgID, scanTriggerPoll, qGetTriggerPoll, orgID, source)
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("getting %s poll of org %s: %w", source, orgID, translate(err))
	}
	return tp, nil
}

// FinishTriggerPoll records the due run's outcome and the next run.
func (s *Store) FinishTriggerPoll(ctx context.Context, p store.FinishTriggerPollParams) (store.TriggerPoll, error) {
	var tp store.TriggerPoll
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		tp, err = scanTriggerPoll(tx.QueryRow(ctx, qFinishTriggerPoll,
			p.OrgID, p.Source, ts(p.ExpectNextRunAt), p.Err, optTS(p.Cursor), ts(p.NextRunAt), ts(p.At)))
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		if _, gerr := scanTriggerPoll(tx.QueryRow(ctx, qGetTriggerPoll, p.OrgID, p.Source)); gerr != nil {
			return translate(gerr)
		}
		return fmt.Errorf("%w: the run due at %s is no longer the next one", store.ErrConflict, p.ExpectNextRunAt.UTC().Format(time.RFC3339Nano))
	})
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("finishing %s poll of org %s: %w", p.Source, p.OrgID, err)
	}
	return tp, nil
}

// ListTriggerPollSchedules lists every org's pollers through a function
// that returns only their org, source and next run (migration 009).
func (s *Store) ListTriggerPollSchedules(ctx context.Context) ([]store.TriggerPollSchedule, error) {
	out, err := queryList(ctx, s.q, qListTriggerPollSchedules, func(r rowScanner) (store.TriggerPollSchedule, error) {
		var (
			sc   store.TriggerPollSchedule
			next time.Time
		)
		err := r.Scan(&sc.OrgID, &sc.Source, &next)
		sc.NextRunAt = fromTS(next)
		return sc, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing poll schedules: %w", translate(err))
	}
	return out, nil
}

func scanTriggerPoll(r rowScanner) (store.TriggerPoll, error) {
	var (
		tp                   store.TriggerPoll
		interval             int64
		next, updated        time.Time
		lastRun, lastOK, cur *time.Time
	)
	if err := r.Scan(&tp.OrgID, &tp.Source, &interval, &next, &lastRun, &lastOK, &tp.LastError, &cur, &updated); err != nil {
		return store.TriggerPoll{}, err
	}
	tp.Interval = time.Duration(interval) * time.Second
	tp.NextRunAt, tp.UpdatedAt = fromTS(next), fromTS(updated)
	tp.LastRunAt, tp.LastSuccessAt, tp.Cursor = fromOptTS(lastRun), fromOptTS(lastOK), fromOptTS(cur)
	return tp, nil
}
