package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr"
	"github.com/toktra/toktra/controlplane/triggers/okta"
)

// Trigger integrations (Okta, BambooHR, Workday) and their inbox.
//
// Webhook URLs name the org by a random hook id, so they need no API key:
//
//	Okta:     POST {public URL}/v1/hooks/okta/{hook_id}
//	          (GET there answers Okta's one-time verification)
//	BambooHR: POST {public URL}/v1/hris/webhook/bamboohr?hook={hook_id}
//
// PUT /v1/integrations/okta and PUT /v1/hris/config return them.

// Webhook error codes, beyond the common ones.
const (
	// CodeStale: a signed timestamp outside the replay window.
	CodeStale = "stale"
	// CodeReplayed: the very same signed request was already accepted.
	CodeReplayed = "replayed"
)

// maxWebhookBytes bounds a webhook's body.
const maxWebhookBytes = 1 << 20

func init() {
	routeDocs["GET /v1/integrations/okta"] = routeDoc{Summary: "Get the Okta event hook integration (its secret only as a hint)", Response: oktaView{}, Status: 200}
	routeDocs["PUT /v1/integrations/okta"] = routeDoc{Summary: "Connect Okta: returns the event hook URL and, the first time, its secret (shown only in this response); 201 when created", Request: putOktaRequest{}, Response: oktaView{}, Status: 200}
	routeDocs["POST /v1/integrations/okta/rotate-secret"] = routeDoc{Summary: "Replace the Okta hook's secret (shown only in this response); the old one works 24 hours more", Response: oktaView{}, Status: 200}
	routeDocs["DELETE /v1/integrations/okta"] = routeDoc{Summary: "Disconnect Okta: its hook stops working", Status: 204}
	routeDocs["GET /v1/hris/config"] = routeDoc{Summary: "Get the HR system connection (secrets as hints) with Workday's poll status", Response: hrisView{}, Status: 200}
	routeDocs["PUT /v1/hris/config"] = routeDoc{Summary: "Connect the HR system (bamboohr or workday), replacing any other; secrets are stored encrypted, and omitted ones keep their stored values", Request: putHRISRequest{}, Response: hrisView{}, Status: 200}
	routeDocs["DELETE /v1/hris/config"] = routeDoc{Summary: "Disconnect the HR system", Status: 204}
	routeDocs["GET /v1/triggers"] = routeDoc{Summary: "List the events received from Okta, BambooHR and Workday, newest first, with what became of each", Response: triggerEventList{}, Status: 200,
		Query: map[string]string{"source": "okta, bamboohr or workday", "state": "pending, scheduled, processed, ignored, unknown_user or failed", "email": "only this user's events",
			"cursor": "next_cursor of the previous page", "limit": "1 to 500, default 50"}}
	routeDocs["GET /v1/triggers/{id}"] = routeDoc{Summary: "Get one received event", Response: triggerEventView{}, Status: 200}
	routeDocs["POST /v1/triggers/{id}/retry"] = routeDoc{Summary: "Process an unknown_user or failed event again (e.g. once the user exists)", Response: triggerEventView{}, Status: 200}
	auditActionOverrides["POST /v1/integrations/okta/rotate-secret"] = "integrations.okta.rotate_secret"
}

