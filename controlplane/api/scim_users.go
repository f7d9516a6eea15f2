package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/toktra/toktra/controlplane/scim"
	"github.com/toktra/toktra/controlplane/store"
)

// scimUsers serves /Users and /Users/{id}.
func (s *Server) scimUsers(ctx context.Context, w http.ResponseWriter, c *scimCall, id string) (int, any, error) {
	switch {
	case id == "" && c.r.Method == http.MethodGet:
		return s.listSCIMUsers(ctx, c)
	case id == "" && c.r.Method == http.MethodPost:
		return s.createSCIMUser(ctx, w, c)
	case id == "":
		return 0, nil, scimStatus(http.StatusMethodNotAllowed, "GET or POST /Users")
	case c.r.Method == http.MethodGet:
		u, err := s.store.GetSCIMUser(ctx, c.orgID, id)
		if err != nil {
			return 0, nil, err
		}
		w.Header().Set("ETag", etag(u.Version))
		if notModified(c.r, u.Version) {
			return http.StatusNotModified, nil, nil
		}
		return http.StatusOK, scimProjection(c.r).apply(s.userResource(c, u)), nil
	case c.r.Method == http.MethodPut:
		return s.changeSCIMUser(ctx, w, c, id, "replace", func(cur store.SCIMUser) (*scim.User, error) {
			attrs, err := scim.DecodeObject(c.body)
			if err != nil {
				return nil, err
			}
			if err := checkSchemas(attrs, scim.UserSchema); err != nil {
				return nil, err
			}
			if err := bodyID(attrs, cur.ID); err != nil {
				return nil, err
			}
			u, err := scim.NormalizeUser(attrs)
			if err != nil {
				return nil, err
			}
			if !u.HasActive {
				// A PUT that says nothing of active leaves it: deactivation
				// and reactivation are deliberate.
				u.Active = cur.Active
				u.Attrs["active"] = cur.Active
			}
			return u, nil
		})
	case c.r.Method == http.MethodPatch:
		ops, err := scim.DecodePatch(c.body)
		if err != nil {
			return 0, nil, err
		}
		return s.changeSCIMUser(ctx, w, c, id, "patch", func(cur store.SCIMUser) (*scim.User, error) {
			attrs, err := scim.Clone(cur.Attributes)
			if err != nil {
				return nil, err
			}
			if err := scim.ApplyPatch(attrs, ops, scim.UserSchema); err != nil {
				return nil, err
			}
			return scim.NormalizeUser(attrs)
		})
	case c.r.Method == http.MethodDelete:
		return s.deleteSCIMUser(ctx, c, id)
	}
	return 0, nil, scimStatus(http.StatusMethodNotAllowed, "GET, PUT, PATCH or DELETE /Users/{id}")
}

// userResource renders a stored user as its SCIM resource.
func (s *Server) userResource(c *scimCall, u store.SCIMUser) map[string]any {
	res, err := scim.Clone(u.Attributes)
	if err != nil {
		// Stored attributes were checked JSON when written.
		s.log.Error("decoding stored scim user", "org", c.orgID, "user", u.ID, "err", err)
		res = map[string]any{}
	}
	res["schemas"] = schemasOf(scim.UserSchema, res)
	res["id"] = u.ID
	res["userName"] = u.UserName
	res["active"] = u.Active
	if u.ExternalID != "" {
		res["externalId"] = u.ExternalID
	}
	res["meta"] = scimMeta("User", c.baseURL+"/Users/"+u.ID, u.CreatedAt, u.UpdatedAt, u.Version)
	return res
}

func (s *Server) listSCIMUsers(ctx context.Context, c *scimCall) (int, any, error) {
	start, count, err := scimPage(c.r)
	if err != nil {
		return 0, nil, err
	}
	filter, err := scimFilter(c.r)
	if err != nil {
		return 0, nil, err
	}
	proj := scimProjection(c.r)
	render := func(us []store.SCIMUser) []any {
		out := make([]any, 0, len(us))
		for _, u := range us {
			out = append(out, proj.apply(s.userResource(c, u)))
		}
		return out
	}
	if filter == nil {
		// Page in the store: the order is creation then id, stable.
		page, err := s.store.ListSCIMUsers(ctx, store.ListSCIMUsersParams{OrgID: c.orgID, Offset: start - 1, Limit: max(count, 1)})
		if err != nil {
			return 0, nil, err
		}
		if count == 0 {
			page.Users = nil
		}
		return http.StatusOK, listResponse(render(page.Users), page.Total, start), nil
	}
	q, err := scim.PlanUserFilter(filter)
	if err != nil {
		return 0, nil, err
	}
	var candidates []store.SCIMUser
	switch {
	case q.Empty:
	case q.ID != "":
		u, err := s.store.GetSCIMUser(ctx, c.orgID, q.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, nil, err
		}
		if err == nil {
			candidates = []store.SCIMUser{u}
		}
	default:
		page, err := s.store.ListSCIMUsers(ctx, store.ListSCIMUsersParams{
			OrgID: c.orgID, UserName: q.UserName, ExternalID: q.ExternalID, Email: q.Email, Limit: store.MaxSCIMPageLimit,
		})
		if err != nil {
			return 0, nil, err
		}
		if page.Total > len(page.Users) {
			return 0, nil, scim.Errorf(scim.TooMany, "the filter matches more than %d users; narrow it", store.MaxSCIMPageLimit)
		}
		candidates = page.Users
	}
	// The store matched the indexed conditions; the filter as a whole
	// (an email's type, say) is checked on each resource.
	var matched []store.SCIMUser
	for _, u := range candidates {
		ok, err := scim.Match(filter, s.userResource(c, u))
		if err != nil {
			return 0, nil, err
		}
		if ok {
			matched = append(matched, u)
		}
	}
	return http.StatusOK, listResponse(render(pageOf(matched, start, count)), len(matched), start), nil
}

