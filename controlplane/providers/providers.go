// Package providers is the seam between the lockout pipeline and the LLM
// providers' admin APIs: a Connector per provider removes a departing user
// from the provider's organization, revokes the API keys tied to them, and
// returns each provider confirmation as audit evidence.
//
// Connectors live in sub-packages (providers/openai, providers/anthropic).
// They share the contract written here:
//
//   - RevokeUser is idempotent. What is already gone is reported as
//     OutcomeAlreadyAbsent, never as an error, so a retry after a crash
//     revokes nothing twice and a second run makes no mutating call.
//   - Keys and memberships below the organization are revoked before the
//     organization membership, explicitly, even where the provider would
//     cascade: the evidence then names every key, and a provider that does
//     not cascade cannot leave a key behind.
//   - A call that fails is recorded as an Action with OutcomeFailed; the
//     connector goes on with the resources that do not depend on it, but
//     keeps the organization membership (so a retry can still find what is
//     left through it) and returns an *Error saying whether the failure is
//     retryable. A rate limit or a rejected admin key stops the run at once.
//   - Retrying is the caller's job (the durable job queue). The one
//     exception: a single 429 whose Retry-After is at most
//     Options.MaxInPlaceWait (2s by default) is waited out and retried in
//     place, once per call, because a short pause is cheaper than a
//     re-queued job that repeats every list call.
//   - The admin key is never logged and never part of an error or of the
//     evidence; a provider echoing it back is redacted.
//
// A connector is also a UsageCapturer: it reads the departing user's usage
// for the days before the lockout, and the pipeline calls it BEFORE
// RevokeUser, because a removed user's usage can no longer be told apart
// (OpenAI drops the user id from its usage rows; at Anthropic the user's
// keys can no longer be found from their email). A capture reads only,
// returns the same *Error classification and keeps every request as a
// Call; a user the provider does not know is UserFound false, not an
// error.
package providers

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/toktra/toktra/internal/clock"
)

// Connector revokes one user's access at one LLM provider.
type Connector interface {
	// Name is the provider's name as stored with its connection: "openai",
	// "anthropic".
	Name() string
	// Validate makes a cheap read call proving the admin key works (used
	// before saving a connection).
	Validate(ctx context.Context) error
	// RevokeUser removes the user (by email, case-insensitive) from the org
	// and every resource below it, and returns what it did, resource by
	// resource. It is idempotent: resources already gone are reported as
	// already_absent, never an error. On error the Revocation still holds
	// every action taken before and including the failure.
	RevokeUser(ctx context.Context, email string) (Revocation, error)
}

// Revocation is one provider's account of a RevokeUser call: the evidence
// the pipeline stores and the audit snapshot cites.
type Revocation struct {
	Provider string `json:"provider"`
	// Email is the address asked for, as given.
	Email string `json:"email"`
	// UserFound says whether the provider had an organization member with
	// that email when the call ran.
	UserFound bool     `json:"user_found"`
	Actions   []Action `json:"actions"`
}

// Action kinds, one per kind of thing a connector revokes.
const (
	KindOrgMembership       = "org_membership"
	KindProjectMembership   = "project_membership"
	KindWorkspaceMembership = "workspace_membership"
	KindInvite              = "invite"
	KindAPIKey              = "api_key"
)

// Action outcomes.
const (
	// OutcomeRevoked: this call removed or deactivated the resource.
	OutcomeRevoked = "revoked"
	// OutcomeAlreadyAbsent: the resource was already gone (or inactive).
	// An already_absent action with an empty Resource records that a full
	// scan found nothing of that kind for the user.
	OutcomeAlreadyAbsent = "already_absent"
	// OutcomeFailed: the call failed or was not attempted; Error says why.
	OutcomeFailed = "failed"
)

