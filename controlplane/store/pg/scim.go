package pg

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed scim.sql
	scimSQL     string
	scimQueries = sqlq.MustParse(scimSQL)

	qPutSCIMToken             = scimQueries.MustGet("PutSCIMToken")
	qGetSCIMToken             = scimQueries.MustGet("GetSCIMToken")
	qGetSCIMTokenByHash       = scimQueries.MustGet("GetSCIMTokenByHash")
	qTouchSCIMToken           = scimQueries.MustGet("TouchSCIMToken")
	qDeleteSCIMToken          = scimQueries.MustGet("DeleteSCIMToken")
	qCreateSCIMUser           = scimQueries.MustGet("CreateSCIMUser")
	qGetSCIMUser              = scimQueries.MustGet("GetSCIMUser")
	qListSCIMUsers            = scimQueries.MustGet("ListSCIMUsers")
	qCountSCIMUsers           = scimQueries.MustGet("CountSCIMUsers")
	qUpdateSCIMUser           = scimQueries.MustGet("UpdateSCIMUser")
	qSetSCIMUserLockout       = scimQueries.MustGet("SetSCIMUserLockout")
	qDeleteSCIMUser           = scimQueries.MustGet("DeleteSCIMUser")
	qRemoveSCIMUserFromGroups = scimQueries.MustGet("RemoveSCIMUserFromGroups")
	qCreateSCIMGroup          = scimQueries.MustGet("CreateSCIMGroup")
	qGetSCIMGroup             = scimQueries.MustGet("GetSCIMGroup")
	qListSCIMGroups           = scimQueries.MustGet("ListSCIMGroups")
	qCountSCIMGroups          = scimQueries.MustGet("CountSCIMGroups")
	qUpdateSCIMGroup          = scimQueries.MustGet("UpdateSCIMGroup")
	qDeleteSCIMGroup          = scimQueries.MustGet("DeleteSCIMGroup")
	qCountLiveSCIMUsers       = scimQueries.MustGet("CountLiveSCIMUsers")
	qAddSCIMGroupMembers      = scimQueries.MustGet("AddSCIMGroupMembers")
	qRemoveSCIMGroupMembers   = scimQueries.MustGet("RemoveSCIMGroupMembers")
	qClearSCIMGroupMembers    = scimQueries.MustGet("ClearSCIMGroupMembers")
	qListSCIMGroupMembers     = scimQueries.MustGet("ListSCIMGroupMembers")
)

// PutSCIMToken creates or rotates the org's SCIM token.
func (s *Store) PutSCIMToken(ctx context.Context, p store.PutSCIMTokenParams) (store.SCIMToken, error) {
	t, err := orgRow(ctx, s, p.OrgID, scanSCIMToken, qPutSCIMToken, p.OrgID, store.NewID("stk"), p.Hash, p.Hint, ts(p.CreatedAt))
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("putting scim token of org %s: %w", p.OrgID, translate(err))
	}
	return t, nil
}

// GetSCIMToken returns the org's SCIM token.
func (s *Store) GetSCIMToken(ctx context.Context, orgID string) (store.SCIMToken, error) {
	t, err := orgRow(ctx, s, orgID, scanSCIMToken, qGetSCIMToken, orgID)
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("getting scim token of org %s: %w", orgID, translate(err))
	}
	return t, nil
}

// GetSCIMTokenByHash finds a token by the SHA-256 of its secret, in any
// org, through a function that returns only the token with that hash
// (migration 010), as GetAPIKeyByHash does.
func (s *Store) GetSCIMTokenByHash(ctx context.Context, hash []byte) (store.SCIMToken, error) {
	t, err := scanSCIMToken(s.q.QueryRow(ctx, qGetSCIMTokenByHash, hash))
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("getting scim token by hash: %w", translate(err))
	}
	return t, nil
}

// TouchSCIMToken records when the token was last used.
func (s *Store) TouchSCIMToken(ctx context.Context, orgID, id string, at time.Time) error {
	if err := s.orgExecOne(ctx, orgID, qTouchSCIMToken, orgID, id, ts(at)); err != nil {
		return fmt.Errorf("touching scim token %s: %w", id, err)
	}
	return nil
}

