package store

import (
	"context"
	"time"
)

// UsageStore keeps what the org's users did with LLMs: connections their
// devices saw (agent telemetry) and the providers' own usage records, the
// raw material of the anomaly detection and the usage summaries.
//
// Events are kept per org and read per user in time order; they carry no
// foreign keys (ingestion must stay fast), so a UserID is whatever the
// writer attributed, resolved by the caller in the same org.
type UsageStore interface {
	// AppendDeviceUsage stores one agent batch exactly once: when BatchSeq
	// is not above the device's last applied batch, nothing is stored and
	// applied is false (the agent re-sent it). The batch sequence and the
	// events are stored in one transaction. A device not in the org is
	// ErrNotFound. Each event's OrgID, DeviceID and Source are taken from
	// the params; an event's empty UserID becomes p.UserID.
	AppendDeviceUsage(ctx context.Context, p AppendDeviceUsageParams) (applied bool, err error)
	// UpsertProviderUsage stores provider usage rows, replacing any stored
	// row of the same org, provider and Key (so overlapping polls of the
	// same bucket replace rather than double-count). Every event needs a
	// Key; their Source is set to provider.
	UpsertProviderUsage(ctx context.Context, p UpsertProviderUsageParams) error
	// ScanUserUsage calls fn with each of the user's events whose StartedAt
	// is in [From, To), ordered by StartedAt, without holding them all in
	// memory. An error from fn stops the scan and is returned. fn must not
	// call the store (the scan may hold its connection or transaction).
	ScanUserUsage(ctx context.Context, p ScanUserUsageParams, fn func(UsageEvent) error) error
	// SummarizeUserUsage totals the user's events in [From, To) by UTC day,
	// source, provider and model, ordered by those.
	SummarizeUserUsage(ctx context.Context, p SummarizeUserUsageParams) ([]UsageSummary, error)
	// ListUsageDays totals every user's attributed events in [From, To) by
	// user and UTC day (ordered so), for the org's peer baseline.
	ListUsageDays(ctx context.Context, p ListUsageDaysParams) ([]UsageDay, error)
	// GetUsageCursor returns how far an org's usage from a provider has been
	// ingested; ErrNotFound before the first ingestion.
	GetUsageCursor(ctx context.Context, orgID, provider string) (UsageCursor, error)
	// PutUsageCursor creates or replaces an org's cursor for a provider.
	PutUsageCursor(ctx context.Context, p PutUsageCursorParams) (UsageCursor, error)
	// DeleteUsageBefore removes, in every org, up to limit events that
	// started before the cutoff (retention), and says how many it removed;
	// callers repeat until fewer than limit are gone.
	DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int64, error)
	// ListUsageSources lists every org's provider connections (org and
	// provider only, across orgs), ordered by org then provider: the work
	// list of provider usage ingestion.
	ListUsageSources(ctx context.Context) ([]UsageSource, error)
}

// Usage event sources.
const (
	UsageSourceDevice   = "device"
	UsageSourceProvider = "provider"
)

// UsageEvent is one observation of a user's LLM use.
type UsageEvent struct {
	OrgID, UserID, DeviceID string // UserID may be "" when unattributed
	Source                  string // UsageSourceDevice ("device") | UsageSourceProvider ("provider")
	Provider, Model, Domain string
	RemoteAddr              string // IP literal, device events
	RemotePort              int
	Protocol                string // "tcp" | "udp"
	StartedAt, EndedAt      time.Time
	BytesSent               int64
	BytesReceived           int64
	InputTokens             int64
	OutputTokens            int64
	Requests                int64
	ProcessName             string
	ProcessPath             string
	PID, UID                int64
	APIKeyID                string
	ProviderUserID          string
	Key                     string // provider rows: the bucket identity used for dedupe
}

// AppendDeviceUsageParams is one agent telemetry batch.
type AppendDeviceUsageParams struct {
	OrgID, DeviceID, UserID string
	// BatchSeq is the agent's batch number, increasing per device.
	BatchSeq uint64
	Events   []UsageEvent
	At       time.Time
}

// UpsertProviderUsageParams is one ingestion's rows from one provider.
type UpsertProviderUsageParams struct {
	OrgID    string
	Provider string
	Events   []UsageEvent
}

// ScanUserUsageParams selects a user's events by start time.
type ScanUserUsageParams struct {
	OrgID, UserID string
	From, To      time.Time
}

// SummarizeUserUsageParams selects what SummarizeUserUsage totals.
type SummarizeUserUsageParams struct {
	OrgID, UserID string
	From, To      time.Time
}

// UsageSummary is a user's usage on one UTC day from one source, provider
// and model ("" where the source does not know it).
type UsageSummary struct {
	Day           time.Time // UTC midnight
	Source        string
	Provider      string
	Model         string
	Events        int64
	Requests      int64
	InputTokens   int64
	OutputTokens  int64
	BytesSent     int64
	BytesReceived int64
}

// ListUsageDaysParams selects an org's days.
type ListUsageDaysParams struct {
	OrgID    string
	From, To time.Time
}

// UsageDay is one user's activity on one UTC day, as the peer baseline
// needs it.
type UsageDay struct {
	UserID string
	Day    time.Time // UTC midnight
	Events int64
	// Tokens is input plus output tokens.
	Tokens int64
	// Models and Providers are those used that day, sorted, no "".
	Models, Providers []string
	// MinBytesSent, MaxBytesSent and MeanBytesSent describe the day's
	// events that sent bytes (all zero when none did).
	MinBytesSent, MaxBytesSent, MeanBytesSent int64
}

// UsageCursor is how far an org's usage from a provider has been ingested.
type UsageCursor struct {
	OrgID    string
	Provider string
	// Through is the end of the last bucket ingested.
	Through   time.Time
	UpdatedAt time.Time
}

type PutUsageCursorParams struct {
	OrgID    string
	Provider string
	Through  time.Time
	At       time.Time
}

// UsageSource is one org's connection to one provider, as ingestion sees it.
type UsageSource struct {
	OrgID    string
	Provider string
}
