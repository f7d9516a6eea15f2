// Package fakeopenai is an in-memory OpenAI organization Admin API for
// tests, following the published reference: Bearer admin-key auth, list
// envelopes {"object":"list","data","first_id","last_id","has_more"} with
// after/limit (1..100) cursors, x-request-id headers, error envelopes
// {"error":{"message","type","param","code"}}, and the documented objects
// (organization.user, organization.invite, organization.project,
// organization.project.user, organization.project.api_key and their
// *.deleted confirmations), and the completions Usage API (a "page" of
// "bucket"s of organization.usage.completions.result, paged with
// page/next_page), whose rows lose their user_id when the user is deleted.
package fakeopenai

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
)

// User is an organization member.
type User struct{ ID, Email, Name, Role string }

// Project is an organization project.
type Project struct {
	ID, Name string
	Archived bool
}

// Invite is an organization invite; Status is pending, accepted or expired.
type Invite struct{ ID, Email, Status string }

// Key is a project API key owned by a user or a service account.
type Key struct {
	ID, Project, Name string
	// OwnerUser is the owning user's id; empty for a service-account key.
	OwnerUser string
	// OwnerServiceAccount is the owning service account's id.
	OwnerServiceAccount string
}

// Fake is the server and its state.
type Fake struct {
	fakeapi.Server
	// MaxPage caps the page size served (items, or usage buckets), below
	// what a client asks for, so that tests paginate.
	MaxPage int

	key      string
	srv      *httptest.Server
	users    []*User
	projects []*Project
	members  map[string][]string // project id → user ids
	invites  []*Invite
	keys     []*Key
	usage    []Usage
}

// New starts a fake accepting adminKey.
func New(adminKey string) *Fake { return NewOn(adminKey, nil) }

// NewOn is New serving on ln (for instance a listener opened in a network
// namespace of the test's); nil means a fresh loopback listener.
func NewOn(adminKey string, ln net.Listener) *Fake {
	f := &Fake{key: adminKey, MaxPage: 100, members: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/organization/users", f.listUsers)
	mux.HandleFunc("DELETE /v1/organization/users/{id}", f.deleteUser)
	mux.HandleFunc("GET /v1/organization/invites", f.listInvites)
	mux.HandleFunc("DELETE /v1/organization/invites/{id}", f.deleteInvite)
	mux.HandleFunc("GET /v1/organization/projects", f.listProjects)
	mux.HandleFunc("GET /v1/organization/projects/{pid}/users", f.listProjectUsers)
	mux.HandleFunc("DELETE /v1/organization/projects/{pid}/users/{id}", f.deleteProjectUser)
	mux.HandleFunc("GET /v1/organization/projects/{pid}/api_keys", f.listKeys)
	mux.HandleFunc("DELETE /v1/organization/projects/{pid}/api_keys/{id}", f.deleteKey)
	mux.HandleFunc("GET /v1/organization/usage/completions", f.usageCompletions)
	f.srv = httptest.NewUnstartedServer(f.guard(mux))
	if ln != nil {
		f.srv.Listener.Close()
		f.srv.Listener = ln
	}
	f.srv.Start()
	return f
}

// URL is the API root to give the connector (…/v1).
func (f *Fake) URL() string { return f.srv.URL + "/v1" }

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// guard does what every endpoint does first: request id, fault injection,
// admin-key check. It holds the state lock for the whole request.
func (f *Fake) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Wait(r)
		f.Mu.Lock()
		defer f.Mu.Unlock()
		if fault := f.Begin(w, r, "x-request-id"); fault != nil {
			switch {
			case fault.Status == http.StatusTooManyRequests:
				writeError(w, fault.Status, "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later.")
			case fault.Status >= 500:
				writeError(w, fault.Status, "server_error", "", "The server had an error while processing your request. Sorry about that!")
			default:
				writeError(w, fault.Status, "invalid_request_error", "", "injected failure")
			}
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || got != f.key {
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
				"Incorrect API key provided: "+mask(got)+". You can find your API key at https://platform.openai.com/account/api-keys.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mask shows a key the way OpenAI's 401 message does: a prefix and the
// last four characters.
func mask(k string) string {
	if len(k) < 12 {
		return "***"
	}
	return k[:3] + strings.Repeat("*", 8) + k[len(k)-4:]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	var c any
	if code != "" {
		c = code
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": c}})
}

func page[T any](f *Fake, w http.ResponseWriter, r *http.Request, items []T, id func(T) string, render func(T) any) {
	limit, err := fakeapi.Limit(r, 20, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
		return
	}
	got, more, err := fakeapi.Page(items, id, r.URL.Query().Get("after"), min(limit, f.MaxPage))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
		return
	}
	data := make([]any, 0, len(got))
	for _, it := range got {
		data = append(data, render(it))
	}
	var first, last any
	if len(got) > 0 {
		first, last = id(got[0]), id(got[len(got)-1])
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more})
}

func userJSON(u *User) any {
	return map[string]any{"object": "organization.user", "id": u.ID, "name": u.Name, "email": u.Email, "role": u.Role, "added_at": 1711471533}
}

func (f *Fake) listUsers(w http.ResponseWriter, r *http.Request) {
	users := f.users
	q := r.URL.Query()
	if emails := append(q["emails[]"], q["emails"]...); len(emails) > 0 {
		users = nil
		for _, u := range f.users {
			if slices.Contains(emails, u.Email) {
				users = append(users, u)
			}
		}
	}
	page(f, w, r, users, func(u *User) string { return u.ID }, userJSON)
}

func (f *Fake) deleteUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(f.users, func(u *User) bool { return u.ID == id })
	if i < 0 {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "No such User: "+id)
		return
	}
	f.users = slices.Delete(f.users, i, i+1)
	// The provider forgets whose usage it was: the rows stay (the
	// organization's totals do not change) but no longer carry the user.
	for j := range f.usage {
		if f.usage[j].UserID == id {
			f.usage[j].UserID = ""
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "organization.user.deleted", "id": id, "deleted": true})
}