// DeleteSCIMToken removes the org's token.
func (s *Store) DeleteSCIMToken(ctx context.Context, orgID string) error {
	if err := s.orgExecOne(ctx, orgID, qDeleteSCIMToken, orgID); err != nil {
		return fmt.Errorf("deleting scim token of org %s: %w", orgID, err)
	}
	return nil
}

func scanSCIMToken(r rowScanner) (store.SCIMToken, error) {
	var (
		t        store.SCIMToken
		created  time.Time
		lastUsed *time.Time
	)
	if err := r.Scan(&t.ID, &t.OrgID, &t.Hash, &t.Hint, &created, &lastUsed); err != nil {
		return store.SCIMToken{}, err
	}
	t.CreatedAt = fromTS(created)
	t.LastUsedAt = ptrFromOptTS(lastUsed)
	return t, nil
}

// CreateSCIMUser stores a SCIM user.
func (s *Store) CreateSCIMUser(ctx context.Context, p store.CreateSCIMUserParams) (store.SCIMUser, error) {
	emails, err := encodeStrings(p.Emails)
	if err != nil {
		return store.SCIMUser{}, err
	}
	u, err := orgRow(ctx, s, p.OrgID, scanSCIMUser, qCreateSCIMUser,
		store.NewID("scu"), p.OrgID, p.UserID, p.UserName, strings.ToLower(p.UserName), p.ExternalID,
		emails, p.Active, attributesJSON(p.Attributes), ts(p.At))
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("creating scim user %q in org %s: %w", p.UserName, p.OrgID, translate(err))
	}
	return u, nil
}

// GetSCIMUser returns the org's SCIM user, unless deleted.
func (s *Store) GetSCIMUser(ctx context.Context, orgID, id string) (store.SCIMUser, error) {
	u, err := orgRow(ctx, s, orgID, scanSCIMUser, qGetSCIMUser, orgID, id)
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("getting scim user %s: %w", id, translate(err))
	}
	return u, nil
}

// ListSCIMUsers returns a page of the org's SCIM users and the number
// matching, read in one transaction so the two agree.
func (s *Store) ListSCIMUsers(ctx context.Context, p store.ListSCIMUsersParams) (store.SCIMUserPage, error) {
	page := store.SCIMUserPage{Users: []store.SCIMUser{}}
	args := []any{p.OrgID, strings.ToLower(p.UserName), p.ExternalID, strings.ToLower(p.Email), p.IncludeDeleted}
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qCountSCIMUsers, args...).Scan(&page.Total); err != nil {
			return err
		}
		var err error
		page.Users, err = queryList(ctx, tx, qListSCIMUsers, scanSCIMUser, append(args, store.SCIMPageLimit(p.Limit), max(p.Offset, 0))...)
		return err
	})
	if err != nil {
		return store.SCIMUserPage{}, fmt.Errorf("listing scim users of org %s: %w", p.OrgID, translate(err))
	}
	return page, nil
}

// UpdateSCIMUser replaces the user's client-controlled fields if it is
// still at p.Version.
func (s *Store) UpdateSCIMUser(ctx context.Context, p store.UpdateSCIMUserParams) (store.SCIMUser, error) {
	emails, err := encodeStrings(p.Emails)
	if err != nil {
		return store.SCIMUser{}, err
	}
	var u store.SCIMUser
	err = s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		u, err = scanSCIMUser(tx.QueryRow(ctx, qUpdateSCIMUser, p.OrgID, p.ID, p.Version,
			p.UserName, strings.ToLower(p.UserName), p.ExternalID, emails, p.Active, attributesJSON(p.Attributes), ts(p.At)))
		if errors.Is(err, pgx.ErrNoRows) {
			// Gone, or changed since it was read.
			if _, gerr := scanSCIMUser(tx.QueryRow(ctx, qGetSCIMUser, p.OrgID, p.ID)); gerr == nil {
				return store.ErrStale
			}
		}
		return err
	})
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("updating scim user %s: %w", p.ID, translate(err))
	}
	return u, nil
}

// SetSCIMUserLockout records the lockout the user's deactivation started.
func (s *Store) SetSCIMUserLockout(ctx context.Context, p store.SetSCIMUserLockoutParams) (store.SCIMUser, error) {
	u, err := orgRow(ctx, s, p.OrgID, scanSCIMUser, qSetSCIMUserLockout, p.OrgID, p.ID, p.LockoutID, ts(p.At))
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("recording lockout %s of scim user %s: %w", p.LockoutID, p.ID, translate(err))
	}
	return u, nil
}

