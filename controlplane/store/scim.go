package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// SCIMStore keeps what an org's SCIM client (Okta, Microsoft Entra ID, ...)
// provisions: the org's bearer token (by hash), its SCIM users, each linked
// to a Toktra user, and its groups with their members.
//
// SCIM users and groups carry a Version that every change increments; an
// update names the version it read and gets ErrStale when another change
// came first, so read-modify-write cycles (PATCH) never lose an update.
type SCIMStore interface {
	// PutSCIMToken creates the org's token, or replaces (rotates) it: the
	// old secret stops working at once.
	PutSCIMToken(ctx context.Context, p PutSCIMTokenParams) (SCIMToken, error)
	GetSCIMToken(ctx context.Context, orgID string) (SCIMToken, error)
	// GetSCIMTokenByHash finds a token by the SHA-256 of its secret, in any
	// org: the token is what establishes the org.
	GetSCIMTokenByHash(ctx context.Context, hash []byte) (SCIMToken, error)
	// TouchSCIMToken records when the token was last used. A token rotated
	// since (another id) is left alone (ErrNotFound).
	TouchSCIMToken(ctx context.Context, orgID, id string, at time.Time) error
	// DeleteSCIMToken disables SCIM for the org until a new token is made.
	DeleteSCIMToken(ctx context.Context, orgID string) error

	// CreateSCIMUser stores a user. A UserName already taken in the org by a
	// user not deleted (compared case-insensitively) gives ErrConflict; a
	// UserID outside the org gives ErrNotFound. A user created inactive has
	// DeactivatedAt set to its creation.
	CreateSCIMUser(ctx context.Context, p CreateSCIMUserParams) (SCIMUser, error)
	// GetSCIMUser returns the org's user, unless deleted.
	GetSCIMUser(ctx context.Context, orgID, id string) (SCIMUser, error)
	// ListSCIMUsers returns a page of the org's users, oldest first (by
	// creation, then id: the order is stable across pages), and how many
	// match in all.
	ListSCIMUsers(ctx context.Context, p ListSCIMUsersParams) (SCIMUserPage, error)
	// UpdateSCIMUser replaces everything the client controls, if the stored
	// user is still at p.Version (else ErrStale), and increments Version.
	// Active going from true to false sets DeactivatedAt and clears
	// LockedAt (the new deactivation is not carried out yet), from false
	// to true sets ReactivatedAt; LockoutID is kept.
	UpdateSCIMUser(ctx context.Context, p UpdateSCIMUserParams) (SCIMUser, error)
	// SetSCIMUserLockout records the lockout a deactivation of the user
	// started (or found open). It does not change Version: the SCIM
	// resource is the same.
	SetSCIMUserLockout(ctx context.Context, p SetSCIMUserLockoutParams) (SCIMUser, error)
	// DeleteSCIMUser marks the user deleted (it keeps its record, and its
	// UserName becomes free) and removes it from every group.
	DeleteSCIMUser(ctx context.Context, orgID, id string, at time.Time) error

	// CreateSCIMGroup stores a group with its members (SCIM user ids of
	// the org, not deleted; others give ErrNotFound). A DisplayName already
	// taken in the org (case-insensitively) gives ErrConflict.
	CreateSCIMGroup(ctx context.Context, p CreateSCIMGroupParams) (SCIMGroup, error)
	GetSCIMGroup(ctx context.Context, orgID, id string) (SCIMGroup, error)
	// ListSCIMGroups returns a page of the org's groups, oldest first, and
	// how many match in all.
	ListSCIMGroups(ctx context.Context, p ListSCIMGroupsParams) (SCIMGroupPage, error)
	// UpdateSCIMGroup replaces the group's attributes and changes its
	// members, if the stored group is still at p.Version (else ErrStale),
	// and increments Version; all of it or nothing.
	UpdateSCIMGroup(ctx context.Context, p UpdateSCIMGroupParams) (SCIMGroup, error)
	DeleteSCIMGroup(ctx context.Context, orgID, id string) error
	// ListSCIMGroupMembers returns the group's members by when they were
	// added, then user id.
	ListSCIMGroupMembers(ctx context.Context, orgID, groupID string) ([]SCIMGroupMember, error)
}

// ErrStale means an update named a version that is no longer the stored one.
var ErrStale = errors.New("stale version")