// pageOf is the page of l starting at the 1-based start, count long.
func pageOf[T any](l []T, start, count int) []T {
	if start-1 >= len(l) {
		return nil
	}
	l = l[start-1:]
	return l[:min(count, len(l))]
}

func (s *Server) createSCIMUser(ctx context.Context, w http.ResponseWriter, c *scimCall) (int, any, error) {
	attrs, err := scim.DecodeObject(c.body)
	if err != nil {
		return 0, nil, err
	}
	if err := checkSchemas(attrs, scim.UserSchema); err != nil {
		return 0, nil, err
	}
	nu, err := scim.NormalizeUser(attrs)
	if err != nil {
		return 0, nil, err
	}
	raw, err := json.Marshal(nu.Attrs)
	if err != nil {
		return 0, nil, err
	}
	now := s.clock.Now()
	linked, err := s.store.UpsertUser(ctx, store.UpsertUserParams{OrgID: c.orgID, Email: nu.Email, Name: nu.Name, CreatedAt: now})
	if err != nil {
		return 0, nil, err
	}
	u, err := s.store.CreateSCIMUser(ctx, store.CreateSCIMUserParams{
		OrgID: c.orgID, UserID: linked.ID, UserName: nu.UserName, ExternalID: nu.ExternalID,
		Emails: nu.Emails, Active: nu.Active, Attributes: raw, At: now,
	})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, &scim.Error{Status: http.StatusConflict, ScimType: scim.Uniqueness, Detail: "a user with that userName already exists"}
	}
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("scim user created", "org", c.orgID, "scim_user", u.ID, "user", linked.ID)
	detail := map[string]any{"user_id": linked.ID}
	if !u.Active {
		// Created inactive: the person is to be locked out like any
		// deactivated user.
		unlock := s.scimLocks.lock(c.orgID + "/" + u.ID)
		u, err = s.lockSCIMUser(ctx, c, u, "POST")
		unlock()
		if err != nil {
			return 0, nil, err
		}
		detail["lockout_id"] = u.LockoutID
	}
	s.scimAudit(c, "scim.users.create", store.AuditTarget{Type: "scim.users", ID: u.ID}, detail)
	w.Header().Set("Location", c.baseURL+"/Users/"+u.ID)
	w.Header().Set("ETag", etag(u.Version))
	return http.StatusCreated, s.userResource(c, u), nil
}

// changeSCIMUser stores what change makes of the user (recomputed if
// another request changed the user in between, unless If-Match pinned the
// version), then carries out a deactivation it made or found pending.
func (s *Server) changeSCIMUser(ctx context.Context, w http.ResponseWriter, c *scimCall, id, verb string,
	change func(cur store.SCIMUser) (*scim.User, error)) (int, any, error) {
	unlock := s.scimLocks.lock(c.orgID + "/" + id)
	defer unlock()
	var (
		prev, u store.SCIMUser
		err     error
	)
	for attempt := 0; ; attempt++ {
		if prev, err = s.store.GetSCIMUser(ctx, c.orgID, id); err != nil {
			return 0, nil, err
		}
		if err := checkIfMatch(c.r, prev.Version); err != nil {
			return 0, nil, err
		}
		nu, err := change(prev)
		if err != nil {
			return 0, nil, err
		}
		raw, err := json.Marshal(nu.Attrs)
		if err != nil {
			return 0, nil, err
		}
		u, err = s.store.UpdateSCIMUser(ctx, store.UpdateSCIMUserParams{
			OrgID: c.orgID, ID: id, Version: prev.Version, UserName: nu.UserName, ExternalID: nu.ExternalID,
			Emails: nu.Emails, Active: nu.Active, Attributes: raw, At: s.clock.Now(),
		})
		if errors.Is(err, store.ErrStale) && c.r.Header.Get("If-Match") == "" && attempt < maxSCIMStaleRetries {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			return 0, nil, &scim.Error{Status: http.StatusConflict, ScimType: scim.Uniqueness, Detail: "another user has that userName"}
		}
		if err != nil {
			return 0, nil, err
		}
		break
	}
	detail := map[string]any{}
	if !u.Active {
		if u, err = s.lockSCIMUser(ctx, c, u, c.r.Method); err != nil {
			return 0, nil, err
		}
		detail["lockout_id"] = u.LockoutID
	} else if !prev.Active {
		s.recordReactivation(ctx, c, u)
		detail["reactivated"] = true
	}
	s.scimAudit(c, "scim.users."+verb, store.AuditTarget{Type: "scim.users", ID: u.ID}, detail)
	w.Header().Set("ETag", etag(u.Version))
	return http.StatusOK, s.userResource(c, u), nil
}

