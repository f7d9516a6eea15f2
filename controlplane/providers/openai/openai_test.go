package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/openai"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
	"github.com/toktra/toktra/internal/clock"
)

const adminKey = "sk-admin-Zq9TESTSECRETx81kLmN0pQrStUv"

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type env struct {
	fake *fakeopenai.Fake
	conn *openai.Connector
	clk  *clock.Fake
	logs *bytes.Buffer

	mu    sync.Mutex
	waits []time.Duration
}

// setup starts a fake OpenAI org with a departing user (user-leaver,
// Leaver@Example.com) and colleagues spread over several pages of every
// list, and a connector that pages two at a time.
func setup(t *testing.T, key string) *env {
	t.Helper()
	e := &env{fake: fakeopenai.New(adminKey), clk: clock.NewFake(t0), logs: &bytes.Buffer{}}
	t.Cleanup(e.fake.Close)
	e.fake.MaxPage = 2
	seed(e.fake)
	conn, err := openai.New(key, providers.Options{
		BaseURL: e.fake.URL(),
		Clock:   e.clk,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Wait: func(_ context.Context, d time.Duration) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.waits = append(e.waits, d)
			e.clk.Advance(d)
			return nil
		},
	})
	if err != nil {
		t.Fatalf("openai.New: %v", err)
	}
	e.conn = conn
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), key) || strings.Contains(e.logs.String(), adminKey) {
			t.Errorf("logs contain the admin key:\n%s", e.logs.String())
		}
	})
	return e
}

func seed(f *fakeopenai.Fake) {
	for _, u := range []fakeopenai.User{
		{ID: "user-ann", Email: "ann@example.com", Role: "owner"},
		{ID: "user-bob", Email: "bob@example.com", Role: "reader"},
		{ID: "user-cat", Email: "cat@example.com", Role: "reader"},
		{ID: "user-leaver", Email: "Leaver@Example.com", Name: "Lee Vér", Role: "reader"},
		{ID: "user-dan", Email: "dan@example.com", Role: "reader"},
	} {
		f.AddUser(u)
	}
	f.AddProject(fakeopenai.Project{ID: "proj-1", Name: "Default"}, "user-ann", "user-leaver", "user-bob")
	f.AddProject(fakeopenai.Project{ID: "proj-2"}, "user-ann")
	f.AddProject(fakeopenai.Project{ID: "proj-3"}, "user-bob", "user-cat", "user-dan", "user-leaver")
	f.AddProject(fakeopenai.Project{ID: "proj-4"}, "user-cat")
	f.AddProject(fakeopenai.Project{ID: "proj-old", Archived: true})
	for _, k := range []fakeopenai.Key{
		{ID: "key-l1", Project: "proj-1", OwnerUser: "user-leaver"},
		{ID: "key-a1", Project: "proj-1", OwnerUser: "user-ann"},
		{ID: "key-l2", Project: "proj-1", OwnerUser: "user-leaver"},
		{ID: "key-s1", Project: "proj-1", OwnerServiceAccount: "svc-1"},
		{ID: "key-b3", Project: "proj-3", OwnerUser: "user-bob"},
		{ID: "key-c3", Project: "proj-3", OwnerUser: "user-cat"},
		{ID: "key-l3", Project: "proj-3", OwnerUser: "user-leaver"},
		// The leaver lost access to proj-4 but the key is still enabled:
		// listed only with owner_project_access=any.
		{ID: "key-l4", Project: "proj-4", OwnerUser: "user-leaver"},
		{ID: "key-c4", Project: "proj-4", OwnerUser: "user-cat"},
	} {
		f.AddKey(k)
	}
	for _, i := range []fakeopenai.Invite{
		{ID: "invite-1", Email: "new@example.com", Status: "pending"},
		{ID: "invite-2", Email: "leaver@example.com", Status: "accepted"},
		{ID: "invite-3", Email: "bob@example.com", Status: "accepted"},
		{ID: "invite-4", Email: "LEAVER@example.com", Status: "pending"},
		{ID: "invite-5", Email: "other@example.com", Status: "expired"},
	} {
		f.AddInvite(i)
	}
}

