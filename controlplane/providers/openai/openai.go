// Package openai revokes a departing user at OpenAI through the
// organization Admin API (admin key, sk-admin-...).
//
// RevokeUser, in order:
//
//  1. finds the user: GET /organization/users, every page (after=last_id
//     while has_more), matching the email case-insensitively on our side
//     (the API's emails[] filter is not documented as case-insensitive);
//  2. deletes the pending invites for that email: GET /organization/invites,
//     DELETE /organization/invites/{id}. Accepted invites cannot be deleted
//     (and are the membership itself); expired ones grant nothing;
//  3. for every active project (GET /organization/projects; archived
//     projects are left out: the API documents that they have no users and
//     cannot be used or updated, so their keys grant nothing and a delete
//     there is refused):
//     - deletes the project API keys owned by the user:
//     GET /organization/projects/{id}/api_keys?owner_project_access=any
//     (without it the endpoint hides keys whose owner lost project access),
//     DELETE .../api_keys/{key_id}. Keys are matched on owner.type "user"
//     and the owner's id or email. Service-account keys are not touched:
//     the API does not say who created a service account or its keys;
//     - removes the project membership: GET .../users,
//     DELETE .../users/{user_id};
//  4. removes the user from the organization: DELETE /organization/users/{id},
//     only when nothing before failed, so that a retry still finds the user
//     and whatever is left.
//
// CaptureUsage (usage.go) reads the user's completions usage from the
// Usage API before the revocation.
//
// A 404 on a delete is already_absent. All calls go through
// github.com/openai/openai-go/v3's admin services; the SDK's own retries are
// off (see package providers for the retry contract).
package openai

import (
	"context"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/pagination"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/internal/httpcall"
)

// Name is the provider name the connector reports.
const Name = "openai"

// DefaultBaseURL is the OpenAI API root.
const DefaultBaseURL = "https://api.openai.com/v1"

// Connector revokes users in one OpenAI organization.
type Connector struct {
	org  sdk.AdminOrganizationService
	call *httpcall.Caller
	opts providers.Options
}

var _ providers.Connector = (*Connector)(nil)

// New returns a connector acting with adminKey.
func New(adminKey string, opts providers.Options) (*Connector, error) {
	if strings.TrimSpace(adminKey) == "" {
		return nil, errors.New("openai: admin key is empty")
	}
	opts = opts.WithDefaults(DefaultBaseURL)
	// NewAdminService, unlike NewClient, reads nothing from the environment.
	admin := sdk.NewAdminService(
		option.WithBaseURL(opts.BaseURL),
		option.WithHTTPClient(opts.HTTPClient),
		option.WithAdminAPIKey(adminKey),
		option.WithMaxRetries(0),
	)
	return &Connector{
		org:  admin.Organization,
		call: &httpcall.Caller{Provider: Name, RequestIDHeader: "X-Request-Id", Secret: adminKey, Opts: opts},
		opts: opts,
	}, nil
}

// Name returns "openai".
func (c *Connector) Name() string { return Name }

// Validate lists one organization user, which needs a working admin key.
func (c *Connector) Validate(ctx context.Context) error {
	_, err := c.call.Do(ctx, "validating admin key", func(mw httpcall.Middleware) error {
		_, err := c.org.Users.List(ctx, sdk.AdminOrganizationUserListParams{Limit: param.NewOpt[int64](1)}, option.WithMiddleware(mw))
		return err
	})
	return err
}

// RevokeUser removes the user with that email from the organization, its
// projects and invites, and deletes the project API keys they own.
func (c *Connector) RevokeUser(ctx context.Context, email string) (providers.Revocation, error) {
	run := httpcall.NewRun(Name, email)
	email = strings.TrimSpace(email)
	if email == "" {
		return run.Rev, providers.Permanent(errors.New("openai: revoking user: email is empty"))
	}

	user, err := c.findUser(ctx, nil, email)
	if err != nil {
		run.Fail(err)
		return run.Rev, run.Err()
	}
	run.Rev.UserFound = user != nil
	userID := ""
	if user != nil {
		userID = user.ID
	}

	if stop := c.revokeInvites(ctx, run, email); stop {
		return run.Rev, run.Err()
	}
	if stop := c.revokeProjects(ctx, run, email, userID); stop {
		return run.Rev, run.Err()
	}

	switch {
	case user == nil:
		run.Add(c.call.Absent(providers.KindOrgMembership, "", ""), nil)
	case run.Failed():
		run.Add(providers.Action{
			Kind: providers.KindOrgMembership, Resource: userID, Outcome: providers.OutcomeFailed,
			At:    c.opts.Clock.Now().UTC(),
			Error: "not attempted: earlier revocations failed; the membership is kept so a retry can find what is left",
		}, nil)
	default:
		run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindOrgMembership, Resource: userID},
			"removing user "+userID+" from the organization",
			func(mw httpcall.Middleware) error {
				_, err := c.org.Users.Delete(ctx, userID, option.WithMiddleware(mw))
				return err
			}))
	}
	return run.Rev, run.Err()
}

