package pg

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/internal/cursor"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed pipeline.sql
	pipelineSQL     string
	pipelineQueries = sqlq.MustParse(pipelineSQL)

	qInitLockoutStep          = pipelineQueries.MustGet("InitLockoutStep")
	qUpdateLockoutStep        = pipelineQueries.MustGet("UpdateLockoutStep")
	qListLockoutSteps         = pipelineQueries.MustGet("ListLockoutSteps")
	qPutProviderRevocation    = pipelineQueries.MustGet("PutProviderRevocation")
	qGetProviderRevocation    = pipelineQueries.MustGet("GetProviderRevocation")
	qListProviderRevocations  = pipelineQueries.MustGet("ListProviderRevocations")
	qAddLockoutTrigger        = pipelineQueries.MustGet("AddLockoutTrigger")
	qListLockoutTriggers      = pipelineQueries.MustGet("ListLockoutTriggers")
	qListLockoutsPage         = pipelineQueries.MustGet("ListLockoutsPage")
	qPutProviderConnection    = pipelineQueries.MustGet("PutProviderConnection")
	qGetProviderConnection    = pipelineQueries.MustGet("GetProviderConnection")
	qListProviderConnections  = pipelineQueries.MustGet("ListProviderConnections")
	qDeleteProviderConnection = pipelineQueries.MustGet("DeleteProviderConnection")
)

// Page sizes of ListLockoutsPage.
const (
	defaultPageLimit = 50
	maxPageLimit     = 500
)

// InitLockoutSteps records the lockout's steps as pending, after any
// already recorded, leaving those as they are.
func (s *Store) InitLockoutSteps(ctx context.Context, p store.InitLockoutStepsParams) error {
	if len(p.Steps) == 0 {
		// Nothing to insert, so no foreign key to check the lockout: look.
		if _, err := s.GetLockout(ctx, p.OrgID, p.LockoutID); err != nil {
			return fmt.Errorf("initializing steps of lockout %s: %w", p.LockoutID, err)
		}
		return nil
	}
	// All the steps or none, inside InTx too.
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		for _, step := range p.Steps {
			if _, err := tx.Exec(ctx, qInitLockoutStep, p.OrgID, p.LockoutID, step, ts(p.At)); err != nil {
				return fmt.Errorf("step %s: %w", step, translate(err))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initializing steps of lockout %s: %w", p.LockoutID, err)
	}
	return nil
}

// UpdateLockoutStep sets a step's state, attempts and error.
func (s *Store) UpdateLockoutStep(ctx context.Context, p store.UpdateLockoutStepParams) (store.LockoutStep, error) {
	st, err := orgRow(ctx, s, p.OrgID, scanLockoutStep, qUpdateLockoutStep,
		p.OrgID, p.LockoutID, p.Step, string(p.State), p.Attempts, p.LastError, ts(p.At))
	if err != nil {
		return store.LockoutStep{}, fmt.Errorf("updating step %s of lockout %s: %w", p.Step, p.LockoutID, translate(err))
	}
	return st, nil
}

// ListLockoutSteps returns the lockout's steps in the order they were
// initialized.
func (s *Store) ListLockoutSteps(ctx context.Context, orgID, lockoutID string) ([]store.LockoutStep, error) {
	sts, err := orgList(ctx, s, orgID, scanLockoutStep, qListLockoutSteps, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing steps of lockout %s: %w", lockoutID, translate(err))
	}
	return sts, nil
}

func scanLockoutStep(r rowScanner) (store.LockoutStep, error) {
	var (
		st                store.LockoutStep
		state             string
		attempts          int32
		started, finished *time.Time
		updated           time.Time
	)
	err := r.Scan(&st.OrgID, &st.LockoutID, &st.Step, &state, &attempts, &st.LastError,
		&started, &finished, &updated)
	if err != nil {
		return store.LockoutStep{}, err
	}
	st.State = store.StepState(state)
	st.Attempts = int(attempts)
	st.StartedAt = ptrFromOptTS(started)
	st.FinishedAt = ptrFromOptTS(finished)
	st.UpdatedAt = fromTS(updated)
	return st, nil
}

// PutProviderRevocation creates or replaces the provider's revocation
// record for the lockout, keeping when it was first created. The
// confirmation is jsonb: it reads back equivalent, not byte for byte.
func (s *Store) PutProviderRevocation(ctx context.Context, p store.PutProviderRevocationParams) (store.ProviderRevocation, error) {
	r, err := orgRow(ctx, s, p.OrgID, scanProviderRevocation, qPutProviderRevocation,
		p.OrgID, p.LockoutID, p.Provider, string(p.State), p.Attempts, optJSON(p.Confirmation),
		p.LastError, ts(p.At))
	if err != nil {
		return store.ProviderRevocation{}, fmt.Errorf("putting %s revocation of lockout %s: %w", p.Provider, p.LockoutID, translate(err))
	}
	return r, nil
}

// GetProviderRevocation returns the provider's revocation record for the
// lockout.
func (s *Store) GetProviderRevocation(ctx context.Context, orgID, lockoutID, provider string) (store.ProviderRevocation, error) {
	r, err := orgRow(ctx, s, orgID, scanProviderRevocation, qGetProviderRevocation, orgID, lockoutID, provider)
	if err != nil {
		return store.ProviderRevocation{}, fmt.Errorf("getting %s revocation of lockout %s: %w", provider, lockoutID, translate(err))
	}
	return r, nil
}

// ListProviderRevocations returns the lockout's revocations by provider name.
func (s *Store) ListProviderRevocations(ctx context.Context, orgID, lockoutID string) ([]store.ProviderRevocation, error) {
	rs, err := orgList(ctx, s, orgID, scanProviderRevocation, qListProviderRevocations, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing revocations of lockout %s: %w", lockoutID, translate(err))
	}
	return rs, nil
}

func scanProviderRevocation(r rowScanner) (store.ProviderRevocation, error) {
	var (
		rev              store.ProviderRevocation
		state            string
		attempts         int32
		confirmation     []byte
		created, updated time.Time
	)
	err := r.Scan(&rev.OrgID, &rev.LockoutID, &rev.Provider, &state, &attempts, &confirmation,
		&rev.LastError, &created, &updated)
	if err != nil {
		return store.ProviderRevocation{}, err
	}
	rev.State = store.RevocationState(state)
	rev.Attempts = int(attempts)
	rev.Confirmation = fromOptJSON(confirmation)
	rev.CreatedAt = fromTS(created)
	rev.UpdatedAt = fromTS(updated)
	return rev, nil
}

// AddLockoutTrigger records that something asked for the lockout.
func (s *Store) AddLockoutTrigger(ctx context.Context, p store.AddLockoutTriggerParams) error {
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, qAddLockoutTrigger, p.OrgID, p.LockoutID, p.Source, optJSON(p.Evidence), ts(p.At))
		return err
	})
	if err != nil {
		return fmt.Errorf("adding %q trigger to lockout %s: %w", p.Source, p.LockoutID, translate(err))
	}
	return nil
}

