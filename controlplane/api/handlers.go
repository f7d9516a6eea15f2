package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/platform"
)

// Limits on what the API accepts.
const (
	maxNameLen            = 200
	maxReasonLen          = 2000
	maxPolicyEntries      = 1000
	defaultEnrollmentTTL  = 7 * 24 * time.Hour
	maxEnrollmentTTL      = 90 * 24 * time.Hour
	minEnrollmentTTL      = 10 * time.Minute
	enrollmentSecretUsage = "give it to your MDM with the server address and CA pin; it is shown only once"
)

type userView struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func newUserView(u store.User) userView {
	return userView{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: u.CreatedAt.UTC()}
}

type deviceView struct {
	ID                string            `json:"id"`
	UserID            string            `json:"user_id"`
	Hostname          string            `json:"hostname"`
	OS                string            `json:"os"`
	OSVersion         string            `json:"os_version,omitempty"`
	Arch              string            `json:"arch,omitempty"`
	Serial            string            `json:"serial,omitempty"`
	AgentVersion      string            `json:"agent_version"`
	Online            bool              `json:"online"`
	LastSeenAt        *time.Time        `json:"last_seen_at"`
	LockState         store.LockState   `json:"lock_state"`
	EnforcementActive bool              `json:"enforcement_active"`
	Enforcers         []string          `json:"enforcers"`
	Unsupported       map[string]string `json:"unsupported,omitempty"`
	LastAppliedSeq    uint64            `json:"last_applied_sequence"`
	CertNotAfter      time.Time         `json:"certificate_not_after"`
	CreatedAt         time.Time         `json:"enrolled_at"`
	RevokedAt         *time.Time        `json:"revoked_at,omitempty"`
}

func newDeviceView(d store.Device) deviceView {
	enf := d.Enforcers
	if enf == nil {
		enf = []string{}
	}
	return deviceView{
		ID: d.ID, UserID: d.UserID, Hostname: d.Hostname, OS: d.OS, OSVersion: d.OSVersion, Arch: d.Arch,
		Serial: d.Serial, AgentVersion: d.AgentVersion, Online: d.Connected, LastSeenAt: timePtr(d.LastSeenAt),
		LockState: d.LockState, EnforcementActive: d.EnforcementActive, Enforcers: enf, Unsupported: d.Unsupported,
		LastAppliedSeq: d.LastAppliedSeq, CertNotAfter: d.CertNotAfter.UTC(), CreatedAt: d.CreatedAt.UTC(),
		RevokedAt: timePtr(d.RevokedAt),
	}
}

type list[T any] struct {
	Data []T `json:"data"`
}

