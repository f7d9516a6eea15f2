package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/toktra/toktra/controlplane/store"
)

var (
	qCreateLockout   = queries.MustGet("CreateLockout")
	qGetOpenLockout  = queries.MustGet("GetOpenLockout")
	qGetLockout      = queries.MustGet("GetLockout")
	qListLockouts    = queries.MustGet("ListLockouts")
	qOverrideLockout = queries.MustGet("OverrideLockout")
	qGetPolicy       = queries.MustGet("GetPolicy")
	qPutPolicy       = queries.MustGet("PutPolicy")
)

// CreateLockout returns the user's open lockout if there is one, else
// creates it.
func (s *Store) CreateLockout(ctx context.Context, p store.CreateLockoutParams) (store.Lockout, bool, error) {
	var (
		l       store.Lockout
		created bool
	)
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		l, err = scanLockout(tx.QueryRowContext(ctx, qCreateLockout,
			store.NewID("lck"), p.OrgID, p.UserID, p.Trigger, micros(p.CreatedAt)))
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		// The insert did nothing: the user has an open lockout.
		l, err = scanLockout(tx.QueryRowContext(ctx, qGetOpenLockout, p.OrgID, p.UserID))
		return translate(err)
	})
	if err != nil {
		return store.Lockout{}, false, fmt.Errorf("creating lockout of user %s: %w", p.UserID, err)
	}
	return l, created, nil
}

// GetLockout returns the org's lockout with the given id.
func (s *Store) GetLockout(ctx context.Context, orgID, id string) (store.Lockout, error) {
	l, err := scanLockout(s.reader.QueryRowContext(ctx, qGetLockout, orgID, id))
	if err != nil {
		return store.Lockout{}, fmt.Errorf("getting lockout %s: %w", id, translate(err))
	}
	return l, nil
}

// ListLockouts returns the org's lockouts, oldest first.
func (s *Store) ListLockouts(ctx context.Context, orgID string) ([]store.Lockout, error) {
	ls, err := queryList(ctx, s.reader, qListLockouts, scanLockout, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing lockouts of org %s: %w", orgID, translate(err))
	}
	return ls, nil
}

// OverrideLockout closes an open lockout; a lockout that is not open gives
// store.ErrConflict.
func (s *Store) OverrideLockout(ctx context.Context, p store.OverrideLockoutParams) (store.Lockout, error) {
	l, err := scanLockout(s.writer.QueryRowContext(ctx, qOverrideLockout, p.OrgID, p.ID, p.Reason, p.Actor, micros(p.At)))
	if errors.Is(err, sql.ErrNoRows) {
		if _, err = s.GetLockout(ctx, p.OrgID, p.ID); err == nil {
			err = fmt.Errorf("%w: lockout is not open", store.ErrConflict)
		}
	}
	if err != nil {
		return store.Lockout{}, fmt.Errorf("overriding lockout %s: %w", p.ID, translate(err))
	}
	return l, nil
}

func scanLockout(r rowScanner) (store.Lockout, error) {
	var (
		l          store.Lockout
		state      string
		created    int64
		overridden sql.NullInt64
	)
	err := r.Scan(&l.ID, &l.OrgID, &l.UserID, &state, &l.Trigger, &created, &overridden,
		&l.OverrideReason, &l.OverrideActor)
	if err != nil {
		return store.Lockout{}, err
	}
	l.State = store.LockoutState(state)
	l.CreatedAt = fromMicros(created)
	l.OverriddenAt = ptrFromOptMicros(overridden)
	return l, nil
}

// GetPolicy returns the org's policy, or Version 0 when it has none.
func (s *Store) GetPolicy(ctx context.Context, orgID string) (store.Policy, error) {
	var (
		p              store.Policy
		version        sql.NullInt64
		domains, cidrs sql.NullString
		updated        sql.NullInt64
	)
	err := s.reader.QueryRowContext(ctx, qGetPolicy, orgID).Scan(&p.OrgID, &version, &domains, &cidrs, &updated)
	if err != nil {
		return store.Policy{}, fmt.Errorf("getting policy of org %s: %w", orgID, translate(err))
	}
	if !version.Valid {
		return p, nil
	}
	if err := fillPolicy(&p, version.Int64, domains.String, cidrs.String, updated.Int64); err != nil {
		return store.Policy{}, fmt.Errorf("getting policy of org %s: %w", orgID, err)
	}
	return p, nil
}

// PutPolicy replaces the org's policy and increments its version.
func (s *Store) PutPolicy(ctx context.Context, p store.PutPolicyParams) (store.Policy, error) {
	domains, err := encodeList(p.Domains)
	if err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: domains: %w", p.OrgID, err)
	}
	cidrs, err := encodeList(p.CIDRs)
	if err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: cidrs: %w", p.OrgID, err)
	}
	var (
		out              store.Policy
		version, updated int64
		gotD, gotC       string
	)
	err = s.writer.QueryRowContext(ctx, qPutPolicy, p.OrgID, domains, cidrs, micros(p.UpdatedAt)).
		Scan(&out.OrgID, &version, &gotD, &gotC, &updated)
	if err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: %w", p.OrgID, translate(err))
	}
	if err := fillPolicy(&out, version, gotD, gotC, updated); err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: %w", p.OrgID, err)
	}
	return out, nil
}

func fillPolicy(p *store.Policy, version int64, domains, cidrs string, updated int64) error {
	p.Version = uint64(version)
	p.UpdatedAt = fromMicros(updated)
	if err := json.Unmarshal([]byte(domains), &p.Domains); err != nil {
		return fmt.Errorf("decoding domains: %w", err)
	}
	if err := json.Unmarshal([]byte(cidrs), &p.CIDRs); err != nil {
		return fmt.Errorf("decoding cidrs: %w", err)
	}
	if len(p.Domains) == 0 {
		p.Domains = nil
	}
	if len(p.CIDRs) == 0 {
		p.CIDRs = nil
	}
	return nil
}

func encodeList(l []string) (string, error) {
	if l == nil {
		l = []string{}
	}
	b, err := json.Marshal(l)
	return string(b), err
}