// ListLockoutTriggers returns the lockout's triggers, oldest first.
func (s *Store) ListLockoutTriggers(ctx context.Context, orgID, lockoutID string) ([]store.LockoutTrigger, error) {
	trs, err := orgList(ctx, s, orgID, scanLockoutTrigger, qListLockoutTriggers, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing triggers of lockout %s: %w", lockoutID, translate(err))
	}
	return trs, nil
}

func scanLockoutTrigger(r rowScanner) (store.LockoutTrigger, error) {
	var (
		tr       store.LockoutTrigger
		evidence []byte
		at       time.Time
	)
	if err := r.Scan(&tr.OrgID, &tr.LockoutID, &tr.Source, &evidence, &at); err != nil {
		return store.LockoutTrigger{}, err
	}
	tr.Evidence = fromOptJSON(evidence)
	tr.At = fromTS(at)
	return tr, nil
}

// ListLockoutsPage lists the org's lockouts newest first, one page at a
// time. A cursor the store did not issue gives an error.
func (s *Store) ListLockoutsPage(ctx context.Context, p store.ListLockoutsParams) (store.LockoutPage, error) {
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
			return store.LockoutPage{}, fmt.Errorf("listing lockouts of org %s: %w", p.OrgID, err)
		}
		afterAt, afterID = &at, id
	}
	// One row more than the page tells whether another page follows.
	ls, err := orgList(ctx, s, p.OrgID, scanLockout, qListLockoutsPage,
		p.OrgID, string(p.State), p.UserID, afterAt, afterID, limit+1)
	if err != nil {
		return store.LockoutPage{}, fmt.Errorf("listing lockouts of org %s: %w", p.OrgID, translate(err))
	}
	page := store.LockoutPage{Lockouts: ls}
	if len(ls) > limit {
		page.Lockouts = ls[:limit]
		last := ls[limit-1]
		page.NextCursor = cursor.Encode(last.CreatedAt, last.ID)
	}
	return page, nil
}

