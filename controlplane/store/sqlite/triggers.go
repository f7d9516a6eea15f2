package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
	in, err := scanTriggerIntegration(s.writer.QueryRowContext(ctx, qPutTriggerIntegration,
		p.OrgID, p.Kind, optString(p.HookID), string(p.Settings), p.SealedSecrets, micros(p.At)))
	if err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("putting %s integration of org %s: %w", p.Kind, p.OrgID, translate(err))
	}
	return in, nil
}

// GetTriggerIntegration returns the org's integration of the kind.
func (s *Store) GetTriggerIntegration(ctx context.Context, orgID, kind string) (store.TriggerIntegration, error) {
	in, err := scanTriggerIntegration(s.reader.QueryRowContext(ctx, qGetTriggerIntegration, orgID, kind))
	if err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("getting %s integration of org %s: %w", kind, orgID, translate(err))
	}
	return in, nil
}

// GetTriggerIntegrationByHook finds the integration by its hook id, in any org.
func (s *Store) GetTriggerIntegrationByHook(ctx context.Context, hookID string) (store.TriggerIntegration, error) {
	if hookID == "" {
		return store.TriggerIntegration{}, fmt.Errorf("getting integration by hook: %w", store.ErrNotFound)
	}
	var orgID, kind string
	if err := s.reader.QueryRowContext(ctx, qTriggerHookOrg, hookID).Scan(&orgID, &kind); err != nil {
		return store.TriggerIntegration{}, fmt.Errorf("getting integration by hook: %w", translate(err))
	}
	return s.GetTriggerIntegration(ctx, orgID, kind)
}

// ListTriggerIntegrations returns the org's integrations by kind.
func (s *Store) ListTriggerIntegrations(ctx context.Context, orgID string) ([]store.TriggerIntegration, error) {
	ins, err := queryList(ctx, s.reader, qListTriggerIntegrations, scanTriggerIntegration, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing integrations of org %s: %w", orgID, translate(err))
	}
	return ins, nil
}

// DeleteTriggerIntegration removes the integration and its poll status.
func (s *Store) DeleteTriggerIntegration(ctx context.Context, orgID, kind string) error {
	if err := execOne(ctx, s.writer, qDeleteTriggerIntegration, orgID, kind); err != nil {
		return fmt.Errorf("deleting %s integration of org %s: %w", kind, orgID, err)
	}
	return nil
}

func scanTriggerIntegration(r rowScanner) (store.TriggerIntegration, error) {
	var (
		in               store.TriggerIntegration
		hook             sql.NullString
		settings         string
		created, updated int64
	)
	if err := r.Scan(&in.OrgID, &in.Kind, &hook, &settings, &in.SealedSecrets, &created, &updated); err != nil {
		return store.TriggerIntegration{}, err
	}
	in.HookID = hook.String
	in.Settings = json.RawMessage(settings)
	in.CreatedAt, in.UpdatedAt = fromMicros(created), fromMicros(updated)
	return in, nil
}

// RecordTriggerDelivery records a delivery; a repeated id is ErrConflict.
func (s *Store) RecordTriggerDelivery(ctx context.Context, p store.RecordTriggerDeliveryParams) error {
	if _, err := s.writer.ExecContext(ctx, qRecordTriggerDelivery,
		p.OrgID, p.Source, p.DeliveryID, p.PayloadSHA256, p.Events, p.Accepted, micros(p.ReceivedAt)); err != nil {
		return fmt.Errorf("recording %s delivery %s: %w", p.Source, p.DeliveryID, translate(err))
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
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		e, err = scanTriggerEvent(tx.QueryRowContext(ctx, qAddTriggerEvent,
			store.NewID("tev"), p.OrgID, p.Source, p.DeliveryID, p.Subject, p.VendorEventID, p.EventType, p.Email,
			p.PayloadSHA256, optJSON(p.Detail), string(p.State), optMicros(p.DueAt), micros(p.ReceivedAt)))
		if err == nil {
			added = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		e, err = scanTriggerEvent(tx.QueryRowContext(ctx, qGetTriggerEventByVendorID, p.OrgID, p.Source, p.Subject, p.VendorEventID))
		return translate(err)
	})
	if err != nil {
		return store.TriggerEvent{}, false, fmt.Errorf("adding %s event %s/%s: %w", p.Source, p.Subject, p.VendorEventID, err)
	}
	return e, added, nil
}

// GetTriggerEvent returns one inbox event.
func (s *Store) GetTriggerEvent(ctx context.Context, orgID, id string) (store.TriggerEvent, error) {
	e, err := scanTriggerEvent(s.reader.QueryRowContext(ctx, qGetTriggerEvent, orgID, id))
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
	fromJSON, err := json.Marshal(from)
	if err != nil {
		return store.TriggerEvent{}, err
	}
	var e store.TriggerEvent
	err = inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		e, err = scanTriggerEvent(tx.QueryRowContext(ctx, qUpdateTriggerEvent,
			p.OrgID, p.ID, string(fromJSON), string(p.State), optMicros(p.DueAt), p.Attempts, p.LastError, p.Email,
			optString(p.UserID), optString(p.LockoutID), optJSON(p.Detail), micros(p.At)))
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		if _, gerr := scanTriggerEvent(tx.QueryRowContext(ctx, qGetTriggerEvent, p.OrgID, p.ID)); gerr != nil {
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
		afterAt any
		afterID string
	)
	if p.Cursor != "" {
		at, id, err := cursor.Decode(p.Cursor)
		if err != nil {
			return store.TriggerEventPage{}, fmt.Errorf("listing trigger events of org %s: %w", p.OrgID, err)
		}
		afterAt, afterID = micros(at), id
	}
	es, err := queryList(ctx, s.reader, qListTriggerEvents, scanTriggerEvent,
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
		detail              sql.NullString
		due, processed      sql.NullInt64
		userID, lockoutID   sql.NullString
		received, updatedAt int64
	)
	if err := r.Scan(&e.ID, &e.OrgID, &e.Source, &e.DeliveryID, &e.Subject, &e.VendorEventID, &e.EventType, &e.Email,
		&e.PayloadSHA256, &detail, &state, &due, &e.Attempts, &e.LastError, &userID, &lockoutID,
		&received, &updatedAt, &processed); err != nil {
		return store.TriggerEvent{}, err
	}
	e.Detail = fromOptJSON(detail)
	e.State = store.TriggerEventState(state)
	e.DueAt = fromOptMicros(due)
	e.UserID, e.LockoutID = userID.String, lockoutID.String
	e.ReceivedAt, e.UpdatedAt = fromMicros(received), fromMicros(updatedAt)
	e.ProcessedAt = ptrFromOptMicros(processed)
	return e, nil
}

