package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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
	t, err := scanSCIMToken(s.writer.QueryRowContext(ctx, qPutSCIMToken, p.OrgID, store.NewID("stk"), p.Hash, p.Hint, micros(p.CreatedAt)))
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("putting scim token of org %s: %w", p.OrgID, translate(err))
	}
	return t, nil
}

// GetSCIMToken returns the org's SCIM token.
func (s *Store) GetSCIMToken(ctx context.Context, orgID string) (store.SCIMToken, error) {
	t, err := scanSCIMToken(s.reader.QueryRowContext(ctx, qGetSCIMToken, orgID))
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("getting scim token of org %s: %w", orgID, translate(err))
	}
	return t, nil
}

// GetSCIMTokenByHash finds a token by the SHA-256 of its secret, in any org.
func (s *Store) GetSCIMTokenByHash(ctx context.Context, hash []byte) (store.SCIMToken, error) {
	t, err := scanSCIMToken(s.reader.QueryRowContext(ctx, qGetSCIMTokenByHash, hash))
	if err != nil {
		return store.SCIMToken{}, fmt.Errorf("getting scim token by hash: %w", translate(err))
	}
	return t, nil
}

// TouchSCIMToken records when the token was last used.
func (s *Store) TouchSCIMToken(ctx context.Context, orgID, id string, at time.Time) error {
	if err := execOne(ctx, s.writer, qTouchSCIMToken, orgID, id, micros(at)); err != nil {
		return fmt.Errorf("touching scim token %s: %w", id, err)
	}
	return nil
}

// DeleteSCIMToken removes the org's token.
func (s *Store) DeleteSCIMToken(ctx context.Context, orgID string) error {
	if err := execOne(ctx, s.writer, qDeleteSCIMToken, orgID); err != nil {
		return fmt.Errorf("deleting scim token of org %s: %w", orgID, err)
	}
	return nil
}

func scanSCIMToken(r rowScanner) (store.SCIMToken, error) {
	var (
		t        store.SCIMToken
		created  int64
		lastUsed sql.NullInt64
	)
	if err := r.Scan(&t.ID, &t.OrgID, &t.Hash, &t.Hint, &created, &lastUsed); err != nil {
		return store.SCIMToken{}, err
	}
	t.CreatedAt = fromMicros(created)
	t.LastUsedAt = ptrFromOptMicros(lastUsed)
	return t, nil
}

// CreateSCIMUser stores a SCIM user.
func (s *Store) CreateSCIMUser(ctx context.Context, p store.CreateSCIMUserParams) (store.SCIMUser, error) {
	emails, err := encodeStrings(p.Emails)
	if err != nil {
		return store.SCIMUser{}, err
	}
	u, err := scanSCIMUser(s.writer.QueryRowContext(ctx, qCreateSCIMUser,
		store.NewID("scu"), p.OrgID, p.UserID, p.UserName, strings.ToLower(p.UserName), p.ExternalID,
		emails, p.Active, attributesJSON(p.Attributes), micros(p.At)))
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("creating scim user %q in org %s: %w", p.UserName, p.OrgID, translate(err))
	}
	return u, nil
}

