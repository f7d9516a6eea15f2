package api

import (
	"context"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// MaxAPIKeyLifetime is the longest an API key may live.
const MaxAPIKeyLifetime = 90 * 24 * time.Hour

// NewAPIKey is a freshly created API key; Secret exists only here.
type NewAPIKey struct {
	ID        string            `json:"id"`
	OrgID     string            `json:"org_id"`
	Name      string            `json:"name"`
	Scope     store.APIKeyScope `json:"scope"`
	Secret    string            `json:"secret"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// CreateAPIKey makes an API key for the org, stores its hash, and returns
// the secret once. lifetime is capped at MaxAPIKeyLifetime.
func CreateAPIKey(ctx context.Context, st store.Store, orgID, name string, scope store.APIKeyScope, now time.Time, lifetime time.Duration) (NewAPIKey, error) {
	if lifetime <= 0 || lifetime > MaxAPIKeyLifetime {
		lifetime = MaxAPIKeyLifetime
	}
	secret := NewSecret(APIKeyPrefix)
	k, err := st.CreateAPIKey(ctx, store.CreateAPIKeyParams{
		OrgID: orgID, Name: name, Scope: scope, Hash: HashSecret(secret), CreatedAt: now, ExpiresAt: now.Add(lifetime),
	})
	if err != nil {
		return NewAPIKey{}, fmt.Errorf("creating api key: %w", err)
	}
	return NewAPIKey{ID: k.ID, OrgID: k.OrgID, Name: k.Name, Scope: k.Scope, Secret: secret, CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt.UTC()}, nil
}
