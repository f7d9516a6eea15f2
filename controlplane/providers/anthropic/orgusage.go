package anthropic

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/anthropics/anthropic-sdk-go/packages/pagination"
	"github.com/anthropics/anthropic-sdk-go/packages/param"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

var _ providers.OrgUsageReader = (*Connector)(nil)

// maxHourBuckets is the most hour buckets the usage report returns per
// page (bucket_width=1h: default 24, max 168).
const maxHourBuckets = 168

// ReadOrgUsage returns the organization's Messages API usage in hour
// buckets, attributed through API keys: every page of GET
// /v1/organizations/users (ids to emails) and of GET
// /v1/organizations/api_keys, every status (each key's created_by is the
// member its usage is attributed to), then GET
// /v1/organizations/usage_report/messages with bucket_width=1h,
// group_by[]=api_key_id and group_by[]=model, following next_page while
// has_more. Usage of a key the listing does not know, or of no key (the
// Console's Workbench), is kept unattributed. The report counts no
// requests, so Requests stays nil.
func (c *Connector) ReadOrgUsage(ctx context.Context, from, to time.Time) ([]providers.OrgUsageBucket, error) {
	start, end := providers.UsageHours(from, to)
	if !end.After(start) {
		return nil, providers.Permanent(fmt.Errorf("anthropic: reading organization usage: window %s to %s is empty", from, to))
	}
	emails := map[string]string{}
	err := listAll(ctx, c, nil, false, "listing organization users",
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.OrganizationUser], error) {
			p := sdk.OrganizationUserListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.Users.List(ctx, p, option.WithMiddleware(mw))
		},
		func(u sdk.OrganizationUser) string { return u.ID },
		func(u sdk.OrganizationUser) { emails[u.ID] = strings.ToLower(strings.TrimSpace(u.Email)) })
	if err != nil {
		return nil, err
	}
	type keyInfo struct{ user, workspace string }
	keys := map[string]keyInfo{}
	err = listAll(ctx, c, nil, false, "listing api keys",
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.APIKey], error) {
			p := sdk.OrganizationAPIKeyListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.APIKeys.List(ctx, p, option.WithMiddleware(mw))
		},
		func(k sdk.APIKey) string { return k.ID },
		func(k sdk.APIKey) {
			user := ""
			if k.CreatedBy.Type == "user" || k.CreatedBy.Type == "" {
				user = k.CreatedBy.ID
			}
			keys[k.ID] = keyInfo{user: user, workspace: keyScope(k)}
		})
	if err != nil {
		return nil, err
	}

	header := http.Header{"X-Api-Key": {c.call.Secret}, "Anthropic-Version": {"2023-06-01"}, "Accept": {"application/json"}}
	out := []providers.OrgUsageBucket{}
	page := ""
	for n := 1; ; n++ {
		q := url.Values{
			"starting_at":  {start.Format(time.RFC3339)},
			"ending_at":    {end.Format(time.RFC3339)},
			"bucket_width": {"1h"},
			"group_by[]":   {"api_key_id", "model"},
			"limit":        {strconv.Itoa(min(c.opts.PageSize, maxHourBuckets))},
		}
		if page != "" {
			q.Set("page", page)
		}
		u := strings.TrimRight(c.opts.BaseURL, "/") + "/v1/organizations/usage_report/messages?" + q.Encode()
		op := fmt.Sprintf("reading organization messages usage, page %d", n)
		var res messagesUsageReport
		if _, err := c.call.Read(ctx, nil, false, op, httpcall.GetJSON(ctx, c.opts.HTTPClient, u, header, &res)); err != nil {
			return nil, err
		}
		for _, b := range res.Data {
			bs, be := b.StartingAt.UTC(), b.EndingAt.UTC()
			if bs.Before(start) || !bs.Before(end) {
				continue
			}
			for _, r := range b.Results {
				k := keys[r.APIKeyID]
				ws := k.workspace
				if r.WorkspaceID != "" {
					ws = r.WorkspaceID
				}
				written := r.CacheCreation.Ephemeral1h + r.CacheCreation.Ephemeral5m
				out = append(out, providers.OrgUsageBucket{
					UsageBucket: providers.UsageBucket{
						Start: bs, End: be, Model: r.Model, APIKeyID: r.APIKeyID, ProjectOrWorkspace: ws,
						InputTokens:           r.UncachedInputTokens + r.CacheReadInputTokens + written,
						CachedInputTokens:     r.CacheReadInputTokens,
						CacheWriteInputTokens: written,
						OutputTokens:          r.OutputTokens,
					},
					UserID: k.user,
					Email:  emails[k.user],
				})
			}
		}
		if !res.HasMore {
			return out, nil
		}
		if res.NextPage == "" || res.NextPage == page {
			return nil, &providers.Error{Provider: Name, Op: op, Status: 200, Message: "has_more without a new next_page"}
		}
		page = res.NextPage
	}
}
