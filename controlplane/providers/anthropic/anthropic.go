// Package anthropic revokes a departing user at Anthropic through the
// Admin API (x-api-key: sk-ant-admin..., anthropic-version: 2023-06-01).
//
// RevokeUser, in order:
//
//  1. finds the user: GET /v1/organizations/users?email=... (the documented
//     filter), and when that finds no case-insensitive match, every page
//     of the unfiltered list (after_id=last_id while has_more);
//  2. deletes the pending invites for that email: GET
//     /v1/organizations/invites, DELETE /v1/organizations/invites/{id}
//     (accepted, expired and deleted invites grant nothing more);
//  3. deactivates the user's API keys (POST /v1/organizations/api_keys/{id}
//     with {"status":"inactive"}; the Admin API has no key deletion): the
//     keys they created (GET /v1/organizations/api_keys?created_by_user_id=,
//     every status, so keys already inactive, archived or expired are
//     reported already_absent) and the active keys whose principal is the
//     user (principal.type "user_actor", found by listing active keys);
//  4. removes the user from every non-archived workspace they belong to:
//     GET /v1/organizations/workspaces, then per workspace GET and DELETE
//     /v1/organizations/workspaces/{id}/members/{user_id} (404 = not a
//     member). The default workspace is not listed and has no member
//     endpoints;
//  5. removes the user from the organization: DELETE
//     /v1/organizations/users/{id}, only when nothing before failed. Keys
//     outlive their creator's membership and can only be found through the
//     user's id, so the user is kept until their keys are inactive.
//
// When the user is not (or no longer) a member, only invites can be found
// by email: keys of a user removed by someone else stay out of reach.
// CaptureUsage (usage.go) reads the usage of the user's keys from the
// Messages usage report before the revocation.
//
// A 404 on a mutation is already_absent. All calls go through
// github.com/anthropics/anthropic-sdk-go's organization services with the
// SDK's own retries off, except the usage report, which the SDK does not
// cover: plain HTTP through the same recorder.
package anthropic

import (
	"context"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/anthropics/anthropic-sdk-go/packages/pagination"
	"github.com/anthropics/anthropic-sdk-go/packages/param"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

// Name is the provider name the connector reports.
const Name = "anthropic"

// DefaultBaseURL is the Anthropic API root.
const DefaultBaseURL = "https://api.anthropic.com"

// Connector revokes users in one Anthropic organization.
type Connector struct {
	org  sdk.OrganizationService
	call *httpcall.Caller
	opts providers.Options
}

var _ providers.Connector = (*Connector)(nil)

// New returns a connector acting with adminKey.
func New(adminKey string, opts providers.Options) (*Connector, error) {
	if strings.TrimSpace(adminKey) == "" {
		return nil, errors.New("anthropic: admin key is empty")
	}
	opts = opts.WithDefaults(DefaultBaseURL)
	// The organization service reads nothing from the environment
	// (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, profiles); the SDK's request
	// config adds anthropic-version: 2023-06-01 to every request.
	org := sdk.NewOrganizationService(
		option.WithBaseURL(opts.BaseURL),
		option.WithHTTPClient(opts.HTTPClient),
		option.WithAPIKey(adminKey),
		option.WithMaxRetries(0),
	)
	return &Connector{
		org:  org,
		call: &httpcall.Caller{Provider: Name, RequestIDHeader: "Request-Id", Secret: adminKey, Opts: opts},
		opts: opts,
	}, nil
}

// Name returns "anthropic".
func (c *Connector) Name() string { return Name }

// Validate lists one organization user, which needs a working admin key.
func (c *Connector) Validate(ctx context.Context) error {
	_, err := c.call.Do(ctx, "validating admin key", func(mw httpcall.Middleware) error {
		_, err := c.org.Users.List(ctx, sdk.OrganizationUserListParams{Limit: param.NewOpt[int64](1)}, option.WithMiddleware(mw))
		return err
	})
	return err
}

// RevokeUser deactivates the user's API keys, removes them from their
// workspaces and the organization, and deletes their pending invites.
func (c *Connector) RevokeUser(ctx context.Context, email string) (providers.Revocation, error) {
	run := httpcall.NewRun(Name, email)
	email = strings.TrimSpace(email)
	if email == "" {
		return run.Rev, providers.Permanent(errors.New("anthropic: revoking user: email is empty"))
	}
	user, err := c.findUser(ctx, nil, email)
	if err != nil {
		run.Fail(err)
		return run.Rev, run.Err()
	}
	run.Rev.UserFound = user != nil

	if stop := c.revokeInvites(ctx, run, email); stop {
		return run.Rev, run.Err()
	}
	if user == nil {
		run.Add(c.call.Absent(providers.KindAPIKey, "", ""), nil)
		run.Add(c.call.Absent(providers.KindWorkspaceMembership, "", ""), nil)
		run.Add(c.call.Absent(providers.KindOrgMembership, "", ""), nil)
		return run.Rev, run.Err()
	}
	if stop := c.revokeKeys(ctx, run, user.ID); stop {
		return run.Rev, run.Err()
	}
	if stop := c.revokeWorkspaces(ctx, run, user.ID); stop {
		return run.Rev, run.Err()
	}
	if run.Failed() {
		run.Add(providers.Action{
			Kind: providers.KindOrgMembership, Resource: user.ID, Outcome: providers.OutcomeFailed,
			At:    c.opts.Clock.Now().UTC(),
			Error: "not attempted: earlier revocations failed; the membership is kept so a retry can find what is left",
		}, nil)
		return run.Rev, run.Err()
	}
	run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindOrgMembership, Resource: user.ID},
		"removing user "+user.ID+" from the organization",
		func(mw httpcall.Middleware) error {
			_, err := c.org.Users.Remove(ctx, user.ID, option.WithMiddleware(mw))
			return err
		}))
	return run.Rev, run.Err()
}