// SCIMToken is an org's SCIM bearer token; only its hash is kept.
type SCIMToken struct {
	ID    string
	OrgID string
	Hash  []byte
	// Hint shows the secret's last characters, for people.
	Hint       string
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

type PutSCIMTokenParams struct {
	OrgID     string
	Hash      []byte
	Hint      string
	CreatedAt time.Time
}

// SCIMUser is a user as a SCIM client provisioned it.
type SCIMUser struct {
	ID    string
	OrgID string
	// UserID is the Toktra user the SCIM user was linked to, by email, at
	// creation.
	UserID     string
	UserName   string
	ExternalID string
	// Emails are the user's email values, lower-cased, for filters.
	Emails []string
	Active bool
	// Attributes are the SCIM attributes the client sent and the server
	// accepted (a JSON object, without id, meta or password).
	Attributes json.RawMessage
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// DeactivatedAt and ReactivatedAt are the latest changes of Active.
	DeactivatedAt *time.Time
	ReactivatedAt *time.Time
	// LockoutID is the lockout a deactivation started, LockedAt when it
	// was recorded. An inactive user without LockedAt has a deactivation
	// not carried out yet.
	LockoutID string
	LockedAt  *time.Time
	DeletedAt *time.Time
}

type CreateSCIMUserParams struct {
	OrgID      string
	UserID     string
	UserName   string
	ExternalID string
	Emails     []string
	Active     bool
	Attributes json.RawMessage
	At         time.Time
}

type UpdateSCIMUserParams struct {
	OrgID string
	ID    string
	// Version is the version the update was computed from.
	Version    int64
	UserName   string
	ExternalID string
	Emails     []string
	Active     bool
	Attributes json.RawMessage
	At         time.Time
}

type SetSCIMUserLockoutParams struct {
	OrgID     string
	ID        string
	LockoutID string
	At        time.Time
}

// Page sizes of ListSCIMUsers and ListSCIMGroups.
const (
	DefaultSCIMPageLimit = 100
	MaxSCIMPageLimit     = 1000
)

type ListSCIMUsersParams struct {
	OrgID string
	// UserName (case-insensitive), ExternalID (exact) and Email (any of
	// the user's, case-insensitive) filter when set, all of them together.
	UserName   string
	ExternalID string
	Email      string
	// IncludeDeleted lists deleted users too (for admins).
	IncludeDeleted bool
	// Offset skips that many matches; Limit defaults to
	// DefaultSCIMPageLimit, at most MaxSCIMPageLimit.
	Offset int
	Limit  int
}

type SCIMUserPage struct {
	Users []SCIMUser
	// Total is how many users match, on every page.
	Total int
}

// SCIMGroup is a group as a SCIM client provisioned it.
type SCIMGroup struct {
	ID          string
	OrgID       string
	DisplayName string
	ExternalID  string
	// Attributes are the group's accepted attributes other than members.
	Attributes json.RawMessage
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// SCIMGroupMember is one SCIM user in a group.
type SCIMGroupMember struct {
	UserID   string
	UserName string
	AddedAt  time.Time
}

type CreateSCIMGroupParams struct {
	OrgID       string
	DisplayName string
	ExternalID  string
	Attributes  json.RawMessage
	Members     []string
	At          time.Time
}

type UpdateSCIMGroupParams struct {
	OrgID       string
	ID          string
	Version     int64
	DisplayName string
	ExternalID  string
	Attributes  json.RawMessage
	// ReplaceMembers makes the members exactly AddMembers; otherwise
	// AddMembers are added (members already there are left as they are)
	// and RemoveMembers removed (absent ones ignored).
	ReplaceMembers bool
	AddMembers     []string
	RemoveMembers  []string
	At             time.Time
}

type ListSCIMGroupsParams struct {
	OrgID string
	// DisplayName (case-insensitive) and ExternalID (exact) filter when set.
	DisplayName string
	ExternalID  string
	Offset      int
	Limit       int
}

type SCIMGroupPage struct {
	Groups []SCIMGroup
	Total  int
}

// SCIMPageLimit is the limit a list uses for the one asked.
func SCIMPageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultSCIMPageLimit
	case limit > MaxSCIMPageLimit:
		return MaxSCIMPageLimit
	}
	return limit
}