// GetSCIMUser returns the org's SCIM user, unless deleted.
func (s *Store) GetSCIMUser(ctx context.Context, orgID, id string) (store.SCIMUser, error) {
	u, err := scanSCIMUser(s.reader.QueryRowContext(ctx, qGetSCIMUser, orgID, id))
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
	err := readTx(ctx, s.reader, func(tx dbtx) error {
		if err := tx.QueryRowContext(ctx, qCountSCIMUsers, args...).Scan(&page.Total); err != nil {
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

// readTx runs fn in one read transaction on db, or on the transaction db
// already is (a Store made by InTx).
func readTx(ctx context.Context, db dbtx, fn func(tx dbtx) error) error {
	sdb, ok := db.(*sql.DB)
	if !ok {
		return fn(db)
	}
	tx, err := sdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("beginning read transaction: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// UpdateSCIMUser replaces the user's client-controlled fields if it is
// still at p.Version.
func (s *Store) UpdateSCIMUser(ctx context.Context, p store.UpdateSCIMUserParams) (store.SCIMUser, error) {
	emails, err := encodeStrings(p.Emails)
	if err != nil {
		return store.SCIMUser{}, err
	}
	var u store.SCIMUser
	err = inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		u, err = scanSCIMUser(tx.QueryRowContext(ctx, qUpdateSCIMUser, p.OrgID, p.ID, p.Version,
			p.UserName, strings.ToLower(p.UserName), p.ExternalID, emails, p.Active, attributesJSON(p.Attributes), micros(p.At)))
		if errors.Is(err, sql.ErrNoRows) {
			// Gone, or changed since it was read.
			if _, gerr := scanSCIMUser(tx.QueryRowContext(ctx, qGetSCIMUser, p.OrgID, p.ID)); gerr == nil {
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
	u, err := scanSCIMUser(s.writer.QueryRowContext(ctx, qSetSCIMUserLockout, p.OrgID, p.ID, p.LockoutID, micros(p.At)))
	if err != nil {
		return store.SCIMUser{}, fmt.Errorf("recording lockout %s of scim user %s: %w", p.LockoutID, p.ID, translate(err))
	}
	return u, nil
}

// DeleteSCIMUser marks the user deleted and takes it out of its groups.
func (s *Store) DeleteSCIMUser(ctx context.Context, orgID, id string, at time.Time) error {
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, qDeleteSCIMUser, orgID, id, micros(at)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, qRemoveSCIMUserFromGroups, orgID, id)
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
		emails, attrs                          string
		lockoutID                              sql.NullString
		created, updated                       int64
		deactivated, reactivated, locked, gone sql.NullInt64
	)
	err := r.Scan(&u.ID, &u.OrgID, &u.UserID, &u.UserName, &u.ExternalID, &emails, &u.Active, &attrs, &u.Version,
		&created, &updated, &deactivated, &reactivated, &lockoutID, &locked, &gone)
	if err != nil {
		return store.SCIMUser{}, err
	}
	if err := json.Unmarshal([]byte(emails), &u.Emails); err != nil {
		return store.SCIMUser{}, fmt.Errorf("decoding emails of scim user %s: %w", u.ID, err)
	}
	u.Attributes = json.RawMessage(attrs)
	u.LockoutID = lockoutID.String
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updated)
	u.DeactivatedAt, u.ReactivatedAt = ptrFromOptMicros(deactivated), ptrFromOptMicros(reactivated)
	u.LockedAt, u.DeletedAt = ptrFromOptMicros(locked), ptrFromOptMicros(gone)
	return u, nil
}

// CreateSCIMGroup stores a group and its members, all or nothing.
func (s *Store) CreateSCIMGroup(ctx context.Context, p store.CreateSCIMGroupParams) (store.SCIMGroup, error) {
	var g store.SCIMGroup
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		return savepoint(ctx, tx, s.tx != nil, func() error {
			var err error
			g, err = scanSCIMGroup(tx.QueryRowContext(ctx, qCreateSCIMGroup, store.NewID("scg"), p.OrgID, p.DisplayName,
				strings.ToLower(p.DisplayName), p.ExternalID, attributesJSON(p.Attributes), micros(p.At)))
			if err != nil {
				return err
			}
			return addSCIMGroupMembers(ctx, tx, p.OrgID, g.ID, p.Members, p.At)
		})
	})
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("creating scim group %q in org %s: %w", p.DisplayName, p.OrgID, translate(err))
	}
	return g, nil
}

// savepoint runs fn so that its statements take effect together or not at
// all: inside InTx (nested), under a savepoint rolled back on error; else
// fn runs as it is, its own transaction doing that.
func savepoint(ctx context.Context, tx *sql.Tx, nested bool, fn func() error) error {
	if !nested {
		return fn()
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT scim_change"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT scim_change"); rerr != nil {
			return errors.Join(err, rerr)
		}
		_, _ = tx.ExecContext(ctx, "RELEASE SAVEPOINT scim_change")
		return err
	}
	_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT scim_change")
	return err
}

// addSCIMGroupMembers adds the users to the group, or fails with
// ErrNotFound if any is not a live user of the org.
func addSCIMGroupMembers(ctx context.Context, tx *sql.Tx, orgID, groupID string, members []string, at time.Time) error {
	if len(members) == 0 {
		return nil
	}
	ids, err := encodeStrings(members)
	if err != nil {
		return err
	}
	var live int
	if err := tx.QueryRowContext(ctx, qCountLiveSCIMUsers, orgID, ids).Scan(&live); err != nil {
		return err
	}
	if live != distinct(members) {
		return fmt.Errorf("member: %w", store.ErrNotFound)
	}
	_, err = tx.ExecContext(ctx, qAddSCIMGroupMembers, orgID, groupID, ids, micros(at))
	return err
}

// GetSCIMGroup returns the org's group.
func (s *Store) GetSCIMGroup(ctx context.Context, orgID, id string) (store.SCIMGroup, error) {
	g, err := scanSCIMGroup(s.reader.QueryRowContext(ctx, qGetSCIMGroup, orgID, id))
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("getting scim group %s: %w", id, translate(err))
	}
	return g, nil
}

