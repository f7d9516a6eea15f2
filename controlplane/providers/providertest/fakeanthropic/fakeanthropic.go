// Package fakeanthropic is an in-memory Anthropic Admin API for tests,
// following the published reference: x-api-key auth with a required
// anthropic-version header, list envelopes {"data","has_more","first_id",
// "last_id"} with after_id/limit (1..1000) cursors, request-id headers,
// error envelopes {"type":"error","error":{"type","message"},"request_id"},
// and the documented objects (user, invite, workspace, workspace_member,
// api_key and the *_deleted confirmations), and the Messages usage report
// (day buckets of results per api key and model, paged with
// page/next_page), which knows keys, not users.
package fakeanthropic

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"

	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
)

// User is an organization member.
type User struct{ ID, Email, Name, Role string }

// Invite is an invite; Status is pending, accepted, expired or deleted.
type Invite struct{ ID, Email, Status string }

// Workspace is a workspace.
type Workspace struct {
	ID       string
	Archived bool
}

// Key is an API key.
type Key struct {
	ID, Workspace string
	// CreatedBy is the creating user's id.
	CreatedBy string
	// PrincipalUser is the user the key acts as, if it is bound to one.
	PrincipalUser string
	// Status is active, inactive, archived or expired.
	Status string
}

// Fake is the server and its state.
type Fake struct {
	fakeapi.Server
	// MaxPage caps the page size served (items, or usage buckets), so that
	// tests paginate.
	MaxPage int

	key        string
	srv        *httptest.Server
	users      []*User
	invites    []*Invite
	workspaces []*Workspace
	members    map[string][]string // workspace id → user ids
	keys       []*Key
	usage      []Usage
}

// New starts a fake accepting adminKey.
func New(adminKey string) *Fake { return NewOn(adminKey, nil) }