// deactivationPending reports whether the user's latest deactivation has
// not been carried out (the store clears LockedAt when one begins).
func deactivationPending(u store.SCIMUser) bool { return !u.Active && u.LockedAt == nil }

// lockSCIMUser starts the lockout of an inactive user's Toktra user, unless
// this deactivation already did, and records it on the user. The caller
// holds the user's lock.
func (s *Server) lockSCIMUser(ctx context.Context, c *scimCall, u store.SCIMUser, method string) (store.SCIMUser, error) {
	if !deactivationPending(u) {
		return u, nil // a repeated deactivation: the lockout stands
	}
	linked, err := s.store.GetUser(ctx, c.orgID, u.UserID)
	if err != nil {
		return u, err
	}
	evidence, err := json.Marshal(map[string]any{
		"source":         "scim",
		"operation":      method + " " + c.r.URL.Path,
		"scim_user_id":   u.ID,
		"user_name":      u.UserName,
		"external_id":    u.ExternalID,
		"payload_sha256": payloadHash(c.body),
		"client": map[string]any{
			"token_id":   c.token.ID,
			"remote_ip":  s.clientIP(c.r),
			"user_agent": auditValue(c.r.UserAgent()),
		},
	})
	if err != nil {
		return u, err
	}
	res, err := s.lockout.LockUser(ctx, c.orgID, linked.Email, "scim", evidence)
	if err != nil {
		return u, err
	}
	u, err = s.store.SetSCIMUserLockout(ctx, store.SetSCIMUserLockoutParams{OrgID: c.orgID, ID: u.ID, LockoutID: res.Lockout.ID, At: s.clock.Now()})
	if err != nil {
		return u, err
	}
	s.log.Info("scim deactivation: user locked out", "org", c.orgID, "scim_user", u.ID, "user", linked.ID,
		"lockout", res.Lockout.ID, "new_lockout", res.Created)
	s.scimAudit(c, "scim.users.deactivate", store.AuditTarget{Type: "lockouts", ID: res.Lockout.ID},
		map[string]any{"scim_user_id": u.ID, "user_id": linked.ID, "new_lockout": res.Created})
	return u, nil
}

// recordReactivation records that the client made a locked-out user
// active again. The lockout stays: unlocking is the admin's override.
func (s *Server) recordReactivation(ctx context.Context, c *scimCall, u store.SCIMUser) {
	detail := map[string]any{"scim_user_id": u.ID, "user_id": u.UserID}
	if u.LockoutID != "" {
		detail["lockout_id"] = u.LockoutID
		if l, err := s.store.GetLockout(ctx, c.orgID, u.LockoutID); err == nil {
			detail["lockout_state"] = string(l.State)
		}
	}
	detail["note"] = "reactivation does not unlock; override the lockout to unlock"
	s.log.Warn("scim reactivation recorded; the lockout stays until an admin overrides it", "org", c.orgID, "scim_user", u.ID, "lockout", u.LockoutID)
	s.scimAudit(c, "scim.users.reactivate", store.AuditTarget{Type: "scim.users", ID: u.ID}, detail)
}

// deleteSCIMUser deactivates the user (locking them out, unless that was
// done) and then deletes it.
func (s *Server) deleteSCIMUser(ctx context.Context, c *scimCall, id string) (int, any, error) {
	unlock := s.scimLocks.lock(c.orgID + "/" + id)
	defer unlock()
	u, err := s.store.GetSCIMUser(ctx, c.orgID, id)
	if err != nil {
		return 0, nil, err
	}
	if err := checkIfMatch(c.r, u.Version); err != nil {
		return 0, nil, err
	}
	if u.Active {
		attrs, err := scim.Clone(u.Attributes)
		if err != nil {
			return 0, nil, err
		}
		attrs["active"] = false
		raw, err := json.Marshal(attrs)
		if err != nil {
			return 0, nil, err
		}
		u, err = s.store.UpdateSCIMUser(ctx, store.UpdateSCIMUserParams{
			OrgID: c.orgID, ID: id, Version: u.Version, UserName: u.UserName, ExternalID: u.ExternalID,
			Emails: u.Emails, Active: false, Attributes: raw, At: s.clock.Now(),
		})
		if err != nil {
			return 0, nil, err
		}
	}
	if u, err = s.lockSCIMUser(ctx, c, u, http.MethodDelete); err != nil {
		return 0, nil, err
	}
	if err := s.store.DeleteSCIMUser(ctx, c.orgID, id, s.clock.Now()); err != nil {
		return 0, nil, err
	}
	s.log.Info("scim user deleted", "org", c.orgID, "scim_user", id, "lockout", u.LockoutID)
	s.scimAudit(c, "scim.users.delete", store.AuditTarget{Type: "scim.users", ID: id}, map[string]any{"lockout_id": u.LockoutID})
	return http.StatusNoContent, nil, nil
}