// ListSCIMGroups returns a page of the org's groups and the number matching.
func (s *Store) ListSCIMGroups(ctx context.Context, p store.ListSCIMGroupsParams) (store.SCIMGroupPage, error) {
	page := store.SCIMGroupPage{Groups: []store.SCIMGroup{}}
	args := []any{p.OrgID, strings.ToLower(p.DisplayName), p.ExternalID}
	err := readTx(ctx, s.reader, func(tx dbtx) error {
		if err := tx.QueryRowContext(ctx, qCountSCIMGroups, args...).Scan(&page.Total); err != nil {
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
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		return savepoint(ctx, tx, s.tx != nil, func() error {
			var err error
			g, err = scanSCIMGroup(tx.QueryRowContext(ctx, qUpdateSCIMGroup, p.OrgID, p.ID, p.Version, p.DisplayName,
				strings.ToLower(p.DisplayName), p.ExternalID, attributesJSON(p.Attributes), micros(p.At)))
			if errors.Is(err, sql.ErrNoRows) {
				if _, gerr := scanSCIMGroup(tx.QueryRowContext(ctx, qGetSCIMGroup, p.OrgID, p.ID)); gerr == nil {
					return store.ErrStale
				}
			}
			if err != nil {
				return err
			}
			if p.ReplaceMembers {
				if _, err := tx.ExecContext(ctx, qClearSCIMGroupMembers, p.OrgID, p.ID); err != nil {
					return err
				}
			} else if len(p.RemoveMembers) > 0 {
				ids, err := encodeStrings(p.RemoveMembers)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, qRemoveSCIMGroupMembers, p.OrgID, p.ID, ids); err != nil {
					return err
				}
			}
			return addSCIMGroupMembers(ctx, tx, p.OrgID, p.ID, p.AddMembers, p.At)
		})
	})
	if err != nil {
		return store.SCIMGroup{}, fmt.Errorf("updating scim group %s: %w", p.ID, translate(err))
	}
	return g, nil
}

// DeleteSCIMGroup removes the group and its memberships.
func (s *Store) DeleteSCIMGroup(ctx context.Context, orgID, id string) error {
	if err := execOne(ctx, s.writer, qDeleteSCIMGroup, orgID, id); err != nil {
		return fmt.Errorf("deleting scim group %s: %w", id, err)
	}
	return nil
}

// ListSCIMGroupMembers returns the group's members by when they were added.
func (s *Store) ListSCIMGroupMembers(ctx context.Context, orgID, groupID string) ([]store.SCIMGroupMember, error) {
	ms, err := queryList(ctx, s.reader, qListSCIMGroupMembers, scanSCIMGroupMember, orgID, groupID)
	if err != nil {
		return nil, fmt.Errorf("listing members of scim group %s: %w", groupID, translate(err))
	}
	return ms, nil
}

func scanSCIMGroup(r rowScanner) (store.SCIMGroup, error) {
	var (
		g                store.SCIMGroup
		attrs            string
		created, updated int64
	)
	if err := r.Scan(&g.ID, &g.OrgID, &g.DisplayName, &g.ExternalID, &attrs, &g.Version, &created, &updated); err != nil {
		return store.SCIMGroup{}, err
	}
	g.Attributes = json.RawMessage(attrs)
	g.CreatedAt, g.UpdatedAt = fromMicros(created), fromMicros(updated)
	return g, nil
}

func scanSCIMGroupMember(r rowScanner) (store.SCIMGroupMember, error) {
	var (
		m     store.SCIMGroupMember
		added int64
	)
	if err := r.Scan(&m.UserID, &m.UserName, &added); err != nil {
		return store.SCIMGroupMember{}, err
	}
	m.AddedAt = fromMicros(added)
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
