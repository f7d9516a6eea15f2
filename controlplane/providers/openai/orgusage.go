package openai

import (
	"context"
	"fmt"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/pagination"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

var _ providers.OrgUsageReader = (*Connector)(nil)

// maxHourBuckets is the most hour buckets the Usage API returns per page
// (bucket_width=1h: default 24, max 168).
const maxHourBuckets = 168

// orgUsageGroupBy splits the organization's usage by member, key, model and
// project: the identity of an ingested row.
var orgUsageGroupBy = []string{"user_id", "api_key_id", "model", "project_id"}

// ReadOrgUsage returns the organization's completions usage in hour
// buckets: every page of GET /organization/users (for the members'
// emails), then GET /organization/usage/completions with bucket_width=1h,
// group_by=user_id,api_key_id,model,project_id and start_time/end_time
// the hours around [from, to), following next_page while has_more. A row
// without a user_id (a deleted member's, or a service account's) is kept
// unattributed. Only completions are read (see CaptureUsage).
func (c *Connector) ReadOrgUsage(ctx context.Context, from, to time.Time) ([]providers.OrgUsageBucket, error) {
	start, end := providers.UsageHours(from, to)
	if !end.After(start) {
		return nil, providers.Permanent(fmt.Errorf("openai: reading organization usage: window %s to %s is empty", from, to))
	}
	emails := map[string]string{}
	err := listAll(ctx, c, nil, "listing organization users",
		func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.OrganizationUser], error) {
			p := sdk.AdminOrganizationUserListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.After = param.NewOpt(after)
			}
			return c.org.Users.List(ctx, p, option.WithMiddleware(mw))
		},
		func(u sdk.OrganizationUser) string { return u.ID },
		func(u sdk.OrganizationUser) { emails[u.ID] = strings.ToLower(strings.TrimSpace(u.Email)) })
	if err != nil {
		return nil, err
	}

	out := []providers.OrgUsageBucket{}
	page := ""
	for n := 1; ; n++ {
		p := sdk.AdminOrganizationUsageCompletionsParams{
			StartTime:   start.Unix(),
			EndTime:     param.NewOpt(end.Unix()),
			BucketWidth: sdk.AdminOrganizationUsageCompletionsParamsBucketWidth1h,
			GroupBy:     orgUsageGroupBy,
			Limit:       param.NewOpt(int64(min(c.opts.PageSize, maxHourBuckets))),
		}
		if page != "" {
			p.Page = param.NewOpt(page)
		}
		op := fmt.Sprintf("reading organization completions usage, page %d", n)
		var res *sdk.AdminOrganizationUsageCompletionsResponse
		_, err := c.call.Read(ctx, nil, false, op, func(mw httpcall.Middleware) error {
			var err error
			res, err = c.org.Usage.Completions(ctx, p, option.WithMiddleware(mw))
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, b := range res.Data {
			bs, be := time.Unix(b.StartTime, 0).UTC(), time.Unix(b.EndTime, 0).UTC()
			if bs.Before(start) || !bs.Before(end) {
				continue
			}
			for _, r := range b.Results {
				requests := r.NumModelRequests
				out = append(out, providers.OrgUsageBucket{
					UsageBucket: providers.UsageBucket{
						Start: bs, End: be, Model: r.Model, APIKeyID: r.APIKeyID, ProjectOrWorkspace: r.ProjectID,
						InputTokens: r.InputTokens, CachedInputTokens: r.InputCachedTokens,
						CacheWriteInputTokens: r.InputCacheWriteTokens, OutputTokens: r.OutputTokens,
						Requests: &requests,
					},
					UserID: r.UserID,
					Email:  emails[r.UserID],
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
