package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/toktra/toktra/controlplane/scim"
	"github.com/toktra/toktra/controlplane/store"
)

// scimGroups serves /Groups and /Groups/{id}.
func (s *Server) scimGroups(ctx context.Context, w http.ResponseWriter, c *scimCall, id string) (int, any, error) {
	switch {
	case id == "" && c.r.Method == http.MethodGet:
		return s.listSCIMGroups(ctx, c)
	case id == "" && c.r.Method == http.MethodPost:
		return s.createSCIMGroup(ctx, w, c)
	case id == "":
		return 0, nil, scimStatus(http.StatusMethodNotAllowed, "GET or POST /Groups")
	case c.r.Method == http.MethodGet:
		g, err := s.store.GetSCIMGroup(ctx, c.orgID, id)
		if err != nil {
			return 0, nil, err
		}
		w.Header().Set("ETag", etag(g.Version))
		if notModified(c.r, g.Version) {
			return http.StatusNotModified, nil, nil
		}
		proj := scimProjection(c.r)
		res, err := s.groupResource(ctx, c, g, proj.keeps("members"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, proj.apply(res), nil
	case c.r.Method == http.MethodPut:
		return s.changeSCIMGroup(ctx, w, c, id, "replace", true, func(cur store.SCIMGroup, members []string) (*scim.Group, error) {
			attrs, err := scim.DecodeObject(c.body)
			if err != nil {
				return nil, err
			}
			if err := checkSchemas(attrs, scim.GroupSchema); err != nil {
				return nil, err
			}
			if err := bodyID(attrs, cur.ID); err != nil {
				return nil, err
			}
			return scim.NormalizeGroup(attrs)
		})
	case c.r.Method == http.MethodPatch:
		ops, err := scim.DecodePatch(c.body)
		if err != nil {
			return 0, nil, err
		}
		// Okta and Entra ID take 204 for a group PATCH; a body would list
		// every member.
		return s.changeSCIMGroup(ctx, w, c, id, "patch", false, func(cur store.SCIMGroup, members []string) (*scim.Group, error) {
			attrs, err := scim.Clone(cur.Attributes)
			if err != nil {
				return nil, err
			}
			list := make([]any, 0, len(members))
			for _, m := range members {
				list = append(list, map[string]any{"value": m})
			}
			attrs["members"] = list
			if err := scim.ApplyPatch(attrs, ops, scim.GroupSchema); err != nil {
				return nil, err
			}
			g, err := scim.NormalizeGroup(attrs)
			if err == nil && !g.HasMembers {
				g.HasMembers = true // members removed entirely: none left
			}
			return g, err
		})
	case c.r.Method == http.MethodDelete:
		g, err := s.store.GetSCIMGroup(ctx, c.orgID, id)
		if err != nil {
			return 0, nil, err
		}
		if err := checkIfMatch(c.r, g.Version); err != nil {
			return 0, nil, err
		}
		if err := s.store.DeleteSCIMGroup(ctx, c.orgID, id); err != nil {
			return 0, nil, err
		}
		s.scimAudit(c, "scim.groups.delete", store.AuditTarget{Type: "scim.groups", ID: id}, nil)
		return http.StatusNoContent, nil, nil
	}
	return 0, nil, scimStatus(http.StatusMethodNotAllowed, "GET, PUT, PATCH or DELETE /Groups/{id}")
}

// groupResource renders a stored group; members are listed only when
// wanted (Entra ID asks for groups with excludedAttributes=members).
func (s *Server) groupResource(ctx context.Context, c *scimCall, g store.SCIMGroup, withMembers bool) (map[string]any, error) {
	res, err := scim.Clone(g.Attributes)
	if err != nil {
		return nil, err
	}
	res["schemas"] = schemasOf(scim.GroupSchema, res)
	res["id"] = g.ID
	res["displayName"] = g.DisplayName
	if g.ExternalID != "" {
		res["externalId"] = g.ExternalID
	}
	if withMembers {
		ms, err := s.store.ListSCIMGroupMembers(ctx, c.orgID, g.ID)
		if err != nil {
			return nil, err
		}
		members := make([]any, 0, len(ms))
		for _, m := range ms {
			members = append(members, map[string]any{
				"value": m.UserID, "display": m.UserName, "type": "User", "$ref": c.baseURL + "/Users/" + m.UserID,
			})
		}
		res["members"] = members
	}
	res["meta"] = scimMeta("Group", c.baseURL+"/Groups/"+g.ID, g.CreatedAt, g.UpdatedAt, g.Version)
	return res, nil
}

func (s *Server) listSCIMGroups(ctx context.Context, c *scimCall) (int, any, error) {
	start, count, err := scimPage(c.r)
	if err != nil {
		return 0, nil, err
	}
	filter, err := scimFilter(c.r)
	if err != nil {
		return 0, nil, err
	}
	proj := scimProjection(c.r)
	var q scim.Query
	if filter != nil {
		if q, err = scim.PlanGroupFilter(filter); err != nil {
			return 0, nil, err
		}
	}
	var (
		candidates []store.SCIMGroup
		total      int
	)
	switch {
	case q.Empty:
	case q.ID != "":
		g, err := s.store.GetSCIMGroup(ctx, c.orgID, q.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, nil, err
		}
		if err == nil {
			candidates = []store.SCIMGroup{g}
		}
	case filter == nil:
		page, err := s.store.ListSCIMGroups(ctx, store.ListSCIMGroupsParams{OrgID: c.orgID, Offset: start - 1, Limit: max(count, 1)})
		if err != nil {
			return 0, nil, err
		}
		if count == 0 {
			page.Groups = nil
		}
		out := make([]any, 0, len(page.Groups))
		for _, g := range page.Groups {
			res, err := s.groupResource(ctx, c, g, proj.keeps("members"))
			if err != nil {
				return 0, nil, err
			}
			out = append(out, proj.apply(res))
		}
		return http.StatusOK, listResponse(out, page.Total, start), nil
	default:
		page, err := s.store.ListSCIMGroups(ctx, store.ListSCIMGroupsParams{
			OrgID: c.orgID, DisplayName: q.DisplayName, ExternalID: q.ExternalID, Limit: store.MaxSCIMPageLimit,
		})
		if err != nil {
			return 0, nil, err
		}
		if page.Total > len(page.Groups) {
			return 0, nil, scim.Errorf(scim.TooMany, "the filter matches more than %d groups; narrow it", store.MaxSCIMPageLimit)
		}
		candidates = page.Groups
	}
	var matched []map[string]any
	for _, g := range candidates {
		// The members are needed to check a members filter.
		res, err := s.groupResource(ctx, c, g, q.Member != "" || proj.keeps("members"))
		if err != nil {
			return 0, nil, err
		}
		ok, err := scim.Match(filter, res)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			matched = append(matched, res)
		}
	}
	total = len(matched)
	out := []any{}
	for _, res := range pageOf(matched, start, count) {
		out = append(out, proj.apply(res))
	}
	return http.StatusOK, listResponse(out, total, start), nil
}

func (s *Server) createSCIMGroup(ctx context.Context, w http.ResponseWriter, c *scimCall) (int, any, error) {
	attrs, err := scim.DecodeObject(c.body)
	if err != nil {
		return 0, nil, err
	}
	if err := checkSchemas(attrs, scim.GroupSchema); err != nil {
		return 0, nil, err
	}
	ng, err := scim.NormalizeGroup(attrs)
	if err != nil {
		return 0, nil, err
	}
	raw, err := json.Marshal(ng.Attrs)
	if err != nil {
		return 0, nil, err
	}
	g, err := s.store.CreateSCIMGroup(ctx, store.CreateSCIMGroupParams{
		OrgID: c.orgID, DisplayName: ng.DisplayName, ExternalID: ng.ExternalID, Attributes: raw, Members: ng.Members, At: s.clock.Now(),
	})
	if err != nil {
		return 0, nil, groupWriteError(err)
	}
	s.scimAudit(c, "scim.groups.create", store.AuditTarget{Type: "scim.groups", ID: g.ID}, map[string]any{"members": len(ng.Members)})
	res, err := s.groupResource(ctx, c, g, true)
	if err != nil {
		return 0, nil, err
	}
	w.Header().Set("Location", c.baseURL+"/Groups/"+g.ID)
	w.Header().Set("ETag", etag(g.Version))
	return http.StatusCreated, res, nil
}

// groupWriteError names what a refused group write means for the client.
func groupWriteError(err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return &scim.Error{Status: http.StatusConflict, ScimType: scim.Uniqueness, Detail: "a group with that displayName already exists"}
	case errors.Is(err, store.ErrNotFound):
		return scim.Errorf(scim.InvalidValue, "members: every value must be the id of a user provisioned in this organization")
	}
	return err
}

