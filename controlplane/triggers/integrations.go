package triggers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
)

// OktaSecretPrefix makes a leaked hook secret recognisable to scanners.
const OktaSecretPrefix = "tko_"

// secretsAAD binds an integration's sealed secrets to its org and kind.
func secretsAAD(orgID, kind string) []byte {
	return []byte("toktra/trigger-secrets/" + orgID + "/" + kind)
}

// newHookID returns the random id of a webhook URL: 128 bits, so it
// cannot be guessed, though it is no secret (the secret authenticates).
func newHookID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("triggers: reading random bytes: " + err.Error())
	}
	return "hk_" + hex.EncodeToString(b[:])
}

func newSecret(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("triggers: reading random bytes: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Service) seal(ctx context.Context, orgID, kind string, v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	sealed, err := s.sealer.Seal(ctx, raw, secretsAAD(orgID, kind))
	if err != nil {
		return nil, fmt.Errorf("sealing %s secrets: %w", kind, err)
	}
	return sealed, nil
}

func (s *Service) open(ctx context.Context, in store.TriggerIntegration, v any) error {
	raw, err := s.sealer.Open(ctx, in.SealedSecrets, secretsAAD(in.OrgID, in.Kind))
	if err != nil {
		return fmt.Errorf("opening %s secrets: %w", in.Kind, err)
	}
	defer clear(raw)
	return json.Unmarshal(raw, v)
}

// Okta's stored settings and sealed secrets.
type oktaSettings struct {
	OrgURL     string    `json:"org_url,omitempty"`
	SecretHint string    `json:"secret_hint"`
	RotatedAt  time.Time `json:"rotated_at"`
	// PreviousUntil is when the secret before the last rotation stops
	// working (zero: there is none).
	PreviousUntil time.Time `json:"previous_until"`
}

type oktaSecrets struct {
	Secret   string `json:"secret"`
	Previous string `json:"previous,omitempty"`
}

// Okta is an org's Okta integration as admins see it.
type Okta struct {
	HookID     string
	OrgURL     string
	SecretHint string
	RotatedAt  time.Time
	// PreviousSecretUntil is when the rotated-out secret stops working.
	PreviousSecretUntil  time.Time
	CreatedAt, UpdatedAt time.Time
}

func oktaView(in store.TriggerIntegration) (Okta, error) {
	var st oktaSettings
	if err := json.Unmarshal(in.Settings, &st); err != nil {
		return Okta{}, fmt.Errorf("reading okta settings: %w", err)
	}
	return Okta{HookID: in.HookID, OrgURL: st.OrgURL, SecretHint: st.SecretHint, RotatedAt: st.RotatedAt,
		PreviousSecretUntil: st.PreviousUntil, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt}, nil
}

// checkOktaOrgURL accepts "" or an https Okta org URL, returned without a
// trailing slash.
func checkOktaOrgURL(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", invalid("org_url: the Okta org's https URL, e.g. https://acme.okta.com")
	}
	return "https://" + strings.ToLower(u.Host), nil
}

// PutOkta creates the org's Okta integration, with a new hook id and
// secret (returned once: secret is empty when the integration existed and
// kept its own), or updates its settings.
func (s *Service) PutOkta(ctx context.Context, orgID, orgURL string) (o Okta, secret string, created bool, err error) {
	orgURL, err = checkOktaOrgURL(orgURL)
	if err != nil {
		return Okta{}, "", false, err
	}
	now := s.clock.Now()
	prev, err := s.store.GetTriggerIntegration(ctx, orgID, SourceOkta)
	switch {
	case errors.Is(err, store.ErrNotFound):
		secret = newSecret(OktaSecretPrefix)
		sealed, err := s.seal(ctx, orgID, SourceOkta, oktaSecrets{Secret: secret})
		if err != nil {
			return Okta{}, "", false, err
		}
		st, _ := json.Marshal(oktaSettings{OrgURL: orgURL, SecretHint: secrets.Redact(secret), RotatedAt: now})
		in, err := s.store.PutTriggerIntegration(ctx, store.PutTriggerIntegrationParams{
			OrgID: orgID, Kind: SourceOkta, HookID: newHookID(), Settings: st, SealedSecrets: sealed, At: now})
		if err != nil {
			return Okta{}, "", false, err
		}
		o, err := oktaView(in)
		return o, secret, true, err
	case err != nil:
		return Okta{}, "", false, err
	}
	var st oktaSettings
	if err := json.Unmarshal(prev.Settings, &st); err != nil {
		return Okta{}, "", false, fmt.Errorf("reading okta settings: %w", err)
	}
	st.OrgURL = orgURL
	raw, _ := json.Marshal(st)
	in, err := s.store.PutTriggerIntegration(ctx, store.PutTriggerIntegrationParams{
		OrgID: orgID, Kind: SourceOkta, HookID: prev.HookID, Settings: raw, SealedSecrets: prev.SealedSecrets, At: now})
	if err != nil {
		return Okta{}, "", false, err
	}
	o, err = oktaView(in)
	return o, "", false, err
}

