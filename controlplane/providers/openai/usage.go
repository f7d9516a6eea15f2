package openai

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

var _ providers.UsageCapturer = (*Connector)(nil)

// maxDayBuckets is the most day buckets the Usage API returns per page
// (bucket_width=1d: default 7, max 31).
const maxDayBuckets = 31

// usageGroupBy are the dimensions a capture's buckets are split by. user_id
// is among them so that every result says whose it is and is checked.
var usageGroupBy = []string{"user_id", "api_key_id", "model", "project_id"}

// CaptureUsage returns the completions usage of the organization member
// with that email, in day buckets covering [from, to).
//
// It finds the user as RevokeUser does (every page of GET
// /organization/users), then reads GET /organization/usage/completions
// with start_time and end_time (unix seconds, the UTC days around the
// window: start inclusive, end exclusive), bucket_width=1d,
// group_by=user_id,api_key_id,model,project_id and user_ids=[the user's id],
// following next_page while has_more. Results whose user_id is not the
// user's are dropped, in case a server ignores the filter.
//
// Only the completions endpoint is read: embeddings, images, audio and the
// other usage endpoints are not captured. Once the user is deleted their
// usage rows no longer carry their id, which is why the pipeline captures
// before it revokes.
func (c *Connector) CaptureUsage(ctx context.Context, email string, from, to time.Time) (capt providers.UsageCapture, err error) {
	capt = providers.UsageCapture{Provider: Name, Email: email, From: from.UTC(), To: to.UTC(),
		APIKeyIDs: []string{}, Buckets: []providers.UsageBucket{}, Calls: []providers.Call{}}
	email = strings.TrimSpace(email)
	switch {
	case email == "":
		return capt, providers.Permanent(errors.New("openai: capturing usage: email is empty"))
	case !to.After(from):
		return capt, providers.Permanent(fmt.Errorf("openai: capturing usage: window %s to %s is empty", from, to))
	}
	trail := &httpcall.Trail{}
	// Named results: the calls are the evidence on every return.
	defer func() { capt.Calls = append(capt.Calls, trail.Calls...) }()

	user, err := c.findUser(ctx, trail, email)
	if err != nil || user == nil {
		return capt, err
	}
	capt.UserFound, capt.UserID = true, user.ID

	start, end := providers.UsageDays(from, to)
	keys := map[string]bool{}
	page := ""
	for n := 1; ; n++ {
		p := sdk.AdminOrganizationUsageCompletionsParams{
			StartTime:   start.Unix(),
			EndTime:     param.NewOpt(end.Unix()),
			BucketWidth: sdk.AdminOrganizationUsageCompletionsParamsBucketWidth1d,
			GroupBy:     usageGroupBy,
			UserIDs:     []string{user.ID},
			Limit:       param.NewOpt(int64(min(c.opts.PageSize, maxDayBuckets))),
		}
		if page != "" {
			p.Page = param.NewOpt(page)
		}
		op := fmt.Sprintf("reading completions usage of user %s, page %d", user.ID, n)
		var res *sdk.AdminOrganizationUsageCompletionsResponse
		_, err := c.call.Read(ctx, trail, true, op, func(mw httpcall.Middleware) error {
			var err error
			res, err = c.org.Usage.Completions(ctx, p, option.WithMiddleware(mw))
			return err
		})
		if err != nil {
			return capt, err
		}
		for _, b := range res.Data {
			bs, be := time.Unix(b.StartTime, 0).UTC(), time.Unix(b.EndTime, 0).UTC()
			if bs.Before(start) || !bs.Before(end) {
				continue
			}
			for _, r := range b.Results {
				if r.UserID != user.ID {
					continue
				}
				requests := r.NumModelRequests
				capt.Buckets = append(capt.Buckets, providers.UsageBucket{
					Start: bs, End: be, Model: r.Model, APIKeyID: r.APIKeyID, ProjectOrWorkspace: r.ProjectID,
					InputTokens: r.InputTokens, CachedInputTokens: r.InputCachedTokens,
					CacheWriteInputTokens: r.InputCacheWriteTokens, OutputTokens: r.OutputTokens,
					Requests: &requests,
				})
				if r.APIKeyID != "" {
					keys[r.APIKeyID] = true
				}
			}
		}
		if !res.HasMore {
			break
		}
		if res.NextPage == "" || res.NextPage == page {
			return capt, &providers.Error{Provider: Name, Op: op, Status: 200, Message: "has_more without a new next_page"}
		}
		page = res.NextPage
	}
	for k := range keys {
		capt.APIKeyIDs = append(capt.APIKeyIDs, k)
	}
	slices.Sort(capt.APIKeyIDs)
	providers.SortUsageBuckets(capt.Buckets)
	return capt, nil
}