// NewOn is New serving on ln (for instance a listener opened in a network
// namespace of the test's); nil means a fresh loopback listener.
func NewOn(adminKey string, ln net.Listener) *Fake {
	f := &Fake{key: adminKey, MaxPage: 1000, members: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/organizations/users", f.listUsers)
	mux.HandleFunc("DELETE /v1/organizations/users/{id}", f.deleteUser)
	mux.HandleFunc("GET /v1/organizations/invites", f.listInvites)
	mux.HandleFunc("DELETE /v1/organizations/invites/{id}", f.deleteInvite)
	mux.HandleFunc("GET /v1/organizations/workspaces", f.listWorkspaces)
	mux.HandleFunc("GET /v1/organizations/workspaces/{wid}/members/{uid}", f.getMember)
	mux.HandleFunc("DELETE /v1/organizations/workspaces/{wid}/members/{uid}", f.deleteMember)
	mux.HandleFunc("GET /v1/organizations/api_keys", f.listKeys)
	mux.HandleFunc("POST /v1/organizations/api_keys/{id}", f.updateKey)
	mux.HandleFunc("GET /v1/organizations/usage_report/messages", f.usageReport)
	f.srv = httptest.NewUnstartedServer(f.guard(mux))
	if ln != nil {
		f.srv.Listener.Close()
		f.srv.Listener = ln
	}
	f.srv.Start()
	return f
}

// URL is the API root to give the connector.
func (f *Fake) URL() string { return f.srv.URL }

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

func (f *Fake) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Wait(r)
		f.Mu.Lock()
		defer f.Mu.Unlock()
		rid := ""
		if fault := f.Begin(w, r, "request-id"); fault != nil {
			rid = w.Header().Get("request-id")
			switch {
			case fault.Status == http.StatusTooManyRequests:
				writeError(w, rid, fault.Status, "rate_limit_error", "Number of requests has exceeded your rate limit.")
			case fault.Status == 529:
				writeError(w, rid, fault.Status, "overloaded_error", "Overloaded")
			case fault.Status >= 500:
				writeError(w, rid, fault.Status, "api_error", "Internal server error")
			case fault.Status == http.StatusNotFound:
				writeError(w, rid, fault.Status, "not_found_error", "Not found")
			default:
				writeError(w, rid, fault.Status, "invalid_request_error", "injected failure")
			}
			return
		}
		rid = w.Header().Get("request-id")
		if r.Header.Get("X-Api-Key") != f.key {
			writeError(w, rid, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
			return
		}
		if r.Header.Get("Anthropic-Version") != "2023-06-01" {
			writeError(w, rid, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, requestID string, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": requestID})
}

func notFound(w http.ResponseWriter, what string) {
	writeError(w, w.Header().Get("request-id"), http.StatusNotFound, "not_found_error", what+" not found")
}

func page[T any](f *Fake, w http.ResponseWriter, r *http.Request, items []T, id func(T) string, render func(T) any) {
	rid := w.Header().Get("request-id")
	limit, err := fakeapi.Limit(r, 20, 1000)
	if err != nil {
		writeError(w, rid, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	got, more, err := fakeapi.Page(items, id, r.URL.Query().Get("after_id"), min(limit, f.MaxPage))
	if err != nil {
		writeError(w, rid, http.StatusBadRequest, "invalid_request_error", err.Error())
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
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "has_more": more, "first_id": first, "last_id": last})
}

const stamp = "2026-01-02T03:04:05Z"

func (f *Fake) listUsers(w http.ResponseWriter, r *http.Request) {
	users := f.users
	if email := r.URL.Query().Get("email"); email != "" {
		// Exact match: the reference does not promise case-insensitivity.
		users = slices.DeleteFunc(slices.Clone(users), func(u *User) bool { return u.Email != email })
	}
	page(f, w, r, users, func(u *User) string { return u.ID }, func(u *User) any {
		return map[string]any{"type": "user", "id": u.ID, "email": u.Email, "name": u.Name, "role": u.Role, "added_at": stamp}
	})
}

func (f *Fake) deleteUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(f.users, func(u *User) bool { return u.ID == id })
	if i < 0 {
		notFound(w, "User")
		return
	}
	f.users = slices.Delete(f.users, i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "type": "user_deleted"})
}

func (f *Fake) listInvites(w http.ResponseWriter, r *http.Request) {
	page(f, w, r, f.invites, func(i *Invite) string { return i.ID }, func(i *Invite) any {
		return map[string]any{"type": "invite", "id": i.ID, "email": i.Email, "role": "user", "status": i.Status, "invited_at": stamp, "expires_at": stamp}
	})
}

func (f *Fake) deleteInvite(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(f.invites, func(v *Invite) bool { return v.ID == id && v.Status != "deleted" })
	if i < 0 {
		notFound(w, "Invite")
		return
	}
	f.invites[i].Status = "deleted"
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "type": "invite_deleted"})
}

func (f *Fake) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	ws := f.workspaces
	if r.URL.Query().Get("include_archived") != "true" {
		ws = slices.DeleteFunc(slices.Clone(ws), func(w *Workspace) bool { return w.Archived })
	}
	page(f, w, r, ws, func(w *Workspace) string { return w.ID }, func(w *Workspace) any {
		var archived any
		if w.Archived {
			archived = stamp
		}
		return map[string]any{"type": "workspace", "id": w.ID, "name": w.ID, "created_at": stamp, "archived_at": archived, "display_color": "#6C5BB9"}
	})
}

func (f *Fake) member(w http.ResponseWriter, r *http.Request) (wid, uid string, i int) {
	wid, uid = r.PathValue("wid"), r.PathValue("uid")
	if !slices.ContainsFunc(f.workspaces, func(x *Workspace) bool { return x.ID == wid }) {
		notFound(w, "Workspace")
		return "", "", -1
	}
	i = slices.Index(f.members[wid], uid)
	if i < 0 {
		notFound(w, "Workspace member")
	}
	return wid, uid, i
}

func (f *Fake) getMember(w http.ResponseWriter, r *http.Request) {
	if wid, uid, i := f.member(w, r); i >= 0 {
		writeJSON(w, http.StatusOK, map[string]any{"type": "workspace_member", "user_id": uid, "workspace_id": wid, "workspace_role": "workspace_developer"})
	}
}