// RotateOktaSecret replaces the hook's secret; the old one keeps working
// for SecretGrace, while the new one is entered at Okta.
func (s *Service) RotateOktaSecret(ctx context.Context, orgID string) (Okta, string, error) {
	prev, err := s.store.GetTriggerIntegration(ctx, orgID, SourceOkta)
	if err != nil {
		return Okta{}, "", err
	}
	var (
		old oktaSecrets
		st  oktaSettings
	)
	if err := s.open(ctx, prev, &old); err != nil {
		return Okta{}, "", err
	}
	if err := json.Unmarshal(prev.Settings, &st); err != nil {
		return Okta{}, "", fmt.Errorf("reading okta settings: %w", err)
	}
	now := s.clock.Now()
	secret := newSecret(OktaSecretPrefix)
	sealed, err := s.seal(ctx, orgID, SourceOkta, oktaSecrets{Secret: secret, Previous: old.Secret})
	if err != nil {
		return Okta{}, "", err
	}
	st.SecretHint, st.RotatedAt, st.PreviousUntil = secrets.Redact(secret), now, now.Add(s.cfg.SecretGrace)
	raw, _ := json.Marshal(st)
	in, err := s.store.PutTriggerIntegration(ctx, store.PutTriggerIntegrationParams{
		OrgID: orgID, Kind: SourceOkta, HookID: prev.HookID, Settings: raw, SealedSecrets: sealed, At: now})
	if err != nil {
		return Okta{}, "", err
	}
	s.log.Info("okta hook secret rotated", "org", orgID)
	o, err := oktaView(in)
	return o, secret, err
}

// GetOkta returns the org's Okta integration (ErrNotFound if none).
func (s *Service) GetOkta(ctx context.Context, orgID string) (Okta, error) {
	in, err := s.store.GetTriggerIntegration(ctx, orgID, SourceOkta)
	if err != nil {
		return Okta{}, err
	}
	return oktaView(in)
}

// DeleteOkta removes the org's Okta integration: its hook stops working.
func (s *Service) DeleteOkta(ctx context.Context, orgID string) error {
	return s.store.DeleteTriggerIntegration(ctx, orgID, SourceOkta)
}

// HRISSettings are what an admin sends to connect an HR system. Secrets
// left empty when the same provider is already connected keep their
// stored values.
type HRISSettings struct {
	Provider string

	// BambooHR: the company's subdomain (acme in acme.bamboohr.com), an
	// API key (to read an employee's email and status) and the webhook's
	// private key (to check its signature).
	Subdomain     string
	APIKey        string
	WebhookSecret string

	// Workday: the tenant's base URL, the RaaS report's URL, and either an
	// integration system user's Username and Password or an OAuth API
	// client (TokenURL, ClientID, ClientSecret) with a RefreshToken.
	BaseURL, ReportURL                             string
	Username, Password                             string
	TokenURL, ClientID, ClientSecret, RefreshToken string
	// PollInterval is how often the report is read (default 1h).
	PollInterval time.Duration
}

