package store

import (
	"context"
	"encoding/json"
	"time"
)

// TriggerStore keeps what the identity-provider and HR triggers need: each
// org's integrations (their secrets sealed by the caller), every delivery
// and event received (the inbox, deduplicated exactly by the vendors' own
// ids), the vendor identities learned for users, and the pollers' status.
type TriggerStore interface {
	// PutTriggerIntegration creates or replaces an org's integration of a
	// kind, keeping when it was first created.
	PutTriggerIntegration(ctx context.Context, p PutTriggerIntegrationParams) (TriggerIntegration, error)
	GetTriggerIntegration(ctx context.Context, orgID, kind string) (TriggerIntegration, error)
	// GetTriggerIntegrationByHook finds the integration whose webhook URL
	// carries hookID, in any org (it establishes the org of a webhook).
	GetTriggerIntegrationByHook(ctx context.Context, hookID string) (TriggerIntegration, error)
	// ListTriggerIntegrations returns an org's integrations by kind.
	ListTriggerIntegrations(ctx context.Context, orgID string) ([]TriggerIntegration, error)
	// DeleteTriggerIntegration removes an integration and its poll status.
	DeleteTriggerIntegration(ctx context.Context, orgID, kind string) error

	// RecordTriggerDelivery records one delivery (a webhook request or a
	// poll). A second delivery with the same org, source and delivery id
	// is ErrConflict: that is how redeliveries and replays are recognized.
	RecordTriggerDelivery(ctx context.Context, p RecordTriggerDeliveryParams) error
	// AddTriggerEvent puts an event in the inbox, or returns the event
	// already there with the same org, source, subject and vendor event id
	// (added=false), unchanged.
	AddTriggerEvent(ctx context.Context, p AddTriggerEventParams) (e TriggerEvent, added bool, err error)
	GetTriggerEvent(ctx context.Context, orgID, id string) (TriggerEvent, error)
	// UpdateTriggerEvent records an event's progress. When From is not
	// empty the event must be in one of those states, else ErrConflict and
	// nothing changes: two workers never both finish an event.
	UpdateTriggerEvent(ctx context.Context, p UpdateTriggerEventParams) (TriggerEvent, error)
	// ListTriggerEvents lists an org's inbox, newest first, filtered and
	// paged by an opaque cursor.
	ListTriggerEvents(ctx context.Context, p ListTriggerEventsParams) (TriggerEventPage, error)

	// PutTriggerIdentity records (or moves) which user a vendor's id
	// names, e.g. an Okta user id or a BambooHR employee id.
	PutTriggerIdentity(ctx context.Context, p PutTriggerIdentityParams) error
	GetTriggerIdentity(ctx context.Context, orgID, source, externalID string) (TriggerIdentity, error)

	// PutTriggerPoll creates a poller's status or reschedules it (interval
	// and next run), keeping its history (last run, success, error, cursor).
	PutTriggerPoll(ctx context.Context, p PutTriggerPollParams) (TriggerPoll, error)
	GetTriggerPoll(ctx context.Context, orgID, source string) (TriggerPoll, error)
	// FinishTriggerPoll records a run's outcome and the next run, only if
	// the poll's next run is still ExpectNextRunAt (the run that was due),
	// else ErrConflict: a run superseded by a new configuration, or
	// already recorded by another replica, changes nothing.
	FinishTriggerPoll(ctx context.Context, p FinishTriggerPollParams) (TriggerPoll, error)
	// ListTriggerPollSchedules returns every org's pollers and their next
	// run, across orgs, so a scheduler can make sure each has its job.
	ListTriggerPollSchedules(ctx context.Context) ([]TriggerPollSchedule, error)
}