func (f *Fake) deleteMember(w http.ResponseWriter, r *http.Request) {
	wid, uid, i := f.member(w, r)
	if i < 0 {
		return
	}
	f.members[wid] = slices.Delete(f.members[wid], i, i+1)
	writeJSON(w, http.StatusOK, map[string]any{"type": "workspace_member_deleted", "user_id": uid, "workspace_id": wid})
}

func keyJSON(k *Key) any {
	var principal any
	if k.PrincipalUser != "" {
		principal = map[string]any{"type": "user_actor", "user_id": k.PrincipalUser}
	}
	return map[string]any{"type": "api_key", "id": k.ID, "name": k.ID, "created_at": stamp, "expires_at": nil,
		"created_by": map[string]any{"id": k.CreatedBy, "type": "user"}, "partial_key_hint": "sk-ant-api03-R2D...igAA",
		"status": k.Status, "principal": principal, "scope": map[string]any{"type": "workspace", "workspace_id": k.Workspace}}
}

func (f *Fake) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	keys := slices.DeleteFunc(slices.Clone(f.keys), func(k *Key) bool {
		return (q.Get("created_by_user_id") != "" && k.CreatedBy != q.Get("created_by_user_id")) ||
			(q.Get("status") != "" && k.Status != q.Get("status")) ||
			(q.Get("workspace_id") != "" && k.Workspace != q.Get("workspace_id"))
	})
	page(f, w, r, keys, func(k *Key) string { return k.ID }, keyJSON)
}

func (f *Fake) updateKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	i := slices.IndexFunc(f.keys, func(k *Key) bool { return k.ID == id })
	if i < 0 {
		notFound(w, "API key")
		return
	}
	var body struct {
		Name   *string `json:"name"`
		Status *string `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, w.Header().Get("request-id"), http.StatusBadRequest, "invalid_request_error", "body: "+err.Error())
		return
	}
	if body.Status != nil {
		switch *body.Status {
		case "active", "inactive", "archived":
			f.keys[i].Status = *body.Status
		default:
			writeError(w, w.Header().Get("request-id"), http.StatusBadRequest, "invalid_request_error", "status: invalid value")
			return
		}
	}
	writeJSON(w, http.StatusOK, keyJSON(f.keys[i]))
}

// AddUser adds an organization member.
func (f *Fake) AddUser(u User) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.users = append(f.users, &u)
}

// AddWorkspace adds a workspace with the given members.
func (f *Fake) AddWorkspace(ws Workspace, memberIDs ...string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.workspaces = append(f.workspaces, &ws)
	f.members[ws.ID] = append(f.members[ws.ID], memberIDs...)
}

// AddInvite adds an invite.
func (f *Fake) AddInvite(i Invite) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.invites = append(f.invites, &i)
}

// AddKey adds an API key.
func (f *Fake) AddKey(k Key) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.keys = append(f.keys, &k)
}

// State is a snapshot of what the fake holds, for end-state assertions.
type State struct {
	Users   []string            // user ids
	Members map[string][]string // workspace id → user ids
	Invites map[string]string   // invite id → status
	Keys    map[string]string   // key id → status
}

// Snapshot returns the fake's state.
func (f *Fake) Snapshot() State {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	s := State{Members: map[string][]string{}, Invites: map[string]string{}, Keys: map[string]string{}}
	for _, u := range f.users {
		s.Users = append(s.Users, u.ID)
	}
	for w, m := range f.members {
		s.Members[w] = slices.Clone(m)
	}
	for _, i := range f.invites {
		s.Invites[i.ID] = i.Status
	}
	for _, k := range f.keys {
		s.Keys[k.ID] = k.Status
	}
	return s
}

// String describes a state, for failure messages and comparisons.
func (s State) String() string {
	return fmt.Sprintf("users=%v members=%v invites=%v keys=%v", s.Users, s.Members, s.Invites, s.Keys)
}
