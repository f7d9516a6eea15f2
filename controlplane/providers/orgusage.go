package providers

import (
	"context"
	"time"
)

// OrgUsageReader reads the usage of a whole provider organization, every
// member's, for the control plane's hourly ingestion (package usage).
type OrgUsageReader interface {
	// ReadOrgUsage returns the organization's usage in the hour buckets
	// that cover [from, to) (see UsageHours), attributed to members where
	// the provider allows it. The caller dedupes buckets it
	// has seen before by their identity (start, member, key, model, ...).
	ReadOrgUsage(ctx context.Context, from, to time.Time) ([]OrgUsageBucket, error)
}

// OrgUsageBucket is one hour of one member's (or one unattributed key's)
// usage of one model.
type OrgUsageBucket struct {
	UsageBucket
	// UserID is the provider's id of the member the usage is attributed to
	// (OpenAI: the usage row's user_id; Anthropic: whoever created the
	// key); empty when the provider cannot say.
	UserID string
	// Email is that member's email at the provider; empty when unknown.
	Email string
}

// UsageHours returns the whole UTC hours that cover [from, to).
func UsageHours(from, to time.Time) (start, end time.Time) {
	start = from.UTC().Truncate(time.Hour)
	end = to.UTC().Truncate(time.Hour)
	if end.Before(to) {
		end = end.Add(time.Hour)
	}
	return start, end
}