func outcomes(rev providers.Revocation) map[string]int {
	m := map[string]int{}
	for _, a := range rev.Actions {
		m[a.Kind+"/"+a.Outcome]++
	}
	return m
}

func TestRevokeUserRemovesEverythingOfTheUserOnly(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	rev, err := e.conn.RevokeUser(context.Background(), "  leaver@EXAMPLE.com ")
	if err != nil {
		t.Fatalf("RevokeUser = %v; want nil", err)
	}
	if !rev.UserFound || rev.Provider != "openai" {
		t.Errorf("RevokeUser: UserFound=%v Provider=%q; want true, openai", rev.UserFound, rev.Provider)
	}
	want := map[string]int{
		"invite/revoked": 1, "api_key/revoked": 4, "project_membership/revoked": 2, "org_membership/revoked": 1,
	}
	if got := outcomes(rev); !mapsEqual(got, want) {
		t.Errorf("RevokeUser outcomes = %v; want %v", got, want)
	}
	for _, a := range rev.Actions {
		if a.Status != 200 || a.RequestID == "" || !a.At.Equal(t0) || !bytes.Contains(a.Response, []byte(`"deleted":true`)) {
			t.Errorf("action %+v: want status 200, a request id, At=%v and the deletion confirmation", a, t0)
		}
	}
	if i := slices.IndexFunc(rev.Actions, func(a providers.Action) bool { return a.Kind == providers.KindOrgMembership }); i != len(rev.Actions)-1 {
		t.Errorf("org membership removed at action %d of %d; want last", i, len(rev.Actions))
	}

	s := e.fake.Snapshot()
	if want := []string{"user-ann", "user-bob", "user-cat", "user-dan"}; !slices.Equal(s.Users, want) {
		t.Errorf("users after = %v; want %v", s.Users, want)
	}
	wantMembers := map[string][]string{
		"proj-1": {"user-ann", "user-bob"}, "proj-2": {"user-ann"}, "proj-3": {"user-bob", "user-cat", "user-dan"},
		"proj-4": {"user-cat"}, "proj-old": nil,
	}
	for p, m := range wantMembers {
		if !slices.Equal(s.Members[p], m) {
			t.Errorf("members of %s after = %v; want %v", p, s.Members[p], m)
		}
	}
	if want := []string{"key-a1", "key-s1", "key-b3", "key-c3", "key-c4"}; !slices.Equal(s.Keys, want) {
		t.Errorf("keys after = %v; want %v", s.Keys, want)
	}
	if want := []string{"invite-1", "invite-2", "invite-3", "invite-5"}; !slices.Equal(s.Invites, want) {
		t.Errorf("invites after = %v; want %v", s.Invites, want)
	}
	if _, err := json.Marshal(rev); err != nil {
		t.Errorf("json.Marshal(revocation) = %v; want nil", err)
	}
}

func TestRevokeUserFollowsPaginationToTheEnd(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}
	pages := map[string][]string{}
	for _, c := range e.fake.Calls() {
		if c.Method == "GET" {
			pages[c.Path] = append(pages[c.Path], c.Query)
		}
	}
	for path, n := range map[string]int{
		"/v1/organization/users": 3, "/v1/organization/invites": 3, "/v1/organization/projects": 2,
		"/v1/organization/projects/proj-3/users": 2, "/v1/organization/projects/proj-1/api_keys": 2,
	} {
		if len(pages[path]) != n {
			t.Errorf("GET %s: %d pages %q; want %d", path, len(pages[path]), pages[path], n)
		}
	}
	if q := pages["/v1/organization/users"]; len(q) == 3 && !strings.Contains(q[2], "after=user-leaver") {
		t.Errorf("third users page query = %q; want after=user-leaver (the previous last_id)", q[2])
	}
	for _, q := range pages["/v1/organization/projects/proj-4/api_keys"] {
		if !strings.Contains(q, "owner_project_access=any") {
			t.Errorf("api key list query = %q; want owner_project_access=any", q)
		}
	}
}