func (s *Server) listUsers(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	users, err := s.store.ListUsers(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	out := list[userView]{Data: []userView{}}
	for _, u := range users {
		out.Data = append(out.Data, newUserView(u))
	}
	return http.StatusOK, out, nil
}

func (s *Server) getUser(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	u, err := s.store.GetUser(ctx, p.key.OrgID, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newUserView(u), nil
}

func (s *Server) listDevices(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	params := store.ListDevicesParams{OrgID: p.key.OrgID, IncludeRevoked: r.URL.Query().Get("include_revoked") == "true"}
	if email := r.URL.Query().Get("email"); email != "" {
		u, err := s.store.GetUserByEmail(ctx, p.key.OrgID, strings.ToLower(email))
		if errors.Is(err, store.ErrNotFound) {
			return http.StatusOK, list[deviceView]{Data: []deviceView{}}, nil
		}
		if err != nil {
			return 0, nil, err
		}
		params.UserID = u.ID
	}
	devices, err := s.store.ListDevices(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	out := list[deviceView]{Data: []deviceView{}}
	for _, d := range devices {
		out.Data = append(out.Data, newDeviceView(d))
	}
	return http.StatusOK, out, nil
}

func (s *Server) getDevice(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	d, err := s.store.GetDevice(ctx, p.key.OrgID, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newDeviceView(d), nil
}

func (s *Server) revokeDevice(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if err := s.store.RevokeDevice(ctx, p.key.OrgID, id, s.clock.Now()); err != nil {
		return 0, nil, err
	}
	s.fleet.Disconnect(p.key.OrgID, id)
	s.log.Info("device revoked", "org", p.key.OrgID, "device", id, "actor", p.actor())
	return s.getDevice(ctx, p, r)
}

type enrollmentSecretView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Secret    string     `json:"secret,omitempty"`
	Usage     string     `json:"usage,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func newEnrollmentSecretView(e store.EnrollmentSecret) enrollmentSecretView {
	return enrollmentSecretView{ID: e.ID, Name: e.Name, CreatedAt: e.CreatedAt.UTC(), ExpiresAt: e.ExpiresAt.UTC(), RevokedAt: timePtr(e.RevokedAt)}
}

func (s *Server) listEnrollmentSecrets(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	secrets, err := s.store.ListEnrollmentSecrets(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	out := list[enrollmentSecretView]{Data: []enrollmentSecretView{}}
	for _, e := range secrets {
		out.Data = append(out.Data, newEnrollmentSecretView(e))
	}
	return http.StatusOK, out, nil
}

type createEnrollmentSecretRequest struct {
	Name string `json:"name"`
	// TTL is a Go duration ("168h"); default 7 days, 10 minutes to 90 days.
	TTL string `json:"ttl"`
}

func (s *Server) createEnrollmentSecret(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req createEnrollmentSecretRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkName(req.Name); err != nil {
		return 0, nil, err
	}
	ttl := defaultEnrollmentTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < minEnrollmentTTL || d > maxEnrollmentTTL {
			return 0, nil, invalid("ttl: a duration such as \"168h\", from 10m to 2160h")
		}
		ttl = d
	}
	secret, view, err := CreateEnrollmentSecret(ctx, s.store, p.key.OrgID, req.Name, s.clock.Now(), ttl)
	if err != nil {
		return 0, nil, err
	}
	view.Secret = secret
	view.Usage = enrollmentSecretUsage
	s.log.Info("enrollment secret created", "org", p.key.OrgID, "id", view.ID, "actor", p.actor())
	return http.StatusCreated, view, nil
}

// CreateEnrollmentSecret makes a new enrollment secret for the org and
// returns it (the only time it exists in clear) with its record.
func CreateEnrollmentSecret(ctx context.Context, st store.Store, orgID, name string, now time.Time, ttl time.Duration) (string, enrollmentSecretView, error) {
	secret := NewSecret(EnrollmentSecretPrefix)
	e, err := st.CreateEnrollmentSecret(ctx, store.CreateEnrollmentSecretParams{
		OrgID: orgID, Name: name, Hash: HashSecret(secret), CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		return "", enrollmentSecretView{}, fmt.Errorf("creating enrollment secret: %w", err)
	}
	return secret, newEnrollmentSecretView(e), nil
}

func (s *Server) revokeEnrollmentSecret(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	if err := s.store.RevokeEnrollmentSecret(ctx, p.key.OrgID, r.PathValue("id"), s.clock.Now()); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

type policyView struct {
	Version        uint64    `json:"version"`
	Domains        []string  `json:"domains"`
	CIDRs          []string  `json:"cidrs"`
	DefaultDomains []string  `json:"default_domains"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
}

func newPolicyView(pol store.Policy) policyView {
	v := policyView{Version: pol.Version, Domains: pol.Domains, CIDRs: pol.CIDRs, DefaultDomains: platform.DefaultDomains(), UpdatedAt: pol.UpdatedAt.UTC()}
	if v.Domains == nil {
		v.Domains = []string{}
	}
	if v.CIDRs == nil {
		v.CIDRs = []string{}
	}
	return v
}

func (s *Server) getPolicy(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	pol, err := s.store.GetPolicy(ctx, p.key.OrgID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, newPolicyView(pol), nil
}

type putPolicyRequest struct {
	Domains []string `json:"domains"`
	CIDRs   []string `json:"cidrs"`
}

func (s *Server) putPolicy(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req putPolicyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if len(req.Domains)+len(req.CIDRs) > maxPolicyEntries {
		return 0, nil, invalid(fmt.Sprintf("at most %d domains and CIDRs in all", maxPolicyEntries))
	}
	domains := make([]string, 0, len(req.Domains))
	for i, d := range req.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if err := platform.ValidateDomain(d); err != nil {
			return 0, nil, invalid(fmt.Sprintf("domains[%d]: %v", i, err))
		}
		domains = append(domains, d)
	}
	cidrs := make([]string, 0, len(req.CIDRs))
	for i, c := range req.CIDRs {
		pfx, err := platform.ParseCIDR(strings.TrimSpace(c))
		if err != nil {
			return 0, nil, invalid(fmt.Sprintf("cidrs[%d]: %v", i, err))
		}
		cidrs = append(cidrs, pfx.String())
	}
	slices.Sort(domains)
	slices.Sort(cidrs)
	pol, err := s.store.PutPolicy(ctx, store.PutPolicyParams{
		OrgID: p.key.OrgID, Domains: slices.Compact(domains), CIDRs: slices.Compact(cidrs), UpdatedAt: s.clock.Now(),
	})
	if err != nil {
		return 0, nil, err
	}
	if err := s.lockout.PolicyChanged(ctx, p.key.OrgID); err != nil {
		return 0, nil, err
	}
	s.log.Info("policy updated", "org", p.key.OrgID, "version", pol.Version, "actor", p.actor())
	return http.StatusOK, newPolicyView(pol), nil
}

type lockoutDeviceView struct {
	DeviceID    string             `json:"device_id"`
	Hostname    string             `json:"hostname,omitempty"`
	Kind        store.CommandKind  `json:"kind"`
	Sequence    uint64             `json:"sequence"`
	State       store.CommandState `json:"state"`
	Reason      string             `json:"reason,omitempty"`
	Detail      string             `json:"detail,omitempty"`
	SentAt      time.Time          `json:"issued_at"`
	DeliveredAt *time.Time         `json:"delivered_at,omitempty"`
	AckedAt     *time.Time         `json:"acked_at,omitempty"`
	// CommandsSent counts this lockout's commands of this kind to the
	// device: one per lock or unlock, whatever crashes or retries happened.
	CommandsSent int `json:"commands_sent"`
}

type stepView struct {
	Step       string          `json:"step"`
	State      store.StepState `json:"state"`
	Attempts   int             `json:"attempts"`
	Note       string          `json:"note,omitempty"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

type providerRevocationView struct {
	Provider     string                `json:"provider"`
	State        store.RevocationState `json:"state"`
	Attempts     int                   `json:"attempts"`
	LastError    string                `json:"last_error,omitempty"`
	Confirmation json.RawMessage       `json:"confirmation,omitempty"`
	UpdatedAt    time.Time             `json:"updated_at"`
}

type usageCaptureView struct {
	Provider   string             `json:"provider"`
	State      store.CaptureState `json:"state"`
	Attempts   int                `json:"attempts"`
	WindowFrom time.Time          `json:"window_from"`
	WindowTo   time.Time          `json:"window_to"`
	LastError  string             `json:"last_error,omitempty"`
	Capture    json.RawMessage    `json:"capture,omitempty"`
	UpdatedAt  time.Time          `json:"updated_at"`
}

type triggerView struct {
	Source   string          `json:"source"`
	At       time.Time       `json:"at"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
}

type lockoutView struct {
	ID             string                   `json:"id"`
	State          store.LockoutState       `json:"state"`
	User           userView                 `json:"user"`
	Trigger        string                   `json:"trigger"`
	CreatedAt      time.Time                `json:"created_at"`
	OverriddenAt   *time.Time               `json:"overridden_at,omitempty"`
	OverrideReason string                   `json:"override_reason,omitempty"`
	OverrideActor  string                   `json:"override_actor,omitempty"`
	Existing       bool                     `json:"existing,omitempty"`
	Steps          []stepView               `json:"steps"`
	UsageCaptures  []usageCaptureView       `json:"usage_captures"`
	Providers      []providerRevocationView `json:"providers"`
	Devices        []lockoutDeviceView      `json:"devices"`
	Triggers       []triggerView            `json:"triggers"`
}

// revokeStepState is the revocation step as its providers' records make
// it: running while any is pending, unconfirmed if any gave up, else done.
func revokeStepState(revs []store.ProviderRevocation) store.StepState {
	state := store.StepDone
	for _, r := range revs {
		switch r.State {
		case store.RevocationPending:
			return store.StepRunning
		case store.RevocationUnconfirmed:
			state = store.StepUnconfirmed
		}
	}
	return state
}

// captureStepState is the usage capture step as the providers' records
// make it; a provider that has not captured yet keeps it running.
func captureStepState(revs []store.ProviderRevocation, caps []store.UsageCapture) store.StepState {
	state := store.StepDone
	if len(caps) < len(revs) {
		state = store.StepRunning
	}
	for _, c := range caps {
		switch c.State {
		case store.CapturePending:
			return store.StepRunning
		case store.CaptureFailed:
			state = store.StepUnconfirmed
		}
	}
	return state
}

// newLockoutView shows, per device, the newest command of the lockout.
func (s *Server) newLockoutView(ctx context.Context, res lockout.Result) (lockoutView, error) {
	l := res.Lockout
	v := lockoutView{
		ID: l.ID, State: l.State, User: newUserView(res.User), Trigger: l.Trigger, CreatedAt: l.CreatedAt.UTC(),
		OverriddenAt: timePtr(l.OverriddenAt), OverrideReason: l.OverrideReason, OverrideActor: l.OverrideActor,
		Devices: []lockoutDeviceView{},
		Steps:   []stepView{}, Providers: []providerRevocationView{}, Triggers: []triggerView{},
	}
	for _, st := range res.Steps {
		sv := stepView{Step: st.Step, State: st.State, Attempts: st.Attempts, Note: st.LastError,
			StartedAt: timePtr(st.StartedAt), FinishedAt: timePtr(st.FinishedAt)}
		if len(res.Revocations) > 0 {
			switch st.Step {
			case pipeline.StepRevoke:
				sv.State = revokeStepState(res.Revocations)
			case pipeline.StepCapture:
				sv.State = captureStepState(res.Revocations, res.Captures)
			}
		}
		v.Steps = append(v.Steps, sv)
	}
	for _, r := range res.Revocations {
		v.Providers = append(v.Providers, providerRevocationView{
			Provider: r.Provider, State: r.State, Attempts: r.Attempts, LastError: r.LastError,
			Confirmation: r.Confirmation, UpdatedAt: r.UpdatedAt.UTC(),
		})
	}
	for _, c := range res.Captures {
		v.UsageCaptures = append(v.UsageCaptures, usageCaptureView{
			Provider: c.Provider, State: c.State, Attempts: c.Attempts, WindowFrom: c.WindowFrom.UTC(), WindowTo: c.WindowTo.UTC(),
			LastError: c.LastError, Capture: c.Capture, UpdatedAt: c.UpdatedAt.UTC(),
		})
	}
	for _, tr := range res.Triggers {
		v.Triggers = append(v.Triggers, triggerView{Source: tr.Source, At: tr.At.UTC(), Evidence: tr.Evidence})
	}
	latest := map[string]store.Command{}
	sent := map[string]map[store.CommandKind]int{}
	var order []string
	for _, c := range res.Commands {
		if sent[c.DeviceID] == nil {
			sent[c.DeviceID] = map[store.CommandKind]int{}
		}
		// An expired, re-issued command is the same step sent again.
		if c.Reason != "expired_undelivered" {
			sent[c.DeviceID][c.Kind]++
		}
		prev, ok := latest[c.DeviceID]
		if !ok {
			order = append(order, c.DeviceID)
		}
		if !ok || c.Seq > prev.Seq {
			latest[c.DeviceID] = c
		}
	}
	for _, id := range order {
		c := latest[id]
		dv := lockoutDeviceView{
			DeviceID: id, Kind: c.Kind, Sequence: c.Seq, State: c.State, Reason: c.Reason, Detail: c.Detail,
			SentAt: c.CreatedAt.UTC(), DeliveredAt: timePtr(c.DeliveredAt), AckedAt: timePtr(c.AckedAt),
			CommandsSent: sent[id][c.Kind],
		}
		if d, err := s.store.GetDevice(ctx, l.OrgID, id); err == nil {
			dv.Hostname = d.Hostname
		} else if !errors.Is(err, store.ErrNotFound) {
			return lockoutView{}, err
		}
		v.Devices = append(v.Devices, dv)
	}
	return v, nil
}

type lockoutList struct {
	Data       []lockoutView `json:"data"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

func (s *Server) listLockouts(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	params := store.ListLockoutsParams{OrgID: p.key.OrgID, Cursor: q.Get("cursor")}
	switch st := store.LockoutState(q.Get("state")); st {
	case "", store.LockoutOpen, store.LockoutOverridden:
		params.State = st
	default:
		return 0, nil, invalid("state: open or overridden")
	}
	if email := q.Get("email"); email != "" {
		u, err := s.store.GetUserByEmail(ctx, p.key.OrgID, strings.ToLower(email))
		if errors.Is(err, store.ErrNotFound) {
			return http.StatusOK, lockoutList{Data: []lockoutView{}}, nil
		}
		if err != nil {
			return 0, nil, err
		}
		params.UserID = u.ID
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return 0, nil, invalid("limit: 1 to 500")
		}
		params.Limit = n
	}
	page, err := s.store.ListLockoutsPage(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	out := lockoutList{Data: []lockoutView{}, NextCursor: page.NextCursor}
	for _, l := range page.Lockouts {
		res, err := s.lockout.Get(ctx, p.key.OrgID, l.ID)
		if err != nil {
			return 0, nil, err
		}
		v, err := s.newLockoutView(ctx, res)
		if err != nil {
			return 0, nil, err
		}
		out.Data = append(out.Data, v)
	}
	return http.StatusOK, out, nil
}

type createLockoutRequest struct {
	Email string `json:"email"`
}

func (s *Server) createLockout(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req createLockoutRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	email := strings.ToLower(strings.TrimSpace(req.Email))
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 {
		return 0, nil, invalid("email: a plain email address is required")
	}
	res, err := s.lockout.LockUser(ctx, p.key.OrgID, email, p.actor(), nil)
	if err != nil {
		return 0, nil, err
	}
	v, err := s.newLockoutView(ctx, res)
	if err != nil {
		return 0, nil, err
	}
	v.Existing = !res.Created
	status := http.StatusCreated
	if !res.Created {
		status = http.StatusOK
	}
	return status, v, nil
}

func (s *Server) getLockout(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	res, err := s.lockout.Get(ctx, p.key.OrgID, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	v, err := s.newLockoutView(ctx, res)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

type overrideRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) overrideLockout(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	var req overrideRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" || len(reason) > maxReasonLen {
		return 0, nil, invalid(fmt.Sprintf("reason: required, at most %d bytes", maxReasonLen))
	}
	res, err := s.lockout.Override(ctx, p.key.OrgID, r.PathValue("id"), reason, p.actor())
	if err != nil {
		return 0, nil, err
	}
	v, err := s.newLockoutView(ctx, res)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v, nil
}

func checkName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > maxNameLen {
		return invalid(fmt.Sprintf("name: required, at most %d bytes", maxNameLen))
	}
	return nil
}