// HRIS is an org's HR system connection as admins see it (secrets as
// hints only).
type HRIS struct {
	Provider string
	// HookID names the org in BambooHR's webhook URL.
	HookID            string
	Subdomain         string
	APIKeyHint        string
	WebhookSecretHint string

	BaseURL, ReportURL string
	// Auth is "basic" or "oauth".
	Auth                               string
	Username, PasswordHint             string
	TokenURL, ClientID                 string
	ClientSecretHint, RefreshTokenHint string
	PollInterval                       time.Duration
	Poll                               *store.TriggerPoll
	CreatedAt, UpdatedAt               time.Time
}

type bambooSettings struct {
	Subdomain         string `json:"subdomain"`
	APIKeyHint        string `json:"api_key_hint"`
	WebhookSecretHint string `json:"webhook_secret_hint"`
}

type bambooSecrets struct {
	APIKey        string `json:"api_key"`
	WebhookSecret string `json:"webhook_secret"`
}

type workdaySettings struct {
	BaseURL          string `json:"base_url"`
	ReportURL        string `json:"report_url"`
	Auth             string `json:"auth"`
	Username         string `json:"username,omitempty"`
	PasswordHint     string `json:"password_hint,omitempty"`
	TokenURL         string `json:"token_url,omitempty"`
	ClientID         string `json:"client_id,omitempty"`
	ClientSecretHint string `json:"client_secret_hint,omitempty"`
	RefreshTokenHint string `json:"refresh_token_hint,omitempty"`
	PollSeconds      int64  `json:"poll_seconds"`
}