// TriggerIntegration is an org's connection to one identity provider or
// HR system ("okta", "bamboohr", "workday").
type TriggerIntegration struct {
	OrgID string
	Kind  string
	// HookID is the random id in the integration's webhook URL; empty for
	// polled integrations.
	HookID string
	// Settings are the integration's non-secret settings (JSON, including
	// the secrets' redacted hints).
	Settings json.RawMessage
	// SealedSecrets are the integration's secrets, envelope-encrypted by
	// the caller.
	SealedSecrets []byte
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

type PutTriggerIntegrationParams struct {
	OrgID         string
	Kind          string
	HookID        string
	Settings      json.RawMessage
	SealedSecrets []byte
	At            time.Time
}

// RecordTriggerDeliveryParams describes one delivery.
type RecordTriggerDeliveryParams struct {
	OrgID  string
	Source string
	// DeliveryID is the vendor's id of the delivery (Okta's eventId), or
	// what identifies it otherwise (a hash of BambooHR's signature, a poll
	// run's id).
	DeliveryID string
	// PayloadSHA256 is the SHA-256 of the raw body received.
	PayloadSHA256 []byte
	// Events counts the events it carried, Accepted those put in the inbox.
	Events, Accepted int
	ReceivedAt       time.Time
}

// TriggerEventState is where an inbox event stands.
type TriggerEventState string

const (
	// TriggerPending: received, not yet processed.
	TriggerPending TriggerEventState = "pending"
	// TriggerScheduled: a termination dated in the future; processed at DueAt.
	TriggerScheduled TriggerEventState = "scheduled"
	// TriggerProcessed: the lockout was started (or already open).
	TriggerProcessed TriggerEventState = "processed"
	// TriggerIgnored: not a departure after all (e.g. a BambooHR update
	// that is not a termination).
	TriggerIgnored TriggerEventState = "ignored"
	// TriggerUnknownUser: no user of the org matches; kept for admins.
	TriggerUnknownUser TriggerEventState = "unknown_user"
	// TriggerFailed: processing gave up (e.g. the vendor's API kept failing).
	TriggerFailed TriggerEventState = "failed"
)

// TriggerEventStates lists every state, for validation.
var TriggerEventStates = []TriggerEventState{TriggerPending, TriggerScheduled, TriggerProcessed, TriggerIgnored, TriggerUnknownUser, TriggerFailed}

// TriggerEvent is one event in the inbox.
type TriggerEvent struct {
	ID         string
	OrgID      string
	Source     string
	DeliveryID string
	// Subject is whom the vendor's event is about (an Okta user id, a
	// BambooHR employee id, a Workday worker id); VendorEventID the
	// vendor's id of the event (Okta's uuid, a Workday event id). Together
	// they are unique per org and source.
	Subject       string
	VendorEventID string
	EventType     string
	// Email is the user's email as the vendor gave it (lower-cased), or as
	// found later; empty when unknown.
	Email string
	// PayloadSHA256 is the SHA-256 of the delivery's raw body.
	PayloadSHA256 []byte
	// Detail is what was read from the event (JSON).
	Detail     json.RawMessage
	State      TriggerEventState
	DueAt      time.Time
	Attempts   int
	LastError  string
	UserID     string
	LockoutID  string
	ReceivedAt time.Time
	UpdatedAt  time.Time
	// ProcessedAt is when the event reached a final state.
	ProcessedAt *time.Time
}

type AddTriggerEventParams struct {
	OrgID         string
	Source        string
	DeliveryID    string
	Subject       string
	VendorEventID string
	EventType     string
	Email         string
	PayloadSHA256 []byte
	Detail        json.RawMessage
	State         TriggerEventState
	DueAt         time.Time
	ReceivedAt    time.Time
}

// UpdateTriggerEventParams replaces an event's mutable fields. A nil
// Detail keeps the stored one.
type UpdateTriggerEventParams struct {
	OrgID string
	ID    string
	// From, when not empty, lists the states the event must be in.
	From      []TriggerEventState
	State     TriggerEventState
	DueAt     time.Time
	Attempts  int
	LastError string
	Email     string
	UserID    string
	LockoutID string
	Detail    json.RawMessage
	At        time.Time
}

type ListTriggerEventsParams struct {
	OrgID string
	// Source, State and Email filter when set.
	Source string
	State  TriggerEventState
	Email  string
	// Cursor continues a previous page; empty starts at the newest.
	Cursor string
	// Limit defaults to 50, at most 500.
	Limit int
}

type TriggerEventPage struct {
	Events []TriggerEvent
	// NextCursor is empty on the last page.
	NextCursor string
}

// TriggerIdentity says which user a vendor's id names.
type TriggerIdentity struct {
	OrgID      string
	Source     string
	ExternalID string
	UserID     string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

type PutTriggerIdentityParams struct {
	OrgID      string
	Source     string
	ExternalID string
	UserID     string
	At         time.Time
}

// TriggerPoll is a poller's schedule and history for one org.
type TriggerPoll struct {
	OrgID     string
	Source    string
	Interval  time.Duration
	NextRunAt time.Time
	// LastRunAt, LastSuccessAt are zero until the first run, success.
	LastRunAt     time.Time
	LastSuccessAt time.Time
	// LastError is the last run's error; empty after a success.
	LastError string
	// Cursor is where the next run's window starts (before its overlap).
	Cursor    time.Time
	UpdatedAt time.Time
}

type PutTriggerPollParams struct {
	OrgID     string
	Source    string
	Interval  time.Duration
	NextRunAt time.Time
	At        time.Time
}

type FinishTriggerPollParams struct {
	OrgID           string
	Source          string
	ExpectNextRunAt time.Time
	// Err is the run's error; empty for a success, which also moves the
	// cursor to Cursor.
	Err       string
	Cursor    time.Time
	NextRunAt time.Time
	At        time.Time
}

// TriggerPollSchedule is one org's poller and its next run.
type TriggerPollSchedule struct {
	OrgID     string
	Source    string
	NextRunAt time.Time
}
