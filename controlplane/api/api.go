// Package api serves the admin REST API under /v1: JSON over HTTPS,
// authenticated with X-API-Key, every request scoped to the key's org.
package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers"
	"github.com/toktra/toktra/controlplane/usage"
	"github.com/toktra/toktra/internal/clock"
)

const maxBodyBytes = 1 << 20

// Secret prefixes make leaked credentials recognisable to scanners.
const (
	APIKeyPrefix           = "tka_"
	EnrollmentSecretPrefix = "tke_"
)

// Server is the admin API.
type Server struct {
	store     store.Store
	lockout   *lockout.Service
	fleet     *fleet.Service
	providers ProviderConfig
	custody   *custody.Service
	objects   objectstore.Store
	triggers  *triggers.Service
	// publicBase is the server's URL as webhooks reach it (see triggers.go).
	publicBase string
	limits     RateLimits
	clock      clock.Clock
	log        *slog.Logger
	mux        *http.ServeMux
	handler    http.Handler
	// patterns lists every authenticated route, for the cross-tenant tests.
	patterns []string
	usage    *usage.Service
	// scimLocks serializes SCIM changes per user (scim.go).
	scimLocks keyedMutex
}

// NewServer returns the admin API handler.
func NewServer(cfg Config) *Server {
	s := &Server{store: cfg.Store, lockout: cfg.Lockouts, fleet: cfg.Fleet, providers: cfg.Providers, custody: cfg.Custody, objects: cfg.Objects, limits: cfg.Limits,
		clock: cfg.Clock, log: cfg.Logger, mux: http.NewServeMux(), triggers: cfg.Triggers, publicBase: cfg.PublicURL}
	s.usage = cmp.Or(cfg.Usage, usage.NewService(cfg.Store))
	s.routes()
	s.mountEvidence(cfg.Evidence)
	s.handler = s.limit(s.limits.Public, s.mux)
	return s
}

// RateLimits bound requests per client IP. A nil limiter does not limit.
type RateLimits struct {
	// Public applies to every request under /v1.
	Public *ratelimit.Limiter
	// Admin applies, in addition, to routes that need an admin key.
	Admin *ratelimit.Limiter
	// TrustedProxies may name the client in X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// Webhook applies, in addition to Public, per webhook (hook id).
	Webhook *ratelimit.Limiter
	// SCIM applies, in addition, to SCIM requests, per org (scim.go).
	SCIM *ratelimit.Limiter
}

// Config wires the admin API.
type Config struct {
	Limits    RateLimits
	Store     store.Store
	Lockouts  *lockout.Service
	Fleet     *fleet.Service
	Providers ProviderConfig
	// Triggers receives Okta's and BambooHR's webhooks and keeps the HR
	// integrations; nil serves none of their routes.
	Triggers *triggers.Service
	// PublicURL is the server's URL as Okta and BambooHR reach it, for the
	// webhook URLs shown to admins (default: the request's host, https).
	PublicURL string
	Clock     clock.Clock
	Logger    *slog.Logger
	// Usage answers the usage and anomaly routes; nil reads Store.
	Usage *usage.Service
	// Evidence serves the local evidence store's presigned URLs (nil: S3).
	Evidence http.Handler
	// Objects is the write-once store snapshots are downloaded from.
	Objects objectstore.Store

	// Custody serves /v1/custody/...; nil answers those routes 404.
	Custody *custody.Service
}