// PutProviderConnection creates or replaces the org's connection to the
// provider, keeping when it was first created.
func (s *Store) PutProviderConnection(ctx context.Context, p store.PutProviderConnectionParams) (store.ProviderConnection, error) {
	c, err := orgRow(ctx, s, p.OrgID, scanProviderConnection, qPutProviderConnection,
		p.OrgID, p.Provider, p.SealedKey, p.KeyHint, p.BaseURL, ts(p.At), optTS(p.ValidatedAt))
	if err != nil {
		return store.ProviderConnection{}, fmt.Errorf("putting %s connection of org %s: %w", p.Provider, p.OrgID, translate(err))
	}
	return c, nil
}

// GetProviderConnection returns the org's connection to the provider.
func (s *Store) GetProviderConnection(ctx context.Context, orgID, provider string) (store.ProviderConnection, error) {
	c, err := orgRow(ctx, s, orgID, scanProviderConnection, qGetProviderConnection, orgID, provider)
	if err != nil {
		return store.ProviderConnection{}, fmt.Errorf("getting %s connection of org %s: %w", provider, orgID, translate(err))
	}
	return c, nil
}

// ListProviderConnections returns the org's connections by provider name.
func (s *Store) ListProviderConnections(ctx context.Context, orgID string) ([]store.ProviderConnection, error) {
	cs, err := orgList(ctx, s, orgID, scanProviderConnection, qListProviderConnections, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing provider connections of org %s: %w", orgID, translate(err))
	}
	return cs, nil
}

// DeleteProviderConnection removes the org's connection to the provider.
func (s *Store) DeleteProviderConnection(ctx context.Context, orgID, provider string) error {
	if err := s.orgExecOne(ctx, orgID, qDeleteProviderConnection, orgID, provider); err != nil {
		return fmt.Errorf("deleting %s connection of org %s: %w", provider, orgID, err)
	}
	return nil
}

func scanProviderConnection(r rowScanner) (store.ProviderConnection, error) {
	var (
		c                store.ProviderConnection
		created, updated time.Time
		validated        *time.Time
	)
	err := r.Scan(&c.OrgID, &c.Provider, &c.SealedKey, &c.KeyHint, &c.BaseURL, &created, &updated, &validated)
	if err != nil {
		return store.ProviderConnection{}, err
	}
	c.CreatedAt = fromTS(created)
	c.UpdatedAt = fromTS(updated)
	c.ValidatedAt = fromOptTS(validated)
	return c, nil
}

// JSON documents go to jsonb as their text, NULL when there is none.

func optJSON(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return []byte(m)
}

func fromOptJSON(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}

var (
	qPutUsageCapture   = pipelineQueries.MustGet("PutUsageCapture")
	qListUsageCaptures = pipelineQueries.MustGet("ListUsageCaptures")
)

// PutUsageCapture creates or replaces the provider's usage capture for the
// lockout, keeping when it was first created.
func (s *Store) PutUsageCapture(ctx context.Context, p store.PutUsageCaptureParams) (store.UsageCapture, error) {
	c, err := orgRow(ctx, s, p.OrgID, scanUsageCapture, qPutUsageCapture,
		p.OrgID, p.LockoutID, p.Provider, string(p.State), p.Attempts, ts(p.WindowFrom), ts(p.WindowTo),
		optJSON(p.Capture), p.LastError, ts(p.At))
	if err != nil {
		return store.UsageCapture{}, fmt.Errorf("putting %s usage capture of lockout %s: %w", p.Provider, p.LockoutID, translate(err))
	}
	return c, nil
}

// ListUsageCaptures returns the lockout's usage captures by provider name.
func (s *Store) ListUsageCaptures(ctx context.Context, orgID, lockoutID string) ([]store.UsageCapture, error) {
	cs, err := orgList(ctx, s, orgID, scanUsageCapture, qListUsageCaptures, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing usage captures of lockout %s: %w", lockoutID, translate(err))
	}
	return cs, nil
}

func scanUsageCapture(r rowScanner) (store.UsageCapture, error) {
	var (
		c                          store.UsageCapture
		state                      string
		attempts                   int32
		capture                    []byte
		from, to, created, updated time.Time
	)
	if err := r.Scan(&c.OrgID, &c.LockoutID, &c.Provider, &state, &attempts, &from, &to, &capture,
		&c.LastError, &created, &updated); err != nil {
		return store.UsageCapture{}, err
	}
	c.State = store.CaptureState(state)
	c.Attempts = int(attempts)
	c.WindowFrom, c.WindowTo = from.UTC(), to.UTC()
	c.Capture = fromOptJSON(capture)
	c.CreatedAt, c.UpdatedAt = created.UTC(), updated.UTC()
	return c, nil
}
