package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

type apiKeyView struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Scope     store.APIKeyScope `json:"scope"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
	RevokedAt *time.Time        `json:"revoked_at,omitempty"`
}

func newAPIKeyView(k store.APIKey) apiKeyView {
	return apiKeyView{ID: k.ID, Name: k.Name, Scope: k.Scope, CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt.UTC(), RevokedAt: timePtr(k.RevokedAt)}
}

func (s *Server) listAPIKeys(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	keys, err := s.store.ListAPIKeys(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	out := list[apiKeyView]{Data: []apiKeyView{}}
	for _, k := range keys {
		out.Data = append(out.Data, newAPIKeyView(k))
	}
	return http.StatusOK, out, nil
}

type createAPIKeyRequest struct {
	Name  string            `json:"name"`
	Scope store.APIKeyScope `json:"scope"`
	// ExpiresIn is a Go duration ("720h"); default and maximum 90 days.
	ExpiresIn string `json:"expires_in"`
}

func (s *Server) createAPIKey(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req createAPIKeyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	if req.Scope != store.ScopeAdmin && req.Scope != store.ScopeReadOnly {
		return 0, nil, invalid(fmt.Sprintf("scope: %q or %q", store.ScopeAdmin, store.ScopeReadOnly))
	}
	lifetime := MaxAPIKeyLifetime
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d < time.Hour || d > MaxAPIKeyLifetime {
			return 0, nil, invalid("expires_in: a duration such as \"720h\", from 1h to 2160h (90 days)")
		}
		lifetime = d
	}
	k, err := CreateAPIKey(ctx, s.store, p.key.OrgID, req.Name, req.Scope, s.clock.Now(), lifetime)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("api key created", "org", p.key.OrgID, "id", k.ID, "scope", k.Scope, "actor", p.actor())
	return http.StatusCreated, k, nil
}

func (s *Server) revokeAPIKey(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if err := s.store.RevokeAPIKey(ctx, p.key.OrgID, id, s.clock.Now()); err != nil {
		return 0, nil, err
	}
	s.log.Info("api key revoked", "org", p.key.OrgID, "id", id, "actor", p.actor())
	return http.StatusNoContent, nil, nil
}