func (s *Server) triggerRoutes() {
	if s.triggers == nil {
		return
	}
	s.handle("GET /v1/integrations/okta", store.ScopeReadOnly, s.getOkta)
	s.handle("PUT /v1/integrations/okta", store.ScopeAdmin, s.putOkta)
	s.handle("POST /v1/integrations/okta/rotate-secret", store.ScopeAdmin, s.rotateOktaSecret)
	s.handle("DELETE /v1/integrations/okta", store.ScopeAdmin, s.deleteOkta)
	s.handle("GET /v1/hris/config", store.ScopeReadOnly, s.getHRIS)
	s.handle("PUT /v1/hris/config", store.ScopeAdmin, s.putHRIS)
	s.handle("DELETE /v1/hris/config", store.ScopeAdmin, s.deleteHRIS)
	s.handle("GET /v1/triggers", store.ScopeReadOnly, s.listTriggerEvents)
	s.handle("GET /v1/triggers/{id}", store.ScopeReadOnly, s.getTriggerEvent)
	s.handle("POST /v1/triggers/{id}/retry", store.ScopeAdmin, s.retryTriggerEvent)
	s.mux.Handle("GET /v1/hooks/okta/{hook_id}", s.webhook(s.oktaVerification))
	s.mux.Handle("POST /v1/hooks/okta/{hook_id}", s.webhook(s.oktaDelivery))
	s.mux.Handle("POST /v1/hris/webhook/bamboohr", s.webhook(s.bambooWebhook))
}

// publicURL is where webhooks reach this server: the configured public
// URL, else the request's own host.
func (s *Server) publicURL(r *http.Request) string {
	if s.publicBase != "" {
		return strings.TrimRight(s.publicBase, "/")
	}
	return "https://" + r.Host
}

type putOktaRequest struct {
	// OrgURL, when set, is the only Okta org whose deliveries are accepted
	// (their envelope's source), e.g. https://acme.okta.com.
	OrgURL string `json:"org_url"`
}

