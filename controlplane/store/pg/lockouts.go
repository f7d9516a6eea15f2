package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
// creates it. The partial unique index on open lockouts settles races
// between replicas: the loser's insert does nothing and it reads the winner's.
func (s *Store) CreateLockout(ctx context.Context, p store.CreateLockoutParams) (store.Lockout, bool, error) {
	const attempts = 10
	var (
		l       store.Lockout
		created bool
	)
	// One transaction, READ COMMITTED: each statement sees what other
	// replicas committed before it, so the retries still make progress.
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		for range attempts {
			var err error
			l, err = scanLockout(tx.QueryRow(ctx, qCreateLockout,
				store.NewID("lck"), p.OrgID, p.UserID, p.Trigger, ts(p.CreatedAt)))
			if err == nil {
				created = true
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return translate(err)
			}
			l, err = scanLockout(tx.QueryRow(ctx, qGetOpenLockout, p.OrgID, p.UserID))
			if err == nil {
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return translate(err)
			}
			// The open lockout was overridden between the two statements: the
			// next insert can succeed.
		}
		return fmt.Errorf("open lockout kept changing over %d attempts", attempts)
	})
	if err != nil {
		return store.Lockout{}, false, fmt.Errorf("creating lockout of user %s: %w", p.UserID, err)
	}
	return l, created, nil
}

// GetLockout returns the org's lockout with the given id.
func (s *Store) GetLockout(ctx context.Context, orgID, id string) (store.Lockout, error) {
	l, err := orgRow(ctx, s, orgID, scanLockout, qGetLockout, orgID, id)
	if err != nil {
		return store.Lockout{}, fmt.Errorf("getting lockout %s: %w", id, translate(err))
	}
	return l, nil
}

// ListLockouts returns the org's lockouts, oldest first.
func (s *Store) ListLockouts(ctx context.Context, orgID string) ([]store.Lockout, error) {
	ls, err := orgList(ctx, s, orgID, scanLockout, qListLockouts, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing lockouts of org %s: %w", orgID, translate(err))
	}
	return ls, nil
}

// OverrideLockout closes an open lockout; a lockout that is not open gives
// store.ErrConflict.
func (s *Store) OverrideLockout(ctx context.Context, p store.OverrideLockoutParams) (store.Lockout, error) {
	var l store.Lockout
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		l, err = scanLockout(tx.QueryRow(ctx, qOverrideLockout, p.OrgID, p.ID, p.Reason, p.Actor, ts(p.At)))
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err = scanLockout(tx.QueryRow(ctx, qGetLockout, p.OrgID, p.ID)); err == nil {
				err = fmt.Errorf("%w: lockout is not open", store.ErrConflict)
			}
		}
		return err
	})
	if err != nil {
		return store.Lockout{}, fmt.Errorf("overriding lockout %s: %w", p.ID, translate(err))
	}
	return l, nil
}

func scanLockout(r rowScanner) (store.Lockout, error) {
	var (
		l          store.Lockout
		state      string
		created    time.Time
		overridden *time.Time
	)
	err := r.Scan(&l.ID, &l.OrgID, &l.UserID, &state, &l.Trigger, &created, &overridden,
		&l.OverrideReason, &l.OverrideActor)
	if err != nil {
		return store.Lockout{}, err
	}
	l.State = store.LockoutState(state)
	l.CreatedAt = fromTS(created)
	l.OverriddenAt = ptrFromOptTS(overridden)
	return l, nil
}

// GetPolicy returns the org's policy, or Version 0 when it has none.
func (s *Store) GetPolicy(ctx context.Context, orgID string) (store.Policy, error) {
	var (
		p              store.Policy
		version        *int64
		domains, cidrs []byte
		updated        *time.Time
	)
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, qGetPolicy, orgID).Scan(&p.OrgID, &version, &domains, &cidrs, &updated)
	})
	if err != nil {
		return store.Policy{}, fmt.Errorf("getting policy of org %s: %w", orgID, translate(err))
	}
	if version == nil {
		return p, nil
	}
	if err := fillPolicy(&p, *version, domains, cidrs, fromOptTS(updated)); err != nil {
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
		out        store.Policy
		version    int64
		gotD, gotC []byte
		updated    time.Time
	)
	err = s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, qPutPolicy, p.OrgID, domains, cidrs, ts(p.UpdatedAt)).
			Scan(&out.OrgID, &version, &gotD, &gotC, &updated)
	})
	if err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: %w", p.OrgID, translate(err))
	}
	if err := fillPolicy(&out, version, gotD, gotC, fromTS(updated)); err != nil {
		return store.Policy{}, fmt.Errorf("putting policy of org %s: %w", p.OrgID, err)
	}
	return out, nil
}

func fillPolicy(p *store.Policy, version int64, domains, cidrs []byte, updated time.Time) error {
	p.Version = uint64(version)
	p.UpdatedAt = updated
	if err := json.Unmarshal(domains, &p.Domains); err != nil {
		return fmt.Errorf("decoding domains: %w", err)
	}
	if err := json.Unmarshal(cidrs, &p.CIDRs); err != nil {
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

func encodeList(l []string) ([]byte, error) {
	if l == nil {
		l = []string{}
	}
	return json.Marshal(l)
}