type workdaySecrets struct {
	Password     string `json:"password,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

var subdomainRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const maxSecretBytes = 4096

func checkSecret(name, v string, required bool) error {
	switch {
	case v == "" && required:
		return invalid("%s: required", name)
	case len(v) > maxSecretBytes || strings.ContainsAny(v, "\r\n"):
		return invalid("%s: at most %d bytes, one line", name, maxSecretBytes)
	}
	return nil
}

// checkHRISURL accepts an https URL on a Workday host (any http(s) URL
// with AllowAnyHRISURL), without credentials or a fragment.
func (s *Service) checkHRISURL(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > 2048 {
		return nil, invalid("%s: an https URL", name)
	}
	if s.cfg.AllowAnyHRISURL {
		if u.Scheme != "https" && u.Scheme != "http" {
			return nil, invalid("%s: an http(s) URL", name)
		}
		return u, nil
	}
	host := strings.ToLower(u.Hostname())
	if u.Scheme != "https" || !(strings.HasSuffix(host, ".workday.com") || strings.HasSuffix(host, ".myworkday.com")) {
		return nil, invalid("%s: an https URL on a Workday host (*.workday.com, *.myworkday.com)", name)
	}
	return u, nil
}

// PutHRIS connects the org's HR system, replacing any other provider's
// connection (an org has one HR system). A BambooHR connection gets a
// hook id for its webhook URL; a Workday connection's first poll runs at
// once.
func (s *Service) PutHRIS(ctx context.Context, orgID string, p HRISSettings) (HRIS, error) {
	now := s.clock.Now()
	prev, err := s.store.GetTriggerIntegration(ctx, orgID, p.Provider)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return HRIS{}, err
	}
	var (
		settings any
		sealed   []byte
		hookID   string
		interval time.Duration
	)
	switch p.Provider {
	case SourceBambooHR:
		p.Subdomain = strings.ToLower(strings.TrimSpace(p.Subdomain))
		if !subdomainRE.MatchString(p.Subdomain) {
			return HRIS{}, invalid("subdomain: the company's BambooHR subdomain, e.g. acme for acme.bamboohr.com")
		}
		var old bambooSecrets
		if exists {
			if err := s.open(ctx, prev, &old); err != nil {
				return HRIS{}, err
			}
			hookID = prev.HookID
		} else {
			hookID = newHookID()
		}
		sec := bambooSecrets{APIKey: orKeep(p.APIKey, old.APIKey), WebhookSecret: orKeep(p.WebhookSecret, old.WebhookSecret)}
		if err := errors.Join(checkSecret("api_key", sec.APIKey, true), checkSecret("webhook_secret", sec.WebhookSecret, true)); err != nil {
			return HRIS{}, err
		}
		if sealed, err = s.seal(ctx, orgID, p.Provider, sec); err != nil {
			return HRIS{}, err
		}
		settings = bambooSettings{Subdomain: p.Subdomain, APIKeyHint: secrets.Redact(sec.APIKey), WebhookSecretHint: secrets.Redact(sec.WebhookSecret)}
	case SourceWorkday:
		base, err := s.checkHRISURL("base_url", strings.TrimRight(p.BaseURL, "/"))
		if err != nil {
			return HRIS{}, err
		}
		report, err := s.checkHRISURL("report_url", p.ReportURL)
		if err != nil {
			return HRIS{}, err
		}
		if !strings.EqualFold(report.Host, base.Host) {
			return HRIS{}, invalid("report_url: must be on base_url's host")
		}
		interval = p.PollInterval
		if interval == 0 {
			interval = s.cfg.DefaultPollInterval
		}
		if interval < s.cfg.MinPollInterval || interval > 24*time.Hour || interval%time.Second != 0 {
			return HRIS{}, invalid("poll_interval: whole seconds from %s to 24h", s.cfg.MinPollInterval)
		}
		var old workdaySecrets
		if exists {
			if err := s.open(ctx, prev, &old); err != nil {
				return HRIS{}, err
			}
		}
		st := workdaySettings{BaseURL: base.String(), ReportURL: report.String(), PollSeconds: int64(interval / time.Second)}
		var sec workdaySecrets
		switch {
		case p.RefreshToken != "" || p.TokenURL != "" || p.ClientID != "":
			tok, err := s.checkHRISURL("token_url", p.TokenURL)
			if err != nil {
				return HRIS{}, err
			}
			if !strings.EqualFold(tok.Host, base.Host) {
				return HRIS{}, invalid("token_url: must be on base_url's host")
			}
			if p.ClientID == "" || len(p.ClientID) > 512 {
				return HRIS{}, invalid("client_id: required with OAuth, at most 512 bytes")
			}
			if p.Username != "" || p.Password != "" {
				return HRIS{}, invalid("username and password: not with OAuth; choose one")
			}
			sec = workdaySecrets{ClientSecret: orKeep(p.ClientSecret, old.ClientSecret), RefreshToken: orKeep(p.RefreshToken, old.RefreshToken)}
			if err := errors.Join(checkSecret("client_secret", sec.ClientSecret, true), checkSecret("refresh_token", sec.RefreshToken, true)); err != nil {
				return HRIS{}, err
			}
			st.Auth, st.TokenURL, st.ClientID = "oauth", tok.String(), p.ClientID
			st.ClientSecretHint, st.RefreshTokenHint = secrets.Redact(sec.ClientSecret), secrets.Redact(sec.RefreshToken)
		default:
			if p.Username == "" || len(p.Username) > 512 {
				return HRIS{}, invalid("username: the integration system user, required (or OAuth: token_url, client_id, client_secret, refresh_token)")
			}
			sec = workdaySecrets{Password: orKeep(p.Password, old.Password)}
			if err := checkSecret("password", sec.Password, true); err != nil {
				return HRIS{}, err
			}
			st.Auth, st.Username, st.PasswordHint = "basic", p.Username, secrets.Redact(sec.Password)
		}
		if sealed, err = s.seal(ctx, orgID, p.Provider, sec); err != nil {
			return HRIS{}, err
		}
		settings = st
	default:
		return HRIS{}, invalid("provider: bamboohr or workday")
	}
	raw, err := json.Marshal(settings)
	if err != nil {
		return HRIS{}, err
	}
	err = s.store.InTx(ctx, func(st store.Store, tx any) error {
		other := SourceWorkday
		if p.Provider == SourceWorkday {
			other = SourceBambooHR
		}
		if err := st.DeleteTriggerIntegration(ctx, orgID, other); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := st.PutTriggerIntegration(ctx, store.PutTriggerIntegrationParams{
			OrgID: orgID, Kind: p.Provider, HookID: hookID, Settings: raw, SealedSecrets: sealed, At: now}); err != nil {
			return err
		}
		if p.Provider != SourceWorkday {
			return nil
		}
		// The first poll (or the first under the new settings) runs now;
		// a run the old settings had scheduled finds itself superseded.
		poll, err := st.PutTriggerPoll(ctx, store.PutTriggerPollParams{OrgID: orgID, Source: SourceWorkday, Interval: interval, NextRunAt: now, At: now})
		if err != nil {
			return err
		}
		return s.enqueuePoll(ctx, tx, poll, store.NewID("cfg"))
	})
	if err != nil {
		return HRIS{}, err
	}
	s.log.Info("hr system connected", "org", orgID, "provider", p.Provider)
	return s.GetHRIS(ctx, orgID)
}

func orKeep(v, old string) string {
	if v == "" {
		return old
	}
	return v
}

// GetHRIS returns the org's HR system connection (ErrNotFound if none),
// with Workday's poll status.
func (s *Service) GetHRIS(ctx context.Context, orgID string) (HRIS, error) {
	for _, kind := range []string{SourceBambooHR, SourceWorkday} {
		in, err := s.store.GetTriggerIntegration(ctx, orgID, kind)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return HRIS{}, err
		}
		h := HRIS{Provider: kind, HookID: in.HookID, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt}
		switch kind {
		case SourceBambooHR:
			var st bambooSettings
			if err := json.Unmarshal(in.Settings, &st); err != nil {
				return HRIS{}, fmt.Errorf("reading bamboohr settings: %w", err)
			}
			h.Subdomain, h.APIKeyHint, h.WebhookSecretHint = st.Subdomain, st.APIKeyHint, st.WebhookSecretHint
		case SourceWorkday:
			var st workdaySettings
			if err := json.Unmarshal(in.Settings, &st); err != nil {
				return HRIS{}, fmt.Errorf("reading workday settings: %w", err)
			}
			h.BaseURL, h.ReportURL, h.Auth, h.Username, h.PasswordHint = st.BaseURL, st.ReportURL, st.Auth, st.Username, st.PasswordHint
			h.TokenURL, h.ClientID, h.ClientSecretHint, h.RefreshTokenHint = st.TokenURL, st.ClientID, st.ClientSecretHint, st.RefreshTokenHint
			h.PollInterval = time.Duration(st.PollSeconds) * time.Second
			poll, err := s.store.GetTriggerPoll(ctx, orgID, SourceWorkday)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return HRIS{}, err
			}
			if err == nil {
				h.Poll = &poll
			}
		}
		return h, nil
	}
	return HRIS{}, fmt.Errorf("hr system of org %s: %w", orgID, store.ErrNotFound)
}

// DeleteHRIS disconnects the org's HR system; a pending poll finds it gone.
func (s *Service) DeleteHRIS(ctx context.Context, orgID string) error {
	h, err := s.GetHRIS(ctx, orgID)
	if err != nil {
		return err
	}
	return s.store.DeleteTriggerIntegration(ctx, orgID, h.Provider)
}

// Retry puts an event that ended unknown_user or failed back in the queue
// (e.g. once the user exists).
func (s *Service) Retry(ctx context.Context, orgID, eventID string) (store.TriggerEvent, error) {
	var e store.TriggerEvent
	err := s.store.InTx(ctx, func(st store.Store, tx any) error {
		cur, err := st.GetTriggerEvent(ctx, orgID, eventID)
		if err != nil {
			return err
		}
		e, err = st.UpdateTriggerEvent(ctx, store.UpdateTriggerEventParams{
			OrgID: orgID, ID: eventID, From: []store.TriggerEventState{store.TriggerUnknownUser, store.TriggerFailed},
			State: store.TriggerPending, Attempts: cur.Attempts, Email: cur.Email, At: s.clock.Now(),
		})
		if err != nil {
			return err
		}
		return s.enqueueProcess(ctx, tx, e, true)
	})
	return e, err
}

// ListEvents lists the org's inbox.
func (s *Service) ListEvents(ctx context.Context, p store.ListTriggerEventsParams) (store.TriggerEventPage, error) {
	return s.store.ListTriggerEvents(ctx, p)
}

// GetEvent returns one inbox event.
func (s *Service) GetEvent(ctx context.Context, orgID, id string) (store.TriggerEvent, error) {
	return s.store.GetTriggerEvent(ctx, orgID, id)
}