// findUser looks the organization member with email up: the documented
// email filter first, then, when that finds no case-insensitive match,
// every page of the unfiltered list. The pages go into t without their
// bodies (the unfiltered ones name everyone).
func (c *Connector) findUser(ctx context.Context, t *httpcall.Trail, email string) (*sdk.OrganizationUser, error) {
	var user *sdk.OrganizationUser
	match := func(u sdk.OrganizationUser) {
		if user == nil && strings.EqualFold(strings.TrimSpace(u.Email), email) {
			user = &u
		}
	}
	for _, filter := range []string{email, ""} {
		err := listAll(ctx, c, t, false, "listing organization users",
			func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.OrganizationUser], error) {
				p := sdk.OrganizationUserListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
				if filter != "" {
					p.Email = param.NewOpt(filter)
				}
				if after != "" {
					p.AfterID = param.NewOpt(after)
				}
				return c.org.Users.List(ctx, p, option.WithMiddleware(mw))
			},
			func(u sdk.OrganizationUser) string { return u.ID }, match)
		if err != nil || user != nil {
			return user, err
		}
	}
	return nil, nil
}

func (c *Connector) revokeInvites(ctx context.Context, run *httpcall.Run, email string) (stop bool) {
	var pending []string
	err := listAll(ctx, c, nil, false, "listing invites",
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.OrganizationInvite], error) {
			p := sdk.OrganizationInviteListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.Invites.List(ctx, p, option.WithMiddleware(mw))
		},
		func(i sdk.OrganizationInvite) string { return i.ID },
		func(i sdk.OrganizationInvite) {
			if i.Status == sdk.OrganizationInviteStatusPending && strings.EqualFold(strings.TrimSpace(i.Email), email) {
				pending = append(pending, i.ID)
			}
		})
	if err != nil {
		return run.Fail(err)
	}
	if len(pending) == 0 {
		run.Add(c.call.Absent(providers.KindInvite, "", ""), nil)
	}
	for _, id := range pending {
		if run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindInvite, Resource: id}, "deleting invite "+id,
			func(mw httpcall.Middleware) error {
				_, err := c.org.Invites.Delete(ctx, id, option.WithMiddleware(mw))
				return err
			})) {
			return true
		}
	}
	return false
}

func keyScope(k sdk.APIKey) string {
	return k.Scope.WorkspaceID
}

// userKeys returns the user's API keys, each once: those they created, of
// every status (GET /v1/organizations/api_keys?created_by_user_id=), and
// the active ones whose principal is the user (principal.type "user_actor",
// found by listing the active keys). The first listing goes into t with its
// bodies (it is about the user only); the second, of the whole
// organization, without.
func (c *Connector) userKeys(ctx context.Context, t *httpcall.Trail, userID string) ([]sdk.APIKey, error) {
	var keys []sdk.APIKey
	seen := map[string]bool{}
	add := func(k sdk.APIKey) {
		if !seen[k.ID] {
			seen[k.ID] = true
			keys = append(keys, k)
		}
	}
	err := listAll(ctx, c, t, true, "listing api keys created by user "+userID,
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.APIKey], error) {
			p := sdk.OrganizationAPIKeyListParams{Limit: param.NewOpt(int64(c.opts.PageSize)), CreatedByUserID: param.NewOpt(userID)}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.APIKeys.List(ctx, p, option.WithMiddleware(mw))
		},
		func(k sdk.APIKey) string { return k.ID },
		func(k sdk.APIKey) {
			// Re-checked in case a server ignores the filter.
			if k.CreatedBy.ID == userID {
				add(k)
			}
		})
	if err != nil {
		return nil, err
	}
	err = listAll(ctx, c, t, false, "listing active api keys",
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.APIKey], error) {
			p := sdk.OrganizationAPIKeyListParams{Limit: param.NewOpt(int64(c.opts.PageSize)), Status: sdk.OrganizationAPIKeyListParamsStatusActive}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.APIKeys.List(ctx, p, option.WithMiddleware(mw))
		},
		func(k sdk.APIKey) string { return k.ID },
		func(k sdk.APIKey) {
			if k.Principal.Type == "user_actor" && k.Principal.UserID == userID {
				add(k)
			}
		})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