func TestRevokeUserTwiceIsIdempotent(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
		t.Fatalf("first RevokeUser = %v", err)
	}
	before := e.fake.Snapshot()
	e.fake.ResetCalls()
	rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if err != nil {
		t.Fatalf("second RevokeUser = %v", err)
	}
	if rev.UserFound {
		t.Errorf("second RevokeUser: UserFound = true; want false")
	}
	for _, a := range rev.Actions {
		if a.Outcome != providers.OutcomeAlreadyAbsent {
			t.Errorf("second RevokeUser action %+v; want already_absent", a)
		}
	}
	if got := outcomes(rev); len(got) != 4 {
		t.Errorf("second RevokeUser outcomes = %v; want already_absent for org, project, invite, api_key", got)
	}
	if n := e.fake.Mutations(); n != 0 {
		t.Errorf("second RevokeUser made %d mutating calls; want 0", n)
	}
	if after := e.fake.Snapshot(); after.String() != before.String() {
		t.Errorf("second RevokeUser changed state: %v -> %v", before, after)
	}
}

func TestRevokeUserDeletedBetweenListAndDeleteIsAlreadyAbsent(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	// The key disappears after it was listed: the delete 404s.
	e.fake.Inject(fakeapi.Fault{Method: "DELETE", PathPrefix: "/v1/organization/projects/proj-3/api_keys/key-l3", Status: 404})
	rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}
	i := slices.IndexFunc(rev.Actions, func(a providers.Action) bool { return a.Resource == "key-l3" })
	if i < 0 || rev.Actions[i].Outcome != providers.OutcomeAlreadyAbsent || rev.Actions[i].Status != 404 {
		t.Errorf("key-l3 action = %+v; want already_absent with status 404", rev.Actions[max(i, 0)])
	}
}

func TestRevokeUserNotFoundStillDeletesInvites(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	e.fake.AddInvite(fakeopenai.Invite{ID: "invite-9", Email: "Nobody@Example.com", Status: "pending"})
	rev, err := e.conn.RevokeUser(context.Background(), "nobody@example.com")
	if err != nil {
		t.Fatalf("RevokeUser = %v; want nil", err)
	}
	if rev.UserFound {
		t.Errorf("UserFound = true; want false")
	}
	want := map[string]int{"invite/revoked": 1, "api_key/already_absent": 1, "project_membership/already_absent": 1, "org_membership/already_absent": 1}
	if got := outcomes(rev); !mapsEqual(got, want) {
		t.Errorf("outcomes = %v; want %v", got, want)
	}
	if s := e.fake.Snapshot(); slices.Contains(s.Invites, "invite-9") || len(s.Users) != 5 || len(s.Keys) != 9 {
		t.Errorf("state after = %v; want only invite-9 gone", s)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	t.Run("long Retry-After is returned", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: "/v1/organization/users", Status: 429, RetryAfter: "30"})
		_, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
		if !providers.Retryable(err) || !errors.Is(err, providers.ErrRateLimited) {
			t.Fatalf("RevokeUser = %v; want a retryable rate limit", err)
		}
		if d, ok := providers.RetryAfter(err); !ok || d != 30*time.Second {
			t.Errorf("RetryAfter(err) = %v, %v; want 30s, true", d, ok)
		}
		if e.fake.Mutations() != 0 {
			t.Errorf("mutating calls after a rate-limited lookup; want none")
		}
	})
	t.Run("short Retry-After is waited out in place", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "DELETE", PathPrefix: "/v1/organization/invites/", Status: 429, RetryAfter: "1"})
		rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
		if err != nil {
			t.Fatalf("RevokeUser = %v; want nil", err)
		}
		if !slices.Equal(e.waits, []time.Duration{time.Second}) {
			t.Errorf("waits = %v; want [1s]", e.waits)
		}
		if got := outcomes(rev)["invite/revoked"]; got != 1 {
			t.Errorf("invite revoked %d times; want 1", got)
		}
	})
	t.Run("a second 429 in a row is returned", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "DELETE", PathPrefix: "/v1/organization/invites/", Status: 429, RetryAfter: "1", Times: 2})
		rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
		if d, ok := providers.RetryAfter(err); !providers.Retryable(err) || !ok || d != time.Second {
			t.Fatalf("RevokeUser = %v (retry after %v); want retryable, 1s", err, d)
		}
		last := rev.Actions[len(rev.Actions)-1]
		if last.Kind != providers.KindInvite || last.Outcome != providers.OutcomeFailed || last.Status != 429 || last.RequestID == "" {
			t.Errorf("last action = %+v; want the failed invite deletion with status 429 and a request id", last)
		}
		if len(e.fake.Snapshot().Users) != 5 {
			t.Errorf("user removed despite the rate limit; want the run stopped")
		}
	})
}

