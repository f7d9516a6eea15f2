package anthropic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

var _ providers.UsageCapturer = (*Connector)(nil)

// maxDayBuckets is the most day buckets the usage report returns per page
// (bucket_width=1d: default 7, max 31).
const maxDayBuckets = 31

// keysPerReport bounds the api_key_ids of one report query, so that a user
// with many keys does not make an overlong URL; each batch is paged on its
// own.
const keysPerReport = 50

// messagesUsageReport is GET /v1/organizations/usage_report/messages's
// answer.
type messagesUsageReport struct {
	Data []struct {
		StartingAt time.Time `json:"starting_at"`
		EndingAt   time.Time `json:"ending_at"`
		Results    []struct {
			APIKeyID            string `json:"api_key_id"`
			WorkspaceID         string `json:"workspace_id"`
			Model               string `json:"model"`
			UncachedInputTokens int64  `json:"uncached_input_tokens"`
			CacheCreation       struct {
				Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
				Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
			} `json:"cache_creation"`
			CacheReadInputTokens int64 `json:"cache_read_input_tokens"`
			OutputTokens         int64 `json:"output_tokens"`
		} `json:"results"`
	} `json:"data"`
	HasMore  bool   `json:"has_more"`
	NextPage string `json:"next_page"`
}

// CaptureUsage returns the Messages API usage of the organization member
// with that email, in day buckets covering [from, to).
//
// The usage report is grouped by API key, not by user, so usage is
// attributed through the user's keys: the user is found as RevokeUser
// finds them, and so are their keys (created by them, any status, or
// acting as them). Then GET /v1/organizations/usage_report/messages
// (plain HTTP: the SDK does not cover it) with starting_at and ending_at
// (RFC 3339, the UTC days around the window), bucket_width=1d,
// group_by[]=api_key_id, group_by[]=model and api_key_ids[]=the user's
// keys, following next_page while has_more. Results for other keys are
// dropped, in case a server ignores the filter; the workspace of a bucket
// is its key's. The report counts no requests, so Requests stays nil.
//
// Usage without an API key (the Console's Workbench) cannot be attributed
// and is not captured. Once the user is removed, their keys can no longer
// be found from their email, which is why the pipeline captures before it
// revokes.
func (c *Connector) CaptureUsage(ctx context.Context, email string, from, to time.Time) (capt providers.UsageCapture, err error) {
	capt = providers.UsageCapture{Provider: Name, Email: email, From: from.UTC(), To: to.UTC(),
		APIKeyIDs: []string{}, Buckets: []providers.UsageBucket{}, Calls: []providers.Call{}}
	email = strings.TrimSpace(email)
	switch {
	case email == "":
		return capt, providers.Permanent(errors.New("anthropic: capturing usage: email is empty"))
	case !to.After(from):
		return capt, providers.Permanent(fmt.Errorf("anthropic: capturing usage: window %s to %s is empty", from, to))
	}
	trail := &httpcall.Trail{}
	// Named results: the calls are the evidence on every return.
	defer func() { capt.Calls = append(capt.Calls, trail.Calls...) }()

	user, err := c.findUser(ctx, trail, email)
	if err != nil || user == nil {
		return capt, err
	}
	capt.UserFound, capt.UserID = true, user.ID
	keys, err := c.userKeys(ctx, trail, user.ID)
	if err != nil {
		return capt, err
	}
	workspace := map[string]string{}
	for _, k := range keys {
		workspace[k.ID] = keyScope(k)
		capt.APIKeyIDs = append(capt.APIKeyIDs, k.ID)
	}
	slices.Sort(capt.APIKeyIDs)

	start, end := providers.UsageDays(from, to)
	for batch := range slices.Chunk(capt.APIKeyIDs, keysPerReport) {
		if err := c.readReport(ctx, trail, &capt, batch, workspace, start, end); err != nil {
			return capt, err
		}
	}
	providers.SortUsageBuckets(capt.Buckets)
	return capt, nil
}

// readReport reads every page of the usage report for keys into capt.
func (c *Connector) readReport(ctx context.Context, t *httpcall.Trail, capt *providers.UsageCapture,
	keys []string, workspace map[string]string, start, end time.Time) error {
	header := http.Header{"X-Api-Key": {c.call.Secret}, "Anthropic-Version": {"2023-06-01"}, "Accept": {"application/json"}}
	page := ""
	for n := 1; ; n++ {
		q := url.Values{
			"starting_at":   {start.Format(time.RFC3339)},
			"ending_at":     {end.Format(time.RFC3339)},
			"bucket_width":  {"1d"},
			"group_by[]":    {"api_key_id", "model"},
			"api_key_ids[]": keys,
			"limit":         {strconv.Itoa(min(c.opts.PageSize, maxDayBuckets))},
		}
		if page != "" {
			q.Set("page", page)
		}
		u := strings.TrimRight(c.opts.BaseURL, "/") + "/v1/organizations/usage_report/messages?" + q.Encode()
		op := fmt.Sprintf("reading messages usage of the api keys of user %s, page %d", capt.UserID, n)
		var res messagesUsageReport
		if _, err := c.call.Read(ctx, t, true, op, httpcall.GetJSON(ctx, c.opts.HTTPClient, u, header, &res)); err != nil {
			return err
		}
		for _, b := range res.Data {
			bs, be := b.StartingAt.UTC(), b.EndingAt.UTC()
			if bs.Before(start) || !bs.Before(end) {
				continue
			}
			for _, r := range b.Results {
				ws, mine := workspace[r.APIKeyID]
				if !mine {
					continue
				}
				if r.WorkspaceID != "" {
					ws = r.WorkspaceID
				}
				written := r.CacheCreation.Ephemeral1h + r.CacheCreation.Ephemeral5m
				capt.Buckets = append(capt.Buckets, providers.UsageBucket{
					Start: bs, End: be, Model: r.Model, APIKeyID: r.APIKeyID, ProjectOrWorkspace: ws,
					InputTokens:           r.UncachedInputTokens + r.CacheReadInputTokens + written,
					CachedInputTokens:     r.CacheReadInputTokens,
					CacheWriteInputTokens: written,
					OutputTokens:          r.OutputTokens,
				})
			}
		}
		if !res.HasMore {
			return nil
		}
		if res.NextPage == "" || res.NextPage == page {
			return &providers.Error{Provider: Name, Op: op, Status: 200, Message: "has_more without a new next_page"}
		}
		page = res.NextPage
	}
}