// DeleteSCIMUser marks the user deleted and takes it out of its groups.
func (s *Store) DeleteSCIMUser(ctx context.Context, orgID, id string, at time.Time) error {
	err := s.inOrgAtomic(ctx, orgID, func(tx pgx.Tx) error {
		if err := execOne(ctx, tx, qDeleteSCIMUser, orgID, id, ts(at)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, qRemoveSCIMUserFromGroups, orgID, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting scim user %s: %w", id, translate(err))
	}
	return nil
}

func scanSCIMUser(r rowScanner) (store.SCIMUser, error) {
	var (
		u                                      store.SCIMUser
		emails, attrs                          []byte
		lockoutID                              *string
		created, updated                       time.Time
		deactivated, reactivated, locked, gone *time.Time
	)
	err := r.Scan(&u.ID, &u.OrgID, &u.UserID, &u.UserName, &u.ExternalID, &emails, &u.Active, &attrs, &u.Version,
		&created, &updated, &deactivated, &reactivated, &lockoutID, &locked, &gone)
	if err != nil {
		return store.SCIMUser{}, err
	}
	if err := json.Unmarshal(emails, &u.Emails); err != nil {
		return store.SCIMUser{}, fmt.Errorf("decoding emails of scim user %s: %w", u.ID, err)
	}
	u.Attributes = json.RawMessage(attrs)
	if lockoutID != nil {
		u.LockoutID = *lockoutID
	}
	u.CreatedAt, u.UpdatedAt = fromTS(created), fromTS(updated)
	u.DeactivatedAt, u.ReactivatedAt = ptrFromOptTS(deactivated), ptrFromOptTS(reactivated)
	u.LockedAt, u.DeletedAt = ptrFromOptTS(locked), ptrFromOptTS(gone)
	return u, nil
}

// CreateSCIMGroup stores a group and its members, all or nothing.
func (s *Store) CreateSCIMGroup(ctx context.Context, p store.CreateSCIMGroupParams) (store.SCIMGroup, error) {
	var g store.SCIMGroup
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		g, err = scanSCIMGroup(tx.QueryRow(ctx, qCreateSCIMGroup, store.NewID("scg"), p.OrgID, p.DisplayName,
			strings.ToLower(p.DisplayName), p.ExternalID, attributesJSON(p.Attributes), ts(p.At)))
		if err != nil {
			return err
		}
		return addSCIMGroupMembers(ctx, tx, p.OrgID, g.ID, p.Members, p.At)
	})
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("creating scim group %q in org %s: %w", p.DisplayName, p.OrgID, translate(err))
	}
	return g, nil
}

// addSCIMGroupMembers adds the users to the group, or fails with
// ErrNotFound if any is not a live user of the org.
func addSCIMGroupMembers(ctx context.Context, tx pgx.Tx, orgID, groupID string, members []string, at time.Time) error {
	if len(members) == 0 {
		return nil
	}
	ids, err := encodeStrings(members)
	if err != nil {
		return err
	}
	var live int
	if err := tx.QueryRow(ctx, qCountLiveSCIMUsers, orgID, ids).Scan(&live); err != nil {
		return err
	}
	if live != distinct(members) {
		return fmt.Errorf("member: %w", store.ErrNotFound)
	}
	_, err = tx.Exec(ctx, qAddSCIMGroupMembers, orgID, groupID, ids, ts(at))
	return err
}

// GetSCIMGroup returns the org's group.
func (s *Store) GetSCIMGroup(ctx context.Context, orgID, id string) (store.SCIMGroup, error) {
	g, err := orgRow(ctx, s, orgID, scanSCIMGroup, qGetSCIMGroup, orgID, id)
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("getting scim group %s: %w", id, translate(err))
	}
	return g, nil
}

// ListSCIMGroups returns a page of the org's groups and the number matching.
func (s *Store) ListSCIMGroups(ctx context.Context, p store.ListSCIMGroupsParams) (store.SCIMGroupPage, error) {
	page := store.SCIMGroupPage{Groups: []store.SCIMGroup{}}
	args := []any{p.OrgID, strings.ToLower(p.DisplayName), p.ExternalID}
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qCountSCIMGroups, args...).Scan(&page.Total); err != nil {
			return err
		}
		var err error
		page.Groups, err = queryList(ctx, tx, qListSCIMGroups, scanSCIMGroup, append(args, store.SCIMPageLimit(p.Limit), max(p.Offset, 0))...)
		return err
	})
	if err != nil {
		return store.SCIMGroupPage{}, fmt.Errorf("listing scim groups of org %s: %w", p.OrgID, translate(err))
	}
	return page, nil
}