func TestServerErrorIsRetryableAndKeepsTheMembership(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	e.fake.Inject(fakeapi.Fault{Method: "DELETE", PathPrefix: "/v1/organization/projects/proj-3/api_keys/", Status: 503})
	rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if !providers.Retryable(err) || errors.Is(err, providers.ErrPermanent) {
		t.Fatalf("RevokeUser = %v; want retryable", err)
	}
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Status != 503 || pe.RequestID == "" {
		t.Errorf("RevokeUser error = %#v; want *providers.Error with status 503 and a request id", err)
	}
	last := rev.Actions[len(rev.Actions)-1]
	if last.Kind != providers.KindOrgMembership || last.Outcome != providers.OutcomeFailed || last.Status != 0 {
		t.Errorf("last action = %+v; want org membership not attempted", last)
	}
	if !slices.Contains(e.fake.Snapshot().Users, "user-leaver") {
		t.Errorf("user removed from the org although a key deletion failed")
	}
	// The rest went on: proj-4's key is gone.
	if slices.Contains(e.fake.Snapshot().Keys, "key-l4") {
		t.Errorf("key-l4 kept; want the run to go on after one 503")
	}

	// The retry finishes the job.
	rev, err = e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if err != nil {
		t.Fatalf("retry RevokeUser = %v", err)
	}
	want := map[string]int{"invite/already_absent": 1, "api_key/revoked": 1, "project_membership/already_absent": 1, "org_membership/revoked": 1}
	if got := outcomes(rev); !mapsEqual(got, want) {
		t.Errorf("retry outcomes = %v; want %v", got, want)
	}
}

func TestBadAdminKeyIsPermanent(t *testing.T) {
	t.Parallel()
	const wrong = "sk-admin-WRONGwrongWRONGwrong1234"
	e := setup(t, wrong)
	for name, call := range map[string]func() error{
		"Validate": func() error { return e.conn.Validate(context.Background()) },
		"RevokeUser": func() error {
			_, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
			return err
		},
	} {
		err := call()
		if err == nil || providers.Retryable(err) || !errors.Is(err, providers.ErrUnauthorized) || !errors.Is(err, providers.ErrPermanent) {
			t.Errorf("%s = %v; want a permanent unauthorized error", name, err)
			continue
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("%s error %q contains the admin key", name, err)
		}
	}
	if e.fake.Mutations() != 0 {
		t.Errorf("mutating calls with a bad key; want none")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	if err := e.conn.Validate(context.Background()); err != nil {
		t.Errorf("Validate = %v; want nil", err)
	}
}

func TestNetworkFailureIsRetryable(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	e.fake.Close()
	_, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if !providers.Retryable(err) {
		t.Errorf("RevokeUser with the server gone = %v; want retryable", err)
	}
}

func TestNewRejectsEmptyKey(t *testing.T) {
	t.Parallel()
	if _, err := openai.New(" ", providers.Options{}); err == nil {
		t.Errorf("openai.New(empty key) = nil error; want an error")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