func (s *Server) routes() {
	s.handle("GET /v1/users", store.ScopeReadOnly, s.listUsers)
	s.handle("GET /v1/users/{id}", store.ScopeReadOnly, s.getUser)
	s.handle("GET /v1/devices", store.ScopeReadOnly, s.listDevices)
	s.handle("GET /v1/devices/{id}", store.ScopeReadOnly, s.getDevice)
	s.handle("POST /v1/devices/{id}/revoke", store.ScopeAdmin, s.revokeDevice)
	s.handle("GET /v1/enrollment-secrets", store.ScopeReadOnly, s.listEnrollmentSecrets)
	s.handle("POST /v1/enrollment-secrets", store.ScopeAdmin, s.createEnrollmentSecret)
	s.handle("DELETE /v1/enrollment-secrets/{id}", store.ScopeAdmin, s.revokeEnrollmentSecret)
	s.handle("GET /v1/policy", store.ScopeReadOnly, s.getPolicy)
	s.handle("PUT /v1/policy", store.ScopeAdmin, s.putPolicy)
	s.handle("GET /v1/lockouts", store.ScopeReadOnly, s.listLockouts)
	s.handle("POST /v1/lockouts", store.ScopeAdmin, s.createLockout)
	s.handle("GET /v1/lockouts/{id}", store.ScopeReadOnly, s.getLockout)
	s.handle("POST /v1/lockouts/{id}/override", store.ScopeAdmin, s.overrideLockout)
	s.handle("GET /v1/api-keys", store.ScopeAdmin, s.listAPIKeys)
	s.handle("POST /v1/api-keys", store.ScopeAdmin, s.createAPIKey)
	s.handle("DELETE /v1/api-keys/{id}", store.ScopeAdmin, s.revokeAPIKey)
	s.handle("GET /v1/providers", store.ScopeReadOnly, s.listProviders)
	s.handle("GET /v1/providers/{name}", store.ScopeReadOnly, s.getProvider)
	s.handle("PUT /v1/providers/{name}", store.ScopeAdmin, s.putProvider)
	s.handle("DELETE /v1/providers/{name}", store.ScopeAdmin, s.deleteProvider)
	s.handle("GET /v1/audit-log", store.ScopeReadOnly, s.listAuditLog)
	s.handle("GET /v1/users/{id}/usage", store.ScopeReadOnly, s.getUserUsage)
	s.handle("GET /v1/users/{id}/anomalies", store.ScopeReadOnly, s.getUserAnomalies)
	s.triggerRoutes()
	s.scimRoutes()
	s.custodyRoutes()
	s.snapshotRoutes()
	s.mux.HandleFunc("GET /v1/openapi.json", s.serveOpenAPI)
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such endpoint"})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// limit wraps next in the per-IP limiter l, answering 429 with a JSON error.
func (s *Server) limit(l *ratelimit.Limiter, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return ratelimit.Middleware(l, s.limits.TrustedProxies, func(w http.ResponseWriter, r *http.Request, retryAfter time.Duration) {
		if strings.HasPrefix(r.URL.Path, scimPrefix) {
			writeSCIMError(w, scimStatus(http.StatusTooManyRequests, fmt.Sprintf("too many requests from this address; retry in %s", retryAfter.Round(time.Second))))
			return
		}
		writeError(w, &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message: fmt.Sprintf("too many requests from this address; retry in %s", retryAfter.Round(time.Second))})
	})(next)
}

// principal is who is calling: an API key of one org.
type principal struct {
	key store.APIKey
}

func (p principal) actor() string { return "api-key:" + p.key.ID }

type handlerFunc func(ctx context.Context, p principal, r *http.Request) (int, any, error)

func (s *Server) handle(pattern string, need store.APIKeyScope, h handlerFunc) {
	s.patterns = append(s.patterns, pattern)
	var hh http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, aerr := s.authenticate(r)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		// Audit every authenticated request; the response is held until
		// its entry is stored (see audit.go).
		rec := &auditRecorder{ResponseWriter: w}
		defer s.finishAudit(rec, r, pattern, p)
		w = rec
		if need == store.ScopeAdmin && p.key.Scope != store.ScopeAdmin {
			writeError(w, &Error{Status: http.StatusForbidden, Code: CodePermissionDenied, Message: "this API key is read-only"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		status, body, err := h(r.Context(), p, r)
		if err != nil {
			e := toAPIError(err)
			if e.Status >= 500 {
				s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "org", p.key.OrgID, "err", err)
			}
			writeError(w, e)
			return
		}
		writeJSON(w, status, body)
	})
	if need == store.ScopeAdmin {
		// Routes that change configuration get the tighter admin limit too.
		hh = s.limit(s.limits.Admin, hh)
	}
	s.mux.Handle(pattern, hh)
}

func (s *Server) authenticate(r *http.Request) (principal, *Error) {
	raw := r.Header.Get("X-API-Key")
	if raw == "" {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "X-API-Key header required"}
	}
	hash := HashSecret(raw)
	key, err := s.store.GetAPIKeyByHash(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "API key not recognized"}
	}
	if err != nil {
		s.log.Error("looking up api key", "err", err)
		return principal{}, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
	}
	if key.RevokedAt != nil || !s.clock.Now().Before(key.ExpiresAt) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "API key expired or revoked"}
	}
	return principal{key: key}, nil
}

// HashSecret is how API keys and enrollment secrets are stored: SHA-256 of
// the secret (they are 256-bit random, so no slow hash is needed).
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// NewSecret returns a random 256-bit secret with a recognisable prefix.
func NewSecret(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("api: reading random bytes: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// decode reads exactly one JSON object into v, refusing unknown fields.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeInvalidArgument, Message: "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("body larger than %d bytes", maxBodyBytes)}
		}
		if errors.Is(err, io.EOF) {
			return invalid("request body required")
		}
		return invalid("malformed JSON: " + err.Error())
	}
	if dec.More() {
		return invalid("body must be a single JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("body must be a single JSON object")
	}
	return nil
}

func timePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