type oktaView struct {
	HookID     string `json:"hook_id"`
	WebhookURL string `json:"webhook_url"`
	// AuthorizationHeader is the header Okta must send the secret in.
	AuthorizationHeader string `json:"authorization_header"`
	// Secret is shown once: when created and when rotated.
	Secret              string     `json:"secret,omitempty"`
	SecretHint          string     `json:"secret_hint"`
	SignatureHeader     string     `json:"signature_header"`
	OrgURL              string     `json:"org_url,omitempty"`
	RotatedAt           time.Time  `json:"rotated_at"`
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

func (s *Server) newOktaView(r *http.Request, o triggers.Okta, secret string) oktaView {
	v := oktaView{HookID: o.HookID, WebhookURL: s.publicURL(r) + "/v1/hooks/okta/" + o.HookID, AuthorizationHeader: "Authorization",
		Secret: secret, SecretHint: o.SecretHint, SignatureHeader: okta.SignatureHeader, OrgURL: o.OrgURL,
		RotatedAt: o.RotatedAt.UTC(), CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC()}
	if !o.PreviousSecretUntil.IsZero() && s.clock.Now().Before(o.PreviousSecretUntil) {
		t := o.PreviousSecretUntil.UTC()
		v.PreviousSecretUntil = &t
	}
	return v
}

func (s *Server) getOkta(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	o, err := s.triggers.GetOkta(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.newOktaView(r, o, ""), nil
}

func (s *Server) putOkta(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req putOktaRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	o, secret, created, err := s.triggers.PutOkta(ctx, p.key.OrgID, strings.TrimSpace(req.OrgURL))
	if err != nil {
		return 0, nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.log.Info("okta connected", "org", p.key.OrgID, "actor", p.actor())
	}
	return status, s.newOktaView(r, o, secret), nil
}

func (s *Server) rotateOktaSecret(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	o, secret, err := s.triggers.RotateOktaSecret(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.newOktaView(r, o, secret), nil
}

func (s *Server) deleteOkta(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if err := s.triggers.DeleteOkta(ctx, p.key.OrgID); err != nil {
		return 0, nil, err
	}
	s.log.Info("okta disconnected", "org", p.key.OrgID, "actor", p.actor())
	return http.StatusNoContent, nil, nil
}

type putHRISRequest struct {
	// Provider is bamboohr or workday.
	Provider string `json:"provider"`
	// BambooHR.
	Subdomain     string `json:"subdomain,omitempty"`
	APIKey        string `json:"api_key,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// Workday.
	BaseURL      string `json:"base_url,omitempty"`
	ReportURL    string `json:"report_url,omitempty"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	TokenURL     string `json:"token_url,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// PollInterval is a Go duration, e.g. "1h" (the default).
	PollInterval string `json:"poll_interval,omitempty"`
}

type pollView struct {
	Interval      string     `json:"interval"`
	NextRunAt     time.Time  `json:"next_run_at"`
	LastRunAt     *time.Time `json:"last_run_at,omitempty"`
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	Cursor        *time.Time `json:"cursor,omitempty"`
}

type hrisView struct {
	Provider string `json:"provider"`
	// WebhookURL is where BambooHR posts (bamboohr only).
	WebhookURL        string    `json:"webhook_url,omitempty"`
	Subdomain         string    `json:"subdomain,omitempty"`
	APIKeyHint        string    `json:"api_key_hint,omitempty"`
	WebhookSecretHint string    `json:"webhook_secret_hint,omitempty"`
	BaseURL           string    `json:"base_url,omitempty"`
	ReportURL         string    `json:"report_url,omitempty"`
	Auth              string    `json:"auth,omitempty"`
	Username          string    `json:"username,omitempty"`
	PasswordHint      string    `json:"password_hint,omitempty"`
	TokenURL          string    `json:"token_url,omitempty"`
	ClientID          string    `json:"client_id,omitempty"`
	ClientSecretHint  string    `json:"client_secret_hint,omitempty"`
	RefreshTokenHint  string    `json:"refresh_token_hint,omitempty"`
	PollInterval      string    `json:"poll_interval,omitempty"`
	Status            *pollView `json:"status,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) newHRISView(r *http.Request, h triggers.HRIS) hrisView {
	v := hrisView{Provider: h.Provider, Subdomain: h.Subdomain, APIKeyHint: h.APIKeyHint, WebhookSecretHint: h.WebhookSecretHint,
		BaseURL: h.BaseURL, ReportURL: h.ReportURL, Auth: h.Auth, Username: h.Username, PasswordHint: h.PasswordHint,
		TokenURL: h.TokenURL, ClientID: h.ClientID, ClientSecretHint: h.ClientSecretHint, RefreshTokenHint: h.RefreshTokenHint,
		CreatedAt: h.CreatedAt.UTC(), UpdatedAt: h.UpdatedAt.UTC()}
	if h.HookID != "" {
		v.WebhookURL = s.publicURL(r) + "/v1/hris/webhook/bamboohr?hook=" + h.HookID
	}
	if h.PollInterval > 0 {
		v.PollInterval = h.PollInterval.String()
	}
	if h.Poll != nil {
		v.Status = &pollView{Interval: h.Poll.Interval.String(), NextRunAt: h.Poll.NextRunAt.UTC(), LastRunAt: optTime(h.Poll.LastRunAt),
			LastSuccessAt: optTime(h.Poll.LastSuccessAt), LastError: h.Poll.LastError, Cursor: optTime(h.Poll.Cursor)}
	}
	return v
}

func (s *Server) getHRIS(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	h, err := s.triggers.GetHRIS(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.newHRISView(r, h), nil
}

func (s *Server) putHRIS(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req putHRISRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	set := triggers.HRISSettings{Provider: req.Provider, Subdomain: req.Subdomain, APIKey: req.APIKey, WebhookSecret: req.WebhookSecret,
		BaseURL: req.BaseURL, ReportURL: req.ReportURL, Username: req.Username, Password: req.Password,
		TokenURL: req.TokenURL, ClientID: req.ClientID, ClientSecret: req.ClientSecret, RefreshToken: req.RefreshToken}
	if req.PollInterval != "" {
		d, err := time.ParseDuration(req.PollInterval)
		if err != nil {
			return 0, nil, invalid("poll_interval: a duration, e.g. 1h")
		}
		set.PollInterval = d
	}
	if req.Provider != triggers.SourceWorkday && (req.BaseURL != "" || req.ReportURL != "" || req.Username != "" || req.Password != "" ||
		req.TokenURL != "" || req.ClientID != "" || req.ClientSecret != "" || req.RefreshToken != "" || req.PollInterval != "") {
		return 0, nil, invalid("workday's fields are only for provider workday")
	}
	if req.Provider != triggers.SourceBambooHR && (req.Subdomain != "" || req.APIKey != "" || req.WebhookSecret != "") {
		return 0, nil, invalid("bamboohr's fields are only for provider bamboohr")
	}
	h, err := s.triggers.PutHRIS(ctx, p.key.OrgID, set)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("hr system configured", "org", p.key.OrgID, "provider", h.Provider, "actor", p.actor())
	return http.StatusOK, s.newHRISView(r, h), nil
}

func (s *Server) deleteHRIS(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if err := s.triggers.DeleteHRIS(ctx, p.key.OrgID); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

type triggerEventView struct {
	ID            string                  `json:"id"`
	Source        string                  `json:"source"`
	EventType     string                  `json:"event_type"`
	Subject       string                  `json:"subject"`
	VendorEventID string                  `json:"vendor_event_id"`
	DeliveryID    string                  `json:"delivery_id"`
	Email         string                  `json:"email,omitempty"`
	PayloadSHA256 string                  `json:"payload_sha256"`
	State         store.TriggerEventState `json:"state"`
	DueAt         *time.Time              `json:"due_at,omitempty"`
	Attempts      int                     `json:"attempts"`
	LastError     string                  `json:"last_error,omitempty"`
	UserID        string                  `json:"user_id,omitempty"`
	LockoutID     string                  `json:"lockout_id,omitempty"`
	Detail        json.RawMessage         `json:"detail,omitempty"`
	ReceivedAt    time.Time               `json:"received_at"`
	UpdatedAt     time.Time               `json:"updated_at"`
	ProcessedAt   *time.Time              `json:"processed_at,omitempty"`
}

func newTriggerEventView(e store.TriggerEvent) triggerEventView {
	return triggerEventView{ID: e.ID, Source: e.Source, EventType: e.EventType, Subject: e.Subject, VendorEventID: e.VendorEventID,
		DeliveryID: e.DeliveryID, Email: e.Email, PayloadSHA256: fmt.Sprintf("%x", e.PayloadSHA256), State: e.State,
		DueAt: optTime(e.DueAt), Attempts: e.Attempts, LastError: e.LastError, UserID: e.UserID, LockoutID: e.LockoutID,
		Detail: e.Detail, ReceivedAt: e.ReceivedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(), ProcessedAt: timePtr(e.ProcessedAt)}
}

type triggerEventList struct {
	Data       []triggerEventView `json:"data"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

func (s *Server) listTriggerEvents(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	params := store.ListTriggerEventsParams{OrgID: p.key.OrgID, Cursor: q.Get("cursor"), Email: strings.ToLower(strings.TrimSpace(q.Get("email")))}
	switch src := q.Get("source"); src {
	case "", triggers.SourceOkta, triggers.SourceBambooHR, triggers.SourceWorkday:
		params.Source = src
	default:
		return 0, nil, invalid("source: okta, bamboohr or workday")
	}
	if st := store.TriggerEventState(q.Get("state")); st != "" {
		ok := false
		for _, known := range store.TriggerEventStates {
			ok = ok || st == known
		}
		if !ok {
			return 0, nil, invalid("state: pending, scheduled, processed, ignored, unknown_user or failed")
		}
		params.State = st
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return 0, nil, invalid("limit: 1 to 500")
		}
		params.Limit = n
	}
	page, err := s.triggers.ListEvents(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	out := triggerEventList{Data: []triggerEventView{}, NextCursor: page.NextCursor}
	for _, e := range page.Events {
		out.Data = append(out.Data, newTriggerEventView(e))
	}
	return http.StatusOK, out, nil
}

func (s *Server) getTriggerEvent(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	e, err := s.triggers.GetEvent(ctx, p.key.OrgID, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newTriggerEventView(e), nil
}

func (s *Server) retryTriggerEvent(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	e, err := s.triggers.Retry(ctx, p.key.OrgID, r.PathValue("id"))
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "only unknown_user and failed events can be retried"}
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newTriggerEventView(e), nil
}

// webhook wraps a vendor's endpoint: a per-hook rate limit (on top of the
// per-address one every request gets), a body size limit, and errors
// mapped to their status. Nothing of the request's headers is logged.
func (s *Server) webhook(h func(w http.ResponseWriter, r *http.Request, body []byte) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hook := r.PathValue("hook_id")
		if hook == "" {
			hook = r.URL.Query().Get("hook")
		}
		if l := s.limits.Webhook; l != nil && len(hook) <= 64 {
			if d := l.Allow("hook:" + hook); !d.Allowed {
				w.Header().Set("Retry-After", strconv.FormatInt(int64(d.RetryAfter/time.Second)+1, 10))
				writeError(w, &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, Message: "too many requests for this webhook"})
				return
			}
		}
		var body []byte
		if r.Method == http.MethodPost {
			var err error
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("body larger than %d bytes", maxWebhookBytes)})
				return
			}
			if err != nil {
				writeError(w, invalid("reading the body failed"))
				return
			}
		}
		if err := h(w, r, body); err != nil {
			e := webhookError(err)
			if e.Status >= 500 {
				s.log.Error("webhook failed", "path", r.URL.Path, "err", err)
			} else {
				s.log.Warn("webhook refused", "path", r.URL.Path, "status", e.Status, "err", err)
			}
			writeError(w, e)
		}
	})
}

func webhookError(err error) *Error {
	switch {
	case errors.Is(err, triggers.ErrUnknownHook):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such webhook"}
	case errors.Is(err, triggers.ErrStale):
		return &Error{Status: http.StatusUnauthorized, Code: CodeStale, Message: "the signed timestamp is outside the replay window"}
	case errors.Is(err, triggers.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "the secret or signature is missing or wrong"}
	case errors.Is(err, triggers.ErrReplayed):
		return &Error{Status: http.StatusConflict, Code: CodeReplayed, Message: "this signed request was already received"}
	case errors.Is(err, triggers.ErrMalformed):
		return invalid(strings.TrimPrefix(err.Error(), triggers.ErrMalformed.Error()+": "))
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
}

func (s *Server) oktaVerification(w http.ResponseWriter, r *http.Request, _ []byte) error {
	challenge := r.Header.Get(okta.VerificationHeader)
	if challenge == "" || len(challenge) > 512 {
		return fmt.Errorf("%w: %s header required", triggers.ErrMalformed, okta.VerificationHeader)
	}
	if err := s.triggers.VerifyOktaHook(r.Context(), r.PathValue("hook_id"), r.Header.Get("Authorization")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"verification": challenge})
	return nil
}

func (s *Server) oktaDelivery(w http.ResponseWriter, r *http.Request, body []byte) error {
	_, err := s.triggers.ReceiveOkta(r.Context(), r.PathValue("hook_id"), r.Header.Get("Authorization"), r.Header.Get(okta.SignatureHeader), body)
	if err != nil {
		return err
	}
	// Okta wants an empty 200 or 204, at once; processing goes on in jobs.
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type webhookReceipt struct {
	Events     int  `json:"events"`
	Accepted   int  `json:"accepted"`
	Duplicates int  `json:"duplicates"`
	Ignored    int  `json:"ignored"`
	Redelivery bool `json:"redelivery,omitempty"`
}

func (s *Server) bambooWebhook(w http.ResponseWriter, r *http.Request, body []byte) error {
	rec, err := s.triggers.ReceiveBambooHR(r.Context(), r.URL.Query().Get("hook"), r.Header.Get(bamboohr.TimestampHeader), r.Header.Get(bamboohr.SignatureHeader), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookReceipt{Events: rec.Events, Accepted: rec.Accepted, Duplicates: rec.Duplicates, Ignored: rec.Ignored})
	return nil
}