func (f *Fake) listInvites(w http.ResponseWriter, r *http.Request) {
	page(f, w, r, f.invites, func(i *Invite) string { return i.ID }, func(i *Invite) any {
		return map[string]any{"object": "organization.invite", "id": i.ID, "email": i.Email, "role": "reader", "status": i.Status,
			"created_at": 1711471533, "expires_at": 1711471533, "accepted_at": nil, "projects": []any{}}
	})
}

func (f *Fake) deleteInvite(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(f.invites, func(v *Invite) bool { return v.ID == id })
	switch {
	case i < 0:
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "No such Invite: "+id)
		return
	case f.invites[i].Status == "accepted":
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "Invite has already been accepted and cannot be deleted.")
		return
	}
	f.invites = slices.Delete(f.invites, i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"object": "organization.invite.deleted", "id": id, "deleted": true})
}

func (f *Fake) listProjects(w http.ResponseWriter, r *http.Request) {
	projects := f.projects
	if r.URL.Query().Get("include_archived") != "true" {
		projects = slices.DeleteFunc(slices.Clone(projects), func(p *Project) bool { return p.Archived })
	}
	page(f, w, r, projects, func(p *Project) string { return p.ID }, func(p *Project) any {
		status, archivedAt := "active", any(nil)
		if p.Archived {
			status, archivedAt = "archived", 1711471533
		}
		return map[string]any{"object": "organization.project", "id": p.ID, "name": p.Name, "created_at": 1711471533, "archived_at": archivedAt, "status": status}
	})
}

func (f *Fake) project(w http.ResponseWriter, r *http.Request) *Project {
	pid := r.PathValue("pid")
	i := slices.IndexFunc(f.projects, func(p *Project) bool { return p.ID == pid })
	if i < 0 {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "No such Project: "+pid)
		return nil
	}
	return f.projects[i]
}

func (f *Fake) user(id string) *User {
	i := slices.IndexFunc(f.users, func(u *User) bool { return u.ID == id })
	if i < 0 {
		return nil
	}
	return f.users[i]
}

func (f *Fake) listProjectUsers(w http.ResponseWriter, r *http.Request) {
	p := f.project(w, r)
	if p == nil {
		return
	}
	page(f, w, r, f.members[p.ID], func(id string) string { return id }, func(id string) any {
		u := f.user(id)
		email, name := "", ""
		if u != nil {
			email, name = u.Email, u.Name
		}
		return map[string]any{"object": "organization.project.user", "id": id, "name": name, "email": email, "role": "member", "added_at": 1711471533}
	})
}

func (f *Fake) deleteProjectUser(w http.ResponseWriter, r *http.Request) {
	p := f.project(w, r)
	if p == nil {
		return
	}
	if p.Archived {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "Project "+p.ID+" is archived.")
		return
	}
	id := r.PathValue("id")
	i := slices.Index(f.members[p.ID], id)
	if i < 0 {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "No such User: "+id)
		return
	}
	f.members[p.ID] = slices.Delete(f.members[p.ID], i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"object": "organization.project.user.deleted", "id": id, "deleted": true})
}