// UpdateSCIMGroup replaces the group's attributes and changes its members
// if it is still at p.Version, all in one transaction.
func (s *Store) UpdateSCIMGroup(ctx context.Context, p store.UpdateSCIMGroupParams) (store.SCIMGroup, error) {
	var g store.SCIMGroup
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		g, err = scanSCIMGroup(tx.QueryRow(ctx, qUpdateSCIMGroup, p.OrgID, p.ID, p.Version, p.DisplayName,
			strings.ToLower(p.DisplayName), p.ExternalID, attributesJSON(p.Attributes), ts(p.At)))
		if errors.Is(err, pgx.ErrNoRows) {
			if _, gerr := scanSCIMGroup(tx.QueryRow(ctx, qGetSCIMGroup, p.OrgID, p.ID)); gerr == nil {
				return store.ErrStale
			}
		}
		if err != nil {
			return err
		}
		if p.ReplaceMembers {
			if _, err := tx.Exec(ctx, qClearSCIMGroupMembers, p.OrgID, p.ID); err != nil {
				return err
			}
		} else if len(p.RemoveMembers) > 0 {
			ids, err := encodeStrings(p.RemoveMembers)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, qRemoveSCIMGroupMembers, p.OrgID, p.ID, ids); err != nil {
				return err
			}
		}
		return addSCIMGroupMembers(ctx, tx, p.OrgID, p.ID, p.AddMembers, p.At)
	})
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("updating scim group %s: %w", p.ID, translate(err))
	}
	return g, nil
}

// DeleteSCIMGroup removes the group and its memberships.
func (s *Store) DeleteSCIMGroup(ctx context.Context, orgID, id string) error {
	if err := s.orgExecOne(ctx, orgID, qDeleteSCIMGroup, orgID, id); err != nil {
		return fmt.Errorf("deleting scim group %s: %w", id, err)
	}
	return nil
}

// ListSCIMGroupMembers returns the group's members by when they were added.
func (s *Store) ListSCIMGroupMembers(ctx context.Context, orgID, groupID string) ([]store.SCIMGroupMember, error) {
	ms, err := orgList(ctx, s, orgID, scanSCIMGroupMember, qListSCIMGroupMembers, orgID, groupID)
	if err != nil {
		return nil, fmt.Errorf("listing members of scim group %s: %w", groupID, translate(err))
	}
	return ms, nil
}

func scanSCIMGroup(r rowScanner) (store.SCIMGroup, error) {
	var (
		g                store.SCIMGroup
		attrs            []byte
		created, updated time.Time
	)
	if err := r.Scan(&g.ID, &g.OrgID, &g.DisplayName, &g.ExternalID, &attrs, &g.Version, &created, &updated); err != nil {
		return store.SCIMGroup{}, err
	}
	g.Attributes = json.RawMessage(attrs)
	g.CreatedAt, g.UpdatedAt = fromTS(created), fromTS(updated)
	return g, nil
}

func scanSCIMGroupMember(r rowScanner) (store.SCIMGroupMember, error) {
	var (
		m     store.SCIMGroupMember
		added time.Time
	)
	if err := r.Scan(&m.UserID, &m.UserName, &added); err != nil {
		return store.SCIMGroupMember{}, err
	}
	m.AddedAt = fromTS(added)
	return m, nil
}

// encodeStrings is a list of strings as the JSON array the queries take
// (never null).
func encodeStrings(l []string) (string, error) {
	if l == nil {
		l = []string{}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("encoding list: %w", err)
	}
	return string(b), nil
}

// attributesJSON is a resource's attributes as stored: an object, {} for none.
func attributesJSON(m json.RawMessage) string {
	if len(m) == 0 {
		return "{}"
	}
	return string(m)
}

func distinct(l []string) int {
	seen := make(map[string]struct{}, len(l))
	for _, v := range l {
		seen[v] = struct{}{}
	}
	return len(seen)
}