// Action is one resource's revocation, with the provider's confirmation.
type Action struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Resource is the provider's id of the thing (user id, key id, invite
	// id, ...).
	Resource string `json:"resource,omitempty"`
	// Scope is the project or workspace the resource belongs to, when it
	// belongs to one.
	Scope string `json:"scope,omitempty"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// RequestID is the provider's request id header of the call that did it
	// (x-request-id at OpenAI, request-id at Anthropic).
	RequestID string `json:"request_id,omitempty"`
	// Status is the HTTP status of that call; 0 when no call was made.
	Status int `json:"status,omitempty"`
	// Response is the provider's response body, bounded (see
	// MaxEvidenceBytes); a body that is not JSON or too long is kept as a
	// JSON object {"truncated":..., "bytes":..., "text":...}.
	Response json.RawMessage `json:"response,omitempty"`
	// At is when the call returned, from the injected clock.
	At time.Time `json:"at"`
	// Error says why, when Outcome is failed.
	Error string `json:"error,omitempty"`
}

// UsageCapturer fetches one user's LLM usage for a window. The pipeline
// calls it before RevokeUser, because removing a user makes the provider
// forget whose usage it was: OpenAI's usage rows lose the user id, and at
// Anthropic the user's keys can no longer be traced from their email.
type UsageCapturer interface {
	// CaptureUsage returns the usage of the user with that email (matched
	// case-insensitively, as RevokeUser does) in the whole UTC days that
	// cover [from, to). A user the provider does not know is not an error:
	// the capture says UserFound false. On error the capture still holds
	// the calls made, the failed one included.
	CaptureUsage(ctx context.Context, email string, from, to time.Time) (UsageCapture, error)
}

// UsageCapture is one provider's account of a user's usage before their
// revocation: what the audit snapshot and the anomaly detection read.
type UsageCapture struct {
	Provider string `json:"provider"`
	// Email is the address asked for, as given.
	Email string `json:"email"`
	// From and To are the window asked for; Buckets cover the whole UTC
	// days around it (see UsageDays).
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// UserFound says whether the provider had an organization member with
	// that email when the call ran.
	UserFound bool `json:"user_found"`
	// UserID is the provider's id of the user.
	UserID string `json:"user_id,omitempty"`
	// APIKeyIDs are the keys the usage is attributed through, sorted: at
	// OpenAI the keys seen in the user's usage rows, at Anthropic every key
	// the user created or that acts as them, whatever its status.
	APIKeyIDs []string `json:"api_key_ids"`
	// Buckets are the user's usage, one per day, key, model and project or
	// workspace, in the order SortUsageBuckets gives.
	Buckets []UsageBucket `json:"buckets"`
	// Calls are the requests made, in order, as evidence.
	Calls []Call `json:"calls"`
}

// UsageBucket is a user's usage of one model through one key in one time
// bucket, in tokens as the provider counts them.
type UsageBucket struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Model string    `json:"model,omitempty"`
	// APIKeyID is the key the requests were made with; empty when the
	// provider did not attribute them to a key.
	APIKeyID string `json:"api_key_id,omitempty"`
	// ProjectOrWorkspace is the OpenAI project id or the Anthropic
	// workspace id (empty for Anthropic's default workspace).
	ProjectOrWorkspace string `json:"project_or_workspace,omitempty"`
	// InputTokens counts every input token: uncached, read from the cache
	// and written to it.
	InputTokens int64 `json:"input_tokens"`
	// CachedInputTokens counts the input tokens read from the cache.
	CachedInputTokens int64 `json:"cached_input_tokens"`
	// CacheWriteInputTokens counts the input tokens written to the cache.
	CacheWriteInputTokens int64 `json:"cache_write_input_tokens"`
	OutputTokens          int64 `json:"output_tokens"`
	// Requests is the number of model requests; nil when the provider does
	// not count them (Anthropic's usage report does not), so that no
	// reader takes a missing count for zero requests.
	Requests *int64 `json:"requests,omitempty"`
}

// Call is one read request a connector made, kept as evidence of what the
// provider answered.
type Call struct {
	// Op says what the call was for ("reading completions usage, page 2").
	Op     string `json:"op"`
	Method string `json:"method,omitempty"`
	// Path is the request's path and query, which never hold the admin key.
	Path string `json:"path,omitempty"`
	// Status is the HTTP status; 0 when no response arrived.
	Status int `json:"status,omitempty"`
	// RequestID is the provider's request id header.
	RequestID string `json:"request_id,omitempty"`
	// Response is the body, bounded like Action.Response. Listings of the
	// whole organization (its users, its active keys) keep none: they name
	// colleagues, and the status and request id are evidence enough.
	Response json.RawMessage `json:"response,omitempty"`
	// At is when the call returned, from the injected clock.
	At time.Time `json:"at"`
	// Error says why the call failed, when it did.
	Error string `json:"error,omitempty"`
}

// UsageDays returns the whole UTC days that cover [from, to): from
// rounded down and to rounded up to midnight. Both providers report usage
// in day buckets snapped to UTC midnight, and the day of the lockout is the
// one that matters most, so it is asked for whole.
func UsageDays(from, to time.Time) (start, end time.Time) {
	start = from.UTC().Truncate(24 * time.Hour)
	end = to.UTC().Truncate(24 * time.Hour)
	if end.Before(to) {
		end = end.Add(24 * time.Hour)
	}
	return start, end
}

// SortUsageBuckets orders buckets by Start, then Model, then APIKeyID, then
// ProjectOrWorkspace.
func SortUsageBuckets(b []UsageBucket) {
	slices.SortFunc(b, func(x, y UsageBucket) int {
		return cmp.Or(x.Start.Compare(y.Start), cmp.Compare(x.Model, y.Model),
			cmp.Compare(x.APIKeyID, y.APIKeyID), cmp.Compare(x.ProjectOrWorkspace, y.ProjectOrWorkspace))
	})
}

// MaxEvidenceBytes bounds the response body kept in an Action.
const MaxEvidenceBytes = 64 << 10

// DefaultMaxInPlaceWait is the longest Retry-After a connector waits out
// inside one RevokeUser call instead of returning the rate limit.
const DefaultMaxInPlaceWait = 2 * time.Second

// Options are what every connector takes besides its admin key. The zero
// value works: production base URL, a 30s-timeout HTTP client, the real
// clock and a discarding logger.
type Options struct {
	// BaseURL overrides the provider's API root (tests point it at a fake),
	// e.g. "https://api.openai.com/v1" or "https://api.anthropic.com".
	BaseURL string
	// HTTPClient makes the calls; nil means a client with a 30s timeout.
	HTTPClient *http.Client
	// Clock stamps the actions.
	Clock clock.Clock
	// Logger receives one line per mutating call; never the admin key.
	Logger *slog.Logger
	// PageSize is the list page size asked for (default 100, the most
	// OpenAI allows).
	PageSize int
	// MaxInPlaceWait is the longest Retry-After waited out in place (default
	// DefaultMaxInPlaceWait); negative never waits.
	MaxInPlaceWait time.Duration
	// Wait pauses before an in-place retry; nil waits on a real timer. Tests
	// replace it to advance a fake clock instead of sleeping.
	Wait func(ctx context.Context, d time.Duration) error
}

// WithDefaults returns o with its zero fields filled in; connectors call it
// in their constructors.
func (o Options) WithDefaults(baseURL string) Options {
	if o.BaseURL == "" {
		o.BaseURL = baseURL
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.MaxInPlaceWait == 0 {
		o.MaxInPlaceWait = DefaultMaxInPlaceWait
	}
	if o.Wait == nil {
		o.Wait = waitTimer
	}
	return o
}

func waitTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