// ownerHasAccess is the "active" of owner_project_access.
func (f *Fake) ownerHasAccess(k *Key) bool {
	return k.OwnerUser == "" || slices.Contains(f.members[k.Project], k.OwnerUser)
}

func (f *Fake) listKeys(w http.ResponseWriter, r *http.Request) {
	p := f.project(w, r)
	if p == nil {
		return
	}
	access := r.URL.Query().Get("owner_project_access")
	var keys []*Key
	for _, k := range f.keys {
		if k.Project != p.ID {
			continue
		}
		switch access {
		case "", "active":
			// Omitted: the membership-based visibility the reference warns about.
			if !f.ownerHasAccess(k) {
				continue
			}
		case "inactive":
			if f.ownerHasAccess(k) {
				continue
			}
		case "any":
		default:
			writeError(w, http.StatusBadRequest, "invalid_request_error", "", "Invalid owner_project_access: "+access)
			return
		}
		keys = append(keys, k)
	}
	page(f, w, r, keys, func(k *Key) string { return k.ID }, func(k *Key) any {
		owner := map[string]any{"type": "service_account", "service_account": map[string]any{"id": k.OwnerServiceAccount, "name": "svc", "role": "member", "created_at": 1711471533}}
		if k.OwnerUser != "" {
			email, name := "", ""
			if u := f.user(k.OwnerUser); u != nil {
				email, name = u.Email, u.Name
			}
			owner = map[string]any{"type": "user", "user": map[string]any{"id": k.OwnerUser, "email": email, "name": name, "role": "member", "created_at": 1711471533}}
		}
		access := "inactive"
		if f.ownerHasAccess(k) {
			access = "active"
		}
		return map[string]any{"object": "organization.project.api_key", "id": k.ID, "name": k.Name, "redacted_value": "sk-abc...def",
			"created_at": 1711471533, "last_used_at": 1711471534, "owner": owner, "owner_project_access": access}
	})
}

func (f *Fake) deleteKey(w http.ResponseWriter, r *http.Request) {
	p := f.project(w, r)
	if p == nil {
		return
	}
	id := r.PathValue("id")
	i := slices.IndexFunc(f.keys, func(k *Key) bool { return k.ID == id && k.Project == p.ID })
	if i < 0 {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "No such API key: "+id)
		return
	}
	f.keys = slices.Delete(f.keys, i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"object": "organization.project.api_key.deleted", "id": id, "deleted": true})
}

// AddUser adds an organization member.
func (f *Fake) AddUser(u User) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.users = append(f.users, &u)
}

// AddProject adds a project with the given members.
func (f *Fake) AddProject(p Project, memberIDs ...string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.projects = append(f.projects, &p)
	f.members[p.ID] = append(f.members[p.ID], memberIDs...)
}

// RemoveMember takes a user out of a project without the API, as an
// admin in the dashboard would.
func (f *Fake) RemoveMember(projectID, userID string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.members[projectID] = slices.DeleteFunc(f.members[projectID], func(id string) bool { return id == userID })
}

// AddInvite adds an invite.
func (f *Fake) AddInvite(i Invite) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.invites = append(f.invites, &i)
}

// AddKey adds a project API key.
func (f *Fake) AddKey(k Key) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.keys = append(f.keys, &k)
}

// State is a snapshot of what the fake holds, for end-state assertions.
type State struct {
	Users    []string            // user ids
	Members  map[string][]string // project id → user ids
	Invites  []string            // invite ids
	Keys     []string            // key ids
	Projects int
}

// Snapshot returns the fake's state.
func (f *Fake) Snapshot() State {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	s := State{Members: map[string][]string{}, Projects: len(f.projects)}
	for _, u := range f.users {
		s.Users = append(s.Users, u.ID)
	}
	for p, m := range f.members {
		s.Members[p] = slices.Clone(m)
	}
	for _, i := range f.invites {
		s.Invites = append(s.Invites, i.ID)
	}
	for _, k := range f.keys {
		s.Keys = append(s.Keys, k.ID)
	}
	return s
}

// String describes a state briefly, for failure messages.
func (s State) String() string {
	return fmt.Sprintf("users=%v members=%v invites=%v keys=%v", s.Users, s.Members, s.Invites, s.Keys)
}
