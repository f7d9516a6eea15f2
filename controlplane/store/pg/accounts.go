package pg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

var (
	qCreateOrg                 = queries.MustGet("CreateOrg")
	qGetOrg                    = queries.MustGet("GetOrg")
	qCreateAPIKey              = queries.MustGet("CreateAPIKey")
	qGetAPIKeyByHash           = queries.MustGet("GetAPIKeyByHash")
	qListAPIKeys               = queries.MustGet("ListAPIKeys")
	qRevokeAPIKey              = queries.MustGet("RevokeAPIKey")
	qCreateEnrollmentSecret    = queries.MustGet("CreateEnrollmentSecret")
	qGetEnrollmentSecretByHash = queries.MustGet("GetEnrollmentSecretByHash")
	qListEnrollmentSecrets     = queries.MustGet("ListEnrollmentSecrets")
	qRevokeEnrollmentSecret    = queries.MustGet("RevokeEnrollmentSecret")
	qUpsertUser                = queries.MustGet("UpsertUser")
	qGetUser                   = queries.MustGet("GetUser")
	qGetUserByEmail            = queries.MustGet("GetUserByEmail")
	qListUsers                 = queries.MustGet("ListUsers")
)

// CreateOrg creates an org with a new id.
func (s *Store) CreateOrg(ctx context.Context, p store.CreateOrgParams) (store.Org, error) {
	// The org's own id scopes its insert: the policy on orgs admits only it.
	id := store.NewID("org")
	o, err := orgRow(ctx, s, id, scanOrg, qCreateOrg, id, p.Name, ts(p.CreatedAt))
	if err != nil {
		return store.Org{}, fmt.Errorf("creating org %q: %w", p.Name, translate(err))
	}
	return o, nil
}

// GetOrg returns the org with the given id.
func (s *Store) GetOrg(ctx context.Context, orgID string) (store.Org, error) {
	o, err := orgRow(ctx, s, orgID, scanOrg, qGetOrg, orgID)
	if err != nil {
		return store.Org{}, fmt.Errorf("getting org %s: %w", orgID, translate(err))
	}
	return o, nil
}

func scanOrg(r rowScanner) (store.Org, error) {
	var o store.Org
	var created time.Time
	if err := r.Scan(&o.ID, &o.Name, &created); err != nil {
		return store.Org{}, err
	}
	o.CreatedAt = fromTS(created)
	return o, nil
}

// CreateAPIKey stores a key by the hash of its secret.
func (s *Store) CreateAPIKey(ctx context.Context, p store.CreateAPIKeyParams) (store.APIKey, error) {
	k, err := orgRow(ctx, s, p.OrgID, scanAPIKey, qCreateAPIKey,
		store.NewID("key"), p.OrgID, p.Name, string(p.Scope), p.Hash, ts(p.CreatedAt), optTS(p.ExpiresAt))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("creating api key in org %s: %w", p.OrgID, translate(err))
	}
	return k, nil
}

// GetAPIKeyByHash finds a key by the SHA-256 of its secret, in any org. No
// org is set: the key is what establishes it, so the lookup goes through a
// function that returns only the key with that hash (migration 004).
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash []byte) (store.APIKey, error) {
	k, err := scanAPIKey(s.q.QueryRow(ctx, qGetAPIKeyByHash, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("getting api key by hash: %w", translate(err))
	}
	return k, nil
}

// ListAPIKeys returns the org's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, orgID string) ([]store.APIKey, error) {
	ks, err := orgList(ctx, s, orgID, scanAPIKey, qListAPIKeys, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing api keys of org %s: %w", orgID, translate(err))
	}
	return ks, nil
}

// RevokeAPIKey marks the key revoked at the given time (the first time wins).
func (s *Store) RevokeAPIKey(ctx context.Context, orgID, id string, at time.Time) error {
	if err := s.orgExecOne(ctx, orgID, qRevokeAPIKey, orgID, id, ts(at)); err != nil {
		return fmt.Errorf("revoking api key %s: %w", id, err)
	}
	return nil
}

func scanAPIKey(r rowScanner) (store.APIKey, error) {
	var k store.APIKey
	var scope string
	var created time.Time
	var expires, revoked *time.Time
	if err := r.Scan(&k.ID, &k.OrgID, &k.Name, &scope, &k.Hash, &created, &expires, &revoked); err != nil {
		return store.APIKey{}, err
	}
	k.Scope = store.APIKeyScope(scope)
	k.CreatedAt = fromTS(created)
	k.ExpiresAt = fromOptTS(expires)
	k.RevokedAt = ptrFromOptTS(revoked)
	return k, nil
}