// changeSCIMGroup stores what change makes of the group and its members
// (recomputed if another request changed the group in between, unless
// If-Match pinned the version). Only the members that change are written.
// It answers with the group, or 204 when render is false.
func (s *Server) changeSCIMGroup(ctx context.Context, w http.ResponseWriter, c *scimCall, id, verb string, render bool,
	change func(cur store.SCIMGroup, members []string) (*scim.Group, error)) (int, any, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.store.GetSCIMGroup(ctx, c.orgID, id)
		if err != nil {
			return 0, nil, err
		}
		if err := checkIfMatch(c.r, cur.Version); err != nil {
			return 0, nil, err
		}
		ms, err := s.store.ListSCIMGroupMembers(ctx, c.orgID, id)
		if err != nil {
			return 0, nil, err
		}
		old := make([]string, 0, len(ms))
		for _, m := range ms {
			old = append(old, m.UserID)
		}
		ng, err := change(cur, old)
		if err != nil {
			return 0, nil, err
		}
		add, remove := memberDiff(old, ng.Members)
		raw, err := json.Marshal(ng.Attrs)
		if err != nil {
			return 0, nil, err
		}
		g, err := s.store.UpdateSCIMGroup(ctx, store.UpdateSCIMGroupParams{
			OrgID: c.orgID, ID: id, Version: cur.Version, DisplayName: ng.DisplayName, ExternalID: ng.ExternalID,
			Attributes: raw, AddMembers: add, RemoveMembers: remove, At: s.clock.Now(),
		})
		if errors.Is(err, store.ErrStale) && c.r.Header.Get("If-Match") == "" && attempt < maxSCIMStaleRetries {
			continue
		}
		if err != nil {
			return 0, nil, groupWriteError(err)
		}
		s.scimAudit(c, "scim.groups."+verb, store.AuditTarget{Type: "scim.groups", ID: id},
			map[string]any{"members_added": len(add), "members_removed": len(remove)})
		w.Header().Set("ETag", etag(g.Version))
		if !render {
			return http.StatusNoContent, nil, nil
		}
		res, err := s.groupResource(ctx, c, g, true)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, res, nil
	}
}

// memberDiff is what to add to and remove from old to make it new.
func memberDiff(old, new []string) (add, remove []string) {
	inOld := make(map[string]bool, len(old))
	for _, m := range old {
		inOld[m] = true
	}
	inNew := make(map[string]bool, len(new))
	for _, m := range new {
		inNew[m] = true
		if !inOld[m] {
			add = append(add, m)
		}
	}
	for _, m := range old {
		if !inNew[m] {
			remove = append(remove, m)
		}
	}
	return add, remove
}