// findUser looks the organization member with email up, matching
// case-insensitively, through every page of the users list; nil when there
// is none. The pages go into t without their bodies (they name everyone).
func (c *Connector) findUser(ctx context.Context, t *httpcall.Trail, email string) (*sdk.OrganizationUser, error) {
	var user *sdk.OrganizationUser
	err := listAll(ctx, c, t, "listing organization users",
		func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.OrganizationUser], error) {
			p := sdk.AdminOrganizationUserListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.After = param.NewOpt(after)
			}
			return c.org.Users.List(ctx, p, option.WithMiddleware(mw))
		},
		func(u sdk.OrganizationUser) string { return u.ID },
		func(u sdk.OrganizationUser) {
			if user == nil && strings.EqualFold(strings.TrimSpace(u.Email), email) {
				user = &u
			}
		})
	return user, err
}

func (c *Connector) revokeInvites(ctx context.Context, run *httpcall.Run, email string) (stop bool) {
	var pending []string
	err := listAll(ctx, c, nil, "listing invites",
		func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.Invite], error) {
			p := sdk.AdminOrganizationInviteListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.After = param.NewOpt(after)
			}
			return c.org.Invites.List(ctx, p, option.WithMiddleware(mw))
		},
		func(i sdk.Invite) string { return i.ID },
		func(i sdk.Invite) {
			if i.Status == sdk.InviteStatusPending && strings.EqualFold(strings.TrimSpace(i.Email), email) {
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

func (c *Connector) revokeProjects(ctx context.Context, run *httpcall.Run, email, userID string) (stop bool) {
	var projects []string
	err := listAll(ctx, c, nil, "listing projects",
		func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.Project], error) {
			p := sdk.AdminOrganizationProjectListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
			if after != "" {
				p.After = param.NewOpt(after)
			}
			return c.org.Projects.List(ctx, p, option.WithMiddleware(mw))
		},
		func(p sdk.Project) string { return p.ID },
		func(p sdk.Project) {
			if p.Status != "archived" {
				projects = append(projects, p.ID)
			}
		})
	if err != nil {
		return run.Fail(err)
	}
	mine := func(id, mail string) bool {
		return (userID != "" && id == userID) || strings.EqualFold(strings.TrimSpace(mail), email)
	}
	keys, members := 0, 0
	for _, pid := range projects {
		var keyIDs []string
		err := listAll(ctx, c, nil, "listing api keys of project "+pid,
			func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.ProjectAPIKey], error) {
				p := sdk.AdminOrganizationProjectAPIKeyListParams{
					Limit:              param.NewOpt(int64(c.opts.PageSize)),
					OwnerProjectAccess: sdk.AdminOrganizationProjectAPIKeyListParamsOwnerProjectAccessAny,
				}
				if after != "" {
					p.After = param.NewOpt(after)
				}
				return c.org.Projects.APIKeys.List(ctx, pid, p, option.WithMiddleware(mw))
			},
			func(k sdk.ProjectAPIKey) string { return k.ID },
			func(k sdk.ProjectAPIKey) {
				if k.Owner.Type == "user" && mine(k.Owner.User.ID, k.Owner.User.Email) {
					keyIDs = append(keyIDs, k.ID)
				}
			})
		if err != nil {
			if run.Fail(err) {
				return true
			}
			continue
		}
		for _, kid := range keyIDs {
			keys++
			if run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindAPIKey, Resource: kid, Scope: pid},
				fmt.Sprintf("deleting api key %s of project %s", kid, pid),
				func(mw httpcall.Middleware) error {
					_, err := c.org.Projects.APIKeys.Delete(ctx, pid, kid, option.WithMiddleware(mw))
					return err
				})) {
				return true
			}
		}

		var memberID string
		err = listAll(ctx, c, nil, "listing users of project "+pid,
			func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[sdk.ProjectUser], error) {
				p := sdk.AdminOrganizationProjectUserListParams{Limit: param.NewOpt(int64(c.opts.PageSize))}
				if after != "" {
					p.After = param.NewOpt(after)
				}
				return c.org.Projects.Users.List(ctx, pid, p, option.WithMiddleware(mw))
			},
			func(u sdk.ProjectUser) string { return u.ID },
			func(u sdk.ProjectUser) {
				if memberID == "" && mine(u.ID, u.Email) {
					memberID = u.ID
				}
			})
		if err != nil {
			if run.Fail(err) {
				return true
			}
			continue
		}
		if memberID == "" {
			continue
		}
		members++
		if run.Add(c.call.Revoke(ctx, providers.Action{Kind: providers.KindProjectMembership, Resource: memberID, Scope: pid},
			fmt.Sprintf("removing user %s from project %s", memberID, pid),
			func(mw httpcall.Middleware) error {
				_, err := c.org.Projects.Users.Delete(ctx, pid, memberID, option.WithMiddleware(mw))
				return err
			})) {
			return true
		}
	}
	if keys == 0 {
		run.Add(c.call.Absent(providers.KindAPIKey, "", ""), nil)
	}
	if members == 0 {
		run.Add(c.call.Absent(providers.KindProjectMembership, "", ""), nil)
	}
	return false
}

// listAll follows a cursor-paginated list to its end: after=last_id while
// has_more. Each page goes into t, without its body.
func listAll[T any](ctx context.Context, c *Connector, t *httpcall.Trail, op string,
	page func(after string, mw httpcall.Middleware) (*pagination.ConversationCursorPage[T], error),
	idOf func(T) string, each func(T)) error {
	after := ""
	for {
		var pg *pagination.ConversationCursorPage[T]
		_, err := c.call.Read(ctx, t, false, op, func(mw httpcall.Middleware) error {
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