// CreateEnrollmentSecret stores a secret by the hash of its value.
func (s *Store) CreateEnrollmentSecret(ctx context.Context, p store.CreateEnrollmentSecretParams) (store.EnrollmentSecret, error) {
	e, err := orgRow(ctx, s, p.OrgID, scanEnrollmentSecret, qCreateEnrollmentSecret,
		store.NewID("enr"), p.OrgID, p.Name, p.Hash, ts(p.CreatedAt), optTS(p.ExpiresAt))
	if err != nil {
		return store.EnrollmentSecret{}, fmt.Errorf("creating enrollment secret in org %s: %w", p.OrgID, translate(err))
	}
	return e, nil
}

// GetEnrollmentSecretByHash finds a secret by the SHA-256 of its value, in
// any org, through a function that returns only the secret with that hash
// (migration 004), as GetAPIKeyByHash does.
func (s *Store) GetEnrollmentSecretByHash(ctx context.Context, hash []byte) (store.EnrollmentSecret, error) {
	e, err := scanEnrollmentSecret(s.q.QueryRow(ctx, qGetEnrollmentSecretByHash, hash))
	if err != nil {
		return store.EnrollmentSecret{}, fmt.Errorf("getting enrollment secret by hash: %w", translate(err))
	}
	return e, nil
}

// ListEnrollmentSecrets returns the org's secrets, oldest first.
func (s *Store) ListEnrollmentSecrets(ctx context.Context, orgID string) ([]store.EnrollmentSecret, error) {
	es, err := orgList(ctx, s, orgID, scanEnrollmentSecret, qListEnrollmentSecrets, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing enrollment secrets of org %s: %w", orgID, translate(err))
	}
	return es, nil
}

// RevokeEnrollmentSecret marks the secret revoked at the given time (the
// first time wins).
func (s *Store) RevokeEnrollmentSecret(ctx context.Context, orgID, id string, at time.Time) error {
	if err := s.orgExecOne(ctx, orgID, qRevokeEnrollmentSecret, orgID, id, ts(at)); err != nil {
		return fmt.Errorf("revoking enrollment secret %s: %w", id, err)
	}
	return nil
}

func scanEnrollmentSecret(r rowScanner) (store.EnrollmentSecret, error) {
	var e store.EnrollmentSecret
	var created time.Time
	var expires, revoked *time.Time
	if err := r.Scan(&e.ID, &e.OrgID, &e.Name, &e.Hash, &created, &expires, &revoked); err != nil {
		return store.EnrollmentSecret{}, err
	}
	e.CreatedAt = fromTS(created)
	e.ExpiresAt = fromOptTS(expires)
	e.RevokedAt = ptrFromOptTS(revoked)
	return e, nil
}

// UpsertUser creates the user or returns the one with that email.
func (s *Store) UpsertUser(ctx context.Context, p store.UpsertUserParams) (store.User, error) {
	email := strings.ToLower(p.Email)
	u, err := orgRow(ctx, s, p.OrgID, scanUser, qUpsertUser,
		store.NewID("usr"), p.OrgID, email, p.Name, ts(p.CreatedAt))
	if err != nil {
		return store.User{}, fmt.Errorf("upserting user %s in org %s: %w", email, p.OrgID, translate(err))
	}
	return u, nil
}

// GetUser returns the org's user with the given id.
func (s *Store) GetUser(ctx context.Context, orgID, id string) (store.User, error) {
	u, err := orgRow(ctx, s, orgID, scanUser, qGetUser, orgID, id)
	if err != nil {
		return store.User{}, fmt.Errorf("getting user %s: %w", id, translate(err))
	}
	return u, nil
}

// GetUserByEmail returns the org's user with the email, compared
// case-insensitively.
func (s *Store) GetUserByEmail(ctx context.Context, orgID, email string) (store.User, error) {
	u, err := orgRow(ctx, s, orgID, scanUser, qGetUserByEmail, orgID, strings.ToLower(email))
	if err != nil {
		return store.User{}, fmt.Errorf("getting user %s: %w", email, translate(err))
	}
	return u, nil
}

// ListUsers returns the org's users by email.
func (s *Store) ListUsers(ctx context.Context, orgID string) ([]store.User, error) {
	us, err := orgList(ctx, s, orgID, scanUser, qListUsers, orgID)
	if err != nil {
		return nil, fmt.Errorf("listing users of org %s: %w", orgID, translate(err))
	}
	return us, nil
}

func scanUser(r rowScanner) (store.User, error) {
	var u store.User
	var created time.Time
	if err := r.Scan(&u.ID, &u.OrgID, &u.Email, &u.Name, &created); err != nil {
		return store.User{}, err
	}
	u.CreatedAt = fromTS(created)
	return u, nil
}
