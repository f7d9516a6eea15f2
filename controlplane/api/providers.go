package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/connect"
	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
)

// CodeProviderRejected means the provider refused the admin key when it
// was checked with a read call.
const CodeProviderRejected = "provider_rejected"

// ProviderConfig is what the API needs to connect providers.
type ProviderConfig struct {
	// Sealer encrypts admin keys at rest.
	Sealer *secrets.Sealer
	// Options are passed to every connector (HTTP client, clock, logger).
	Options providers.Options
	// AllowBaseURL lets an admin point a provider at another API root; off
	// in production (it would let an API key holder make the server call
	// arbitrary URLs), on for tests and on-premises gateways.
	AllowBaseURL bool
}

// ProviderKeyAAD binds a sealed admin key to its org and provider, so a
// ciphertext copied to another row does not open.
func ProviderKeyAAD(orgID, provider string) []byte {
	return []byte("toktra/provider-key/" + orgID + "/" + provider)
}

type providerView struct {
	Provider    string    `json:"provider"`
	KeyHint     string    `json:"key_hint"`
	BaseURL     string    `json:"base_url,omitempty"`
	ConnectedAt time.Time `json:"connected_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ValidatedAt time.Time `json:"validated_at"`
}

func newProviderView(c store.ProviderConnection) providerView {
	return providerView{Provider: c.Provider, KeyHint: c.KeyHint, BaseURL: c.BaseURL,
		ConnectedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), ValidatedAt: c.ValidatedAt.UTC()}
}

type putProviderRequest struct {
	AdminKey string `json:"admin_key"`
	BaseURL  string `json:"base_url"`
}

func (s *Server) putProvider(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	if !connect.Known(name) {
		return 0, nil, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("unknown provider; known: %s", strings.Join(connect.Names(), ", "))}
	}
	var req putProviderRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	key := strings.TrimSpace(req.AdminKey)
	if key == "" || len(key) > 512 {
		return 0, nil, invalid("admin_key: required, at most 512 bytes")
	}
	if req.BaseURL != "" {
		if !s.providers.AllowBaseURL {
			return 0, nil, invalid("base_url: not allowed on this server")
		}
		u, err := url.Parse(req.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return 0, nil, invalid("base_url: an http(s) URL")
		}
	}
	opts := s.providers.Options
	opts.BaseURL = req.BaseURL
	conn, err := connect.New(name, key, opts)
	if err != nil {
		return 0, nil, invalid(err.Error())
	}
	if err := conn.Validate(ctx); err != nil {
		s.log.Warn("provider refused the admin key", "org", p.key.OrgID, "provider", name, "err", err)
		return 0, nil, &Error{Status: http.StatusBadRequest, Code: CodeProviderRejected,
			Message: fmt.Sprintf("%s did not accept the admin key for a read call: %v", name, providerMessage(err))}
	}
	sealed, err := s.providers.Sealer.Seal(ctx, []byte(key), ProviderKeyAAD(p.key.OrgID, name))
	if err != nil {
		return 0, nil, fmt.Errorf("sealing %s admin key: %w", name, err)
	}
	now := s.clock.Now()
	c, err := s.store.PutProviderConnection(ctx, store.PutProviderConnectionParams{
		OrgID: p.key.OrgID, Provider: name, SealedKey: sealed, KeyHint: secrets.Redact(key),
		BaseURL: req.BaseURL, At: now, ValidatedAt: now,
	})
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("provider connected", "org", p.key.OrgID, "provider", name, "actor", p.actor())
	return http.StatusOK, newProviderView(c), nil
}

// providerMessage is what the provider said, without anything that could
// carry the key.
func providerMessage(err error) string {
	var pe *providers.Error
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return "the request failed"
}

func (s *Server) listProviders(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	cs, err := s.store.ListProviderConnections(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	out := list[providerView]{Data: []providerView{}}
	for _, c := range cs {
		out.Data = append(out.Data, newProviderView(c))
	}
	return http.StatusOK, out, nil
}

func (s *Server) getProvider(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	c, err := s.store.GetProviderConnection(ctx, p.key.OrgID, r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newProviderView(c), nil
}

func (s *Server) deleteProvider(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	if err := s.store.DeleteProviderConnection(ctx, p.key.OrgID, name); err != nil {
		return 0, nil, err
	}
	s.log.Info("provider disconnected", "org", p.key.OrgID, "provider", name, "actor", p.actor())
	return http.StatusNoContent, nil, nil
}