// PutTriggerIdentity records which user the vendor's id names.
func (s *Store) PutTriggerIdentity(ctx context.Context, p store.PutTriggerIdentityParams) error {
	if _, err := s.writer.ExecContext(ctx, qPutTriggerIdentity, p.OrgID, p.Source, p.ExternalID, p.UserID, micros(p.At)); err != nil {
		return fmt.Errorf("putting %s identity %s: %w", p.Source, p.ExternalID, translate(err))
	}
	return nil
}

// GetTriggerIdentity returns which user the vendor's id names.
func (s *Store) GetTriggerIdentity(ctx context.Context, orgID, source, externalID string) (store.TriggerIdentity, error) {
	var (
		id               store.TriggerIdentity
		created, updated int64
	)
	err := s.reader.QueryRowContext(ctx, qGetTriggerIdentity, orgID, source, externalID).
		Scan(&id.OrgID, &id.Source, &id.ExternalID, &id.UserID, &created, &updated)
	if err != nil {
		return store.TriggerIdentity{}, fmt.Errorf("getting %s identity %s: %w", source, externalID, translate(err))
	}
	id.CreatedAt, id.UpdatedAt = fromMicros(created), fromMicros(updated)
	return id, nil
}

// PutTriggerPoll creates or reschedules a poller, keeping its history.
func (s *Store) PutTriggerPoll(ctx context.Context, p store.PutTriggerPollParams) (store.TriggerPoll, error) {
	tp, err := scanTriggerPoll(s.writer.QueryRowContext(ctx, qPutTriggerPoll,
		p.OrgID, p.Source, int64(p.Interval/time.Second), micros(p.NextRunAt), micros(p.At)))
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("putting %s poll of org %s: %w", p.Source, p.OrgID, translate(err))
	}
	return tp, nil
}

// GetTriggerPoll returns a poller's status.
func (s *Store) GetTriggerPoll(ctx context.Context, orgID, source string) (store.TriggerPoll, error) {
	tp, err := scanTriggerPoll(s.reader.QueryRowContext(ctx, qGetTriggerPoll, orgID, source))
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("getting %s poll of org %s: %w", source, orgID, translate(err))
	}
	return tp, nil
}

// FinishTriggerPoll records the due run's outcome and the next run.
func (s *Store) FinishTriggerPoll(ctx context.Context, p store.FinishTriggerPollParams) (store.TriggerPoll, error) {
	var tp store.TriggerPoll
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		tp, err = scanTriggerPoll(tx.QueryRowContext(ctx, qFinishTriggerPoll,
			p.OrgID, p.Source, micros(p.ExpectNextRunAt), p.Err, optMicros(p.Cursor), micros(p.NextRunAt), micros(p.At)))
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		if _, gerr := scanTriggerPoll(tx.QueryRowContext(ctx, qGetTriggerPoll, p.OrgID, p.Source)); gerr != nil {
			return translate(gerr)
		}
		return fmt.Errorf("%w: the run due at %s is no longer the next one", store.ErrConflict, p.ExpectNextRunAt.UTC().Format(time.RFC3339Nano))
	})
	if err != nil {
		return store.TriggerPoll{}, fmt.Errorf("finishing %s poll of org %s: %w", p.Source, p.OrgID, err)
	}
	return tp, nil
}

// ListTriggerPollSchedules lists every org's pollers and their next run.
func (s *Store) ListTriggerPollSchedules(ctx context.Context) ([]store.TriggerPollSchedule, error) {
	out, err := queryList(ctx, s.reader, qListTriggerPollSchedules, func(r rowScanner) (store.TriggerPollSchedule, error) {
		var (
			sc   store.TriggerPollSchedule
			next int64
		)
		err := r.Scan(&sc.OrgID, &sc.Source, &next)
		sc.NextRunAt = fromMicros(next)
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
		next, updated        int64
		lastRun, lastOK, cur sql.NullInt64
	)
	if err := r.Scan(&tp.OrgID, &tp.Source, &interval, &next, &lastRun, &lastOK, &tp.LastError, &cur, &updated); err != nil {
		return store.TriggerPoll{}, err
	}
	tp.Interval = time.Duration(interval) * time.Second
	tp.NextRunAt, tp.UpdatedAt = fromMicros(next), fromMicros(updated)
	tp.LastRunAt, tp.LastSuccessAt, tp.Cursor = fromOptMicros(lastRun), fromOptMicros(lastOK), fromOptMicros(cur)
	return tp, nil
}
