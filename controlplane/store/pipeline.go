package store

import (
	"context"
	"encoding/json"
	"time"
)

// PipelineStore keeps the lockout pipeline's progress: each step's state,
// each provider's revocation with its confirmation, every trigger that
// asked for a lockout, and the orgs' provider connections.
type PipelineStore interface {
	// InitLockoutSteps records the pipeline's steps for a lockout as
	// pending. Steps already recorded are left as they are.
	InitLockoutSteps(ctx context.Context, p InitLockoutStepsParams) error
	// UpdateLockoutStep sets a step's state, attempts and error.
	UpdateLockoutStep(ctx context.Context, p UpdateLockoutStepParams) (LockoutStep, error)
	// ListLockoutSteps returns a lockout's steps in the order they were initialized.
	ListLockoutSteps(ctx context.Context, orgID, lockoutID string) ([]LockoutStep, error)

	// PutProviderRevocation creates or replaces one provider's revocation
	// record for a lockout.
	PutProviderRevocation(ctx context.Context, p PutProviderRevocationParams) (ProviderRevocation, error)
	GetProviderRevocation(ctx context.Context, orgID, lockoutID, provider string) (ProviderRevocation, error)
	// ListProviderRevocations returns a lockout's revocations by provider name.
	ListProviderRevocations(ctx context.Context, orgID, lockoutID string) ([]ProviderRevocation, error)

	// PutUsageCapture creates or replaces one provider's capture of the
	// user's usage for a lockout (taken before the revocation).
	PutUsageCapture(ctx context.Context, p PutUsageCaptureParams) (UsageCapture, error)
	// ListUsageCaptures returns a lockout's captures by provider name.
	ListUsageCaptures(ctx context.Context, orgID, lockoutID string) ([]UsageCapture, error)

	// AddLockoutTrigger records that something asked for the lockout (the
	// first trigger, and every later one for the same open lockout).
	AddLockoutTrigger(ctx context.Context, p AddLockoutTriggerParams) error
	// ListLockoutTriggers returns a lockout's triggers, oldest first.
	ListLockoutTriggers(ctx context.Context, orgID, lockoutID string) ([]LockoutTrigger, error)
	// ListLockoutsPage lists an org's lockouts, newest first, filtered and
	// paged by an opaque cursor.
	ListLockoutsPage(ctx context.Context, p ListLockoutsParams) (LockoutPage, error)

	// PutProviderConnection creates or replaces an org's connection to a
	// provider (the admin key sealed by the caller).
	PutProviderConnection(ctx context.Context, p PutProviderConnectionParams) (ProviderConnection, error)
	GetProviderConnection(ctx context.Context, orgID, provider string) (ProviderConnection, error)
	// ListProviderConnections returns an org's connections by provider name.
	ListProviderConnections(ctx context.Context, orgID string) ([]ProviderConnection, error)
	DeleteProviderConnection(ctx context.Context, orgID, provider string) error
}

// StepState is where a pipeline step stands.
type StepState string

const (
	StepPending StepState = "pending"
	StepRunning StepState = "running"
	StepDone    StepState = "done"
	// StepUnconfirmed: the step gave up after its retry budget, or on a
	// permanent error; the pipeline went on and the record says why.
	StepUnconfirmed StepState = "unconfirmed"
)

// LockoutStep is one step of a lockout's pipeline.
type LockoutStep struct {
	OrgID      string
	LockoutID  string
	Step       string
	State      StepState
	Attempts   int
	LastError  string
	StartedAt  *time.Time
	FinishedAt *time.Time
	UpdatedAt  time.Time
}

type InitLockoutStepsParams struct {
	OrgID     string
	LockoutID string
	Steps     []string
	At        time.Time
}

type UpdateLockoutStepParams struct {
	OrgID     string
	LockoutID string
	Step      string
	State     StepState
	Attempts  int
	LastError string
	At        time.Time
}

// RevocationState is where one provider's revocation stands.
type RevocationState string

const (
	RevocationPending     RevocationState = "pending"
	RevocationConfirmed   RevocationState = "confirmed"
	RevocationUnconfirmed RevocationState = "unconfirmed"
)

// ProviderRevocation is one provider's part of a lockout.
type ProviderRevocation struct {
	OrgID     string
	LockoutID string
	Provider  string
	State     RevocationState
	Attempts  int
	// Confirmation is the provider's evidence (providers.Revocation as JSON).
	Confirmation json.RawMessage
	LastError    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

type PutProviderRevocationParams struct {
	OrgID        string
	LockoutID    string
	Provider     string
	State        RevocationState
	Attempts     int
	Confirmation json.RawMessage
	LastError    string
	At           time.Time
}

// LockoutTrigger is one request for a lockout.
type LockoutTrigger struct {
	OrgID     string
	LockoutID string
	// Source says what asked ("api:key_…", "okta", "scim", ...).
	Source string
	// Evidence is the source's own record (event ids, payload hash), JSON.
	Evidence json.RawMessage
	At       time.Time
}

type AddLockoutTriggerParams struct {
	OrgID     string
	LockoutID string
	Source    string
	Evidence  json.RawMessage
	At        time.Time
}

type ListLockoutsParams struct {
	OrgID string
	// State and UserID filter when set.
	State  LockoutState
	UserID string
	// Cursor continues a previous page; empty starts at the newest.
	Cursor string
	// Limit defaults to 50, at most 500.
	Limit int
}

type LockoutPage struct {
	Lockouts []Lockout
	// NextCursor is empty on the last page.
	NextCursor string
}

// ProviderConnection is an org's admin credential for one LLM provider.
type ProviderConnection struct {
	OrgID    string
	Provider string
	// SealedKey is the admin key, envelope-encrypted by the caller.
	SealedKey []byte
	// KeyHint shows the key's last characters, for people.
	KeyHint     string
	BaseURL     string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ValidatedAt time.Time
}

type PutProviderConnectionParams struct {
	OrgID       string
	Provider    string
	SealedKey   []byte
	KeyHint     string
	BaseURL     string
	At          time.Time
	ValidatedAt time.Time
}

// CaptureState is where one provider's usage capture stands.
type CaptureState string

const (
	CapturePending  CaptureState = "pending"
	CaptureCaptured CaptureState = "captured"
	// CaptureFailed: given up so that the revocation could go on; the
	// record says why.
	CaptureFailed CaptureState = "failed"
)

// UsageCapture is a provider's record of the departing user's usage in the
// window before the lockout, taken before they were removed there.
type UsageCapture struct {
	OrgID      string
	LockoutID  string
	Provider   string
	State      CaptureState
	Attempts   int
	WindowFrom time.Time
	WindowTo   time.Time
	// Capture is the provider's usage and the calls that fetched it
	// (providers.UsageCapture as JSON).
	Capture   json.RawMessage
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PutUsageCaptureParams replaces a capture record.
type PutUsageCaptureParams struct {
	OrgID      string
	LockoutID  string
	Provider   string
	State      CaptureState
	Attempts   int
	WindowFrom time.Time
	WindowTo   time.Time
	Capture    json.RawMessage
	LastError  string
	At         time.Time
}
