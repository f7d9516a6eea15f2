package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
)

// scimRoutes registers the SCIM endpoints (bearer token) and their admin
// routes (X-API-Key).
func (s *Server) scimRoutes() {
	s.handle("POST /v1/scim/token", store.ScopeAdmin, s.createSCIMToken)
	s.handle("DELETE /v1/scim/token", store.ScopeAdmin, s.deleteSCIMToken)
	s.handle("GET /v1/scim/config", store.ScopeReadOnly, s.getSCIMConfig)
	s.handle("GET /v1/scim/users", store.ScopeReadOnly, s.listSCIMUserStates)
	s.mux.HandleFunc(scimPrefix, s.serveSCIM)
}

func init() {
	routeDocs["POST /v1/scim/token"] = routeDoc{
		Summary:  "Create or rotate the org's SCIM bearer token (the old one stops working at once); the token is shown only in this response",
		Response: newSCIMTokenView{}, Status: 201,
	}
	routeDocs["DELETE /v1/scim/token"] = routeDoc{Summary: "Delete the org's SCIM token: SCIM provisioning stops until a new one is made", Status: 204}
	routeDocs["GET /v1/scim/config"] = routeDoc{
		Summary:  "SCIM provisioning settings: the base URL to give the identity provider, and the token's hint and use (never the token)",
		Response: scimConfigView{}, Status: 200,
	}
	routeDocs["GET /v1/scim/users"] = routeDoc{
		Summary:  "Users provisioned over SCIM, with their active state and the lockout their deactivation started (a reactivation does not unlock)",
		Response: scimUserStateList{}, Status: 200,
		Query: map[string]string{
			"user_name":       "only this userName (case-insensitive)",
			"email":           "only users with this email",
			"include_deleted": "true to include users the client deleted",
			"offset":          "skip this many users",
			"limit":           "1 to 1000, default 100",
		},
	}
}

// newSCIMTokenView is a freshly made SCIM token; Token exists only here.
type newSCIMTokenView struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	TokenHint string    `json:"token_hint"`
	BaseURL   string    `json:"base_url"`
	CreatedAt time.Time `json:"created_at"`
	Usage     string    `json:"usage"`
}

type scimConfigView struct {
	Enabled    bool       `json:"enabled"`
	BaseURL    string     `json:"base_url"`
	TokenID    string     `json:"token_id,omitempty"`
	TokenHint  string     `json:"token_hint,omitempty"`
	CreatedAt  *time.Time `json:"created_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

const scimTokenUsage = "give the identity provider the base URL and this token (Authorization: Bearer); it is shown only once"

func (s *Server) createSCIMToken(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	secret := NewSecret(SCIMTokenPrefix)
	t, err := s.store.PutSCIMToken(ctx, store.PutSCIMTokenParams{
		OrgID: p.key.OrgID, Hash: HashSecret(secret), Hint: secrets.Redact(secret), CreatedAt: s.clock.Now(),
	})
	if err != nil {
		return 0, nil, fmt.Errorf("storing scim token: %w", err)
	}
	s.log.Info("scim token created", "org", p.key.OrgID, "token", t.ID, "actor", p.actor())
	return http.StatusCreated, newSCIMTokenView{
		ID: t.ID, Token: secret, TokenHint: t.Hint, BaseURL: scimBaseURL(r), CreatedAt: t.CreatedAt.UTC(), Usage: scimTokenUsage,
	}, nil
}

func (s *Server) deleteSCIMToken(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if err := s.store.DeleteSCIMToken(ctx, p.key.OrgID); err != nil {
		return 0, nil, err
	}
	s.log.Info("scim token deleted", "org", p.key.OrgID, "actor", p.actor())
	return http.StatusNoContent, nil, nil
}

func (s *Server) getSCIMConfig(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	v := scimConfigView{BaseURL: scimBaseURL(r)}
	t, err := s.store.GetSCIMToken(ctx, p.key.OrgID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusOK, v, nil
	case err != nil:
		return 0, nil, err
	}
	created := t.CreatedAt.UTC()
	v.Enabled, v.TokenID, v.TokenHint, v.CreatedAt, v.LastUsedAt = true, t.ID, t.Hint, &created, timePtr(t.LastUsedAt)
	return http.StatusOK, v, nil
}

// scimUserStateView is a SCIM user as admins see it: who the client
// provisioned, linked to which Toktra user, and where its lockout stands.
type scimUserStateView struct {
	ID            string     `json:"id"`
	UserName      string     `json:"user_name"`
	ExternalID    string     `json:"external_id,omitempty"`
	UserID        string     `json:"user_id"`
	Emails        []string   `json:"emails"`
	Active        bool       `json:"active"`
	DeactivatedAt *time.Time `json:"deactivated_at,omitempty"`
	LockoutID     string     `json:"lockout_id,omitempty"`
	LockoutState  string     `json:"lockout_state,omitempty"`
	LockedAt      *time.Time `json:"locked_at,omitempty"`
	ReactivatedAt *time.Time `json:"reactivated_at,omitempty"`
	// ReactivatedWhileLocked: the client made the user active again but
	// the lockout is still open, waiting for an admin's override.
	ReactivatedWhileLocked bool       `json:"reactivated_while_locked"`
	DeletedAt              *time.Time `json:"deleted_at,omitempty"`
	CreatedAt              time.Time  `json:"created_at"`
	UpdatedAt              time.Time  `json:"updated_at"`
}

type scimUserStateList struct {
	Data  []scimUserStateView `json:"data"`
	Total int                 `json:"total"`
}

func (s *Server) listSCIMUserStates(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	params := store.ListSCIMUsersParams{OrgID: p.key.OrgID, UserName: q.Get("user_name"), Email: q.Get("email"),
		IncludeDeleted: q.Get("include_deleted") == "true"}
	for _, n := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"offset", &params.Offset, 0, 1 << 30}, {"limit", &params.Limit, 1, store.MaxSCIMPageLimit}} {
		if v := q.Get(n.name); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < n.min || i > n.max {
				return 0, nil, invalid(fmt.Sprintf("%s: %d to %d", n.name, n.min, n.max))
			}
			*n.dst = i
		}
	}
	page, err := s.store.ListSCIMUsers(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	out := scimUserStateList{Data: []scimUserStateView{}, Total: page.Total}
	for _, u := range page.Users {
		v := scimUserStateView{
			ID: u.ID, UserName: u.UserName, ExternalID: u.ExternalID, UserID: u.UserID, Emails: u.Emails, Active: u.Active,
			DeactivatedAt: timePtr(u.DeactivatedAt), LockoutID: u.LockoutID, LockedAt: timePtr(u.LockedAt),
			ReactivatedAt: timePtr(u.ReactivatedAt), DeletedAt: timePtr(u.DeletedAt), CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC(),
		}
		if v.Emails == nil {
			v.Emails = []string{}
		}
		if u.LockoutID != "" {
			l, err := s.store.GetLockout(ctx, p.key.OrgID, u.LockoutID)
			if err != nil {
				return 0, nil, err
			}
			v.LockoutState = string(l.State)
			v.ReactivatedWhileLocked = u.Active && l.State == store.LockoutOpen
		}
		out.Data = append(out.Data, v)
	}
	return http.StatusOK, out, nil
}