func (c *Connector) revokeKeys(ctx context.Context, run *httpcall.Run, userID string) (stop bool) {
	keys, err := c.userKeys(ctx, nil, userID)
	if err != nil {
		return run.Fail(err)
	}
	if len(keys) == 0 {
		run.Add(c.call.Absent(providers.KindAPIKey, "", ""), nil)
	}
	for _, k := range keys {
		a := providers.Action{Kind: providers.KindAPIKey, Resource: k.ID, Scope: keyScope(k)}
		if k.Status != sdk.APIKeyStatusActive {
			// inactive, archived or expired: the key already authenticates nothing.
			run.Add(c.call.Absent(a.Kind, a.Resource, a.Scope), nil)
			continue
		}
		if run.Add(c.call.Revoke(ctx, a, "deactivating api key "+k.ID,
			func(mw httpcall.Middleware) error {
				_, err := c.org.APIKeys.Update(ctx, k.ID, sdk.OrganizationAPIKeyUpdateParams{Status: sdk.OrganizationAPIKeyUpdateParamsStatusInactive}, option.WithMiddleware(mw))
				return err
			})) {
			return true
		}
	}
	return false
}

func (c *Connector) revokeWorkspaces(ctx context.Context, run *httpcall.Run, userID string) (stop bool) {
	var workspaces []string
	err := listAll(ctx, c, nil, false, "listing workspaces",
		func(after string, mw httpcall.Middleware) (*pagination.Page[sdk.Workspace], error) {
			p := sdk.OrganizationWorkspaceListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.AfterID = param.NewOpt(after)
			}
			return c.org.Workspaces.List(ctx, p, option.WithMiddleware(mw))
		},
		func(w sdk.Workspace) string { return w.ID },
		func(w sdk.Workspace) {
			if w.ArchivedAt.IsZero() {
				workspaces = append(workspaces, w.ID)
			}
		})
	if err != nil {
		return run.Fail(err)
	}
	members := 0
	for _, wid := range workspaces {
		_, err := c.call.Do(ctx, fmt.Sprintf("reading membership of user %s in workspace %s", userID, wid),
			func(mw httpcall.Middleware) error {
				_, err := c.org.Workspaces.Members.Get(ctx, userID, sdk.OrganizationWorkspaceMemberGetParams{WorkspaceID: wid}, option.WithMiddleware(mw))
				return err
			})
		var pe *providers.Error
		if errors.As(err, &pe) && pe.Status == 404 {
			continue
		}
		if err != nil {
			if run.Fail(err) {
				return true
			}
			continue
		}
		members++
		if run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindWorkspaceMembership, Resource: userID, Scope: wid},
			fmt.Sprintf("removing user %s from workspace %s", userID, wid),
			func(mw httpcall.Middleware) error {
				_, err := c.org.Workspaces.Members.Remove(ctx, userID, sdk.OrganizationWorkspaceMemberRemoveParams{WorkspaceID: wid}, option.WithMiddleware(mw))
				return err
			})) {
			return true
		}
	}
	if members == 0 {
		run.Add(c.call.Absent(providers.KindWorkspaceMembership, "", ""), nil)
	}
	return false
}

// listAll follows a paginated list to its end: after_id=last_id while
// has_more. Each page goes into t, with its body when keepBody.
func listAll[T any](ctx context.Context, c *Connector, t *httpcall.Trail, keepBody bool, op string,
	page func(after string, mw httpcall.Middleware) (*pagination.Page[T], error),
	idOf func(T) string, each func(T)) error {
	after := ""
	for {
		var pg *pagination.Page[T]
		_, err := c.call.Read(ctx, t, keepBody, op, func(mw httpcall.Middleware) error {
			var err error
			pg, err = page(after, mw)
			return err
		})
		if err != nil {
			return err
		}
		for _, item := range pg.Data {
			each(item)
		}
		if !pg.HasMore || len(pg.Data) == 0 {
			return nil
		}
		next := pg.LastID
		if next == "" {
			next = idOf(pg.Data[len(pg.Data)-1])
		}
		if next == after {
			return &providers.Error{Provider: Name, Op: op, Status: 200, Message: "pagination did not advance past " + after}
		}
		after = next
	}
}
