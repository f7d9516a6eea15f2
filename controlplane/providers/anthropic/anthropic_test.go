package anthropic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/anthropic"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeanthropic"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/internal/clock"
)

const adminKey = "sk-ant-admin01-Zq9TESTSECRETx81kLmN0pQrStUv-AA"

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type env struct {
	fake *fakeanthropic.Fake
	conn *anthropic.Connector
	clk  *clock.Fake
	logs *bytes.Buffer

	mu    sync.Mutex
	waits []time.Duration
}

// setup starts a fake Anthropic org with a departing user (user_leaver,
// Leaver@Example.com) among colleagues, every list longer than the fake's
// two-item pages.
func setup(t *testing.T, key string) *env {
	t.Helper()
	e := &env{fake: fakeanthropic.New(adminKey), clk: clock.NewFake(t0), logs: &bytes.Buffer{}}
	t.Cleanup(e.fake.Close)
	e.fake.MaxPage = 2
	seed(e.fake)
	conn, err := anthropic.New(key, providers.Options{
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
		t.Fatalf("anthropic.New: %v", err)
	}
	e.conn = conn
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), key) || strings.Contains(e.logs.String(), adminKey) {
			t.Errorf("logs contain the admin key:\n%s", e.logs.String())
		}
	})
	return e
}

func seed(f *fakeanthropic.Fake) {
	for _, u := range []fakeanthropic.User{
		{ID: "user_ann", Email: "ann@example.com", Role: "admin"},
		{ID: "user_bob", Email: "bob@example.com", Role: "developer"},
		{ID: "user_cat", Email: "cat@example.com", Role: "user"},
		{ID: "user_leaver", Email: "Leaver@Example.com", Role: "developer"},
		{ID: "user_dan", Email: "dan@example.com", Role: "user"},
	} {
		f.AddUser(u)
	}
	f.AddWorkspace(fakeanthropic.Workspace{ID: "wrkspc_1"}, "user_ann", "user_leaver")
	f.AddWorkspace(fakeanthropic.Workspace{ID: "wrkspc_2"}, "user_bob")
	f.AddWorkspace(fakeanthropic.Workspace{ID: "wrkspc_3"}, "user_cat", "user_leaver", "user_dan")
	f.AddWorkspace(fakeanthropic.Workspace{ID: "wrkspc_old", Archived: true}, "user_leaver")
	for _, k := range []fakeanthropic.Key{
		{ID: "apikey_l1", Workspace: "wrkspc_1", CreatedBy: "user_leaver", Status: "active"},
		{ID: "apikey_a1", Workspace: "wrkspc_1", CreatedBy: "user_ann", Status: "active"},
		{ID: "apikey_l2", Workspace: "wrkspc_3", CreatedBy: "user_leaver", Status: "active"},
		{ID: "apikey_l3", Workspace: "wrkspc_3", CreatedBy: "user_leaver", Status: "inactive"},
		{ID: "apikey_b2", Workspace: "wrkspc_2", CreatedBy: "user_bob", Status: "active"},
		{ID: "apikey_l4", Workspace: "wrkspc_2", CreatedBy: "user_leaver", Status: "active"},
		// Created by an admin, acting as the leaver.
		{ID: "apikey_p5", Workspace: "wrkspc_3", CreatedBy: "user_ann", PrincipalUser: "user_leaver", Status: "active"},
		{ID: "apikey_c3", Workspace: "wrkspc_3", CreatedBy: "user_cat", Status: "active"},
	} {
		f.AddKey(k)
	}
	for _, i := range []fakeanthropic.Invite{
		{ID: "invite_1", Email: "new@example.com", Status: "pending"},
		{ID: "invite_2", Email: "leaver@example.com", Status: "accepted"},
		{ID: "invite_3", Email: "LEAVER@example.com", Status: "pending"},
		{ID: "invite_4", Email: "bob@example.com", Status: "expired"},
		{ID: "invite_5", Email: "leaver@example.com", Status: "pending"},
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
	rev, err := e.conn.RevokeUser(context.Background(), "leaver@EXAMPLE.com")
	if err != nil {
		t.Fatalf("RevokeUser = %v; want nil", err)
	}
	if !rev.UserFound || rev.Provider != "anthropic" {
		t.Errorf("UserFound=%v Provider=%q; want true, anthropic", rev.UserFound, rev.Provider)
	}
	want := map[string]int{
		"invite/revoked": 2, "api_key/revoked": 4, "api_key/already_absent": 1,
		"workspace_membership/revoked": 2, "org_membership/revoked": 1,
	}
	if got := outcomes(rev); !maps.Equal(got, want) {
		t.Errorf("outcomes = %v; want %v", got, want)
	}
	for _, a := range rev.Actions {
		if a.Outcome == providers.OutcomeRevoked && (a.Status != 200 || !strings.HasPrefix(a.RequestID, "req_") || !a.At.Equal(t0) || len(a.Response) == 0) {
			t.Errorf("action %+v: want status 200, a request id, At=%v and the response", a, t0)
		}
		if a.Kind == providers.KindAPIKey && a.Outcome == providers.OutcomeRevoked && !bytes.Contains(a.Response, []byte(`"status":"inactive"`)) {
			t.Errorf("key action response = %s; want the key shown inactive", a.Response)
		}
	}
	if rev.Actions[len(rev.Actions)-1].Kind != providers.KindOrgMembership {
		t.Errorf("last action = %+v; want the org membership", rev.Actions[len(rev.Actions)-1])
	}

	s := e.fake.Snapshot()
	if want := []string{"user_ann", "user_bob", "user_cat", "user_dan"}; !slices.Equal(s.Users, want) {
		t.Errorf("users after = %v; want %v", s.Users, want)
	}
	wantMembers := map[string][]string{
		"wrkspc_1": {"user_ann"}, "wrkspc_2": {"user_bob"}, "wrkspc_3": {"user_cat", "user_dan"},
		"wrkspc_old": {"user_leaver"}, // archived: left alone
	}
	for w, m := range wantMembers {
		if !slices.Equal(s.Members[w], m) {
			t.Errorf("members of %s after = %v; want %v", w, s.Members[w], m)
		}
	}
	wantKeys := map[string]string{
		"apikey_l1": "inactive", "apikey_a1": "active", "apikey_l2": "inactive", "apikey_l3": "inactive",
		"apikey_b2": "active", "apikey_l4": "inactive", "apikey_p5": "inactive", "apikey_c3": "active",
	}
	if !maps.Equal(s.Keys, wantKeys) {
		t.Errorf("keys after = %v; want %v", s.Keys, wantKeys)
	}
	wantInvites := map[string]string{"invite_1": "pending", "invite_2": "accepted", "invite_3": "deleted", "invite_4": "expired", "invite_5": "deleted"}
	if !maps.Equal(s.Invites, wantInvites) {
		t.Errorf("invites after = %v; want %v", s.Invites, wantInvites)
	}
	if _, err := json.Marshal(rev); err != nil {
		t.Errorf("json.Marshal(revocation) = %v", err)
	}
}

func TestRevokeUserFollowsPaginationToTheEnd(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}
	var users, invites, keys, workspaces []string
	for _, c := range e.fake.Calls() {
		switch {
		case c.Method != "GET":
		case c.Path == "/v1/organizations/users":
			users = append(users, c.Query)
		case c.Path == "/v1/organizations/invites":
			invites = append(invites, c.Query)
		case c.Path == "/v1/organizations/api_keys" && strings.Contains(c.Query, "status=active"):
			keys = append(keys, c.Query)
		case c.Path == "/v1/organizations/workspaces":
			workspaces = append(workspaces, c.Query)
		}
	}
	// The email filter is case-sensitive at the fake: one filtered call
	// finds nothing, then the full list is paged.
	if len(users) != 4 || !strings.Contains(users[0], "email=leaver%40example.com") || !strings.Contains(users[3], "after_id=user_leaver") {
		t.Errorf("user list queries = %q; want the email filter, then 3 pages after_id=last_id", users)
	}
	if len(invites) != 3 || len(keys) != 4 || len(workspaces) != 2 {
		t.Errorf("pages: invites %d, active keys %d, workspaces %d; want 3, 4, 2", len(invites), len(keys), len(workspaces))
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
	for _, a := range rev.Actions {
		if a.Outcome != providers.OutcomeAlreadyAbsent {
			t.Errorf("second RevokeUser action %+v; want already_absent", a)
		}
	}
	if n := e.fake.Mutations(); n != 0 {
		t.Errorf("second RevokeUser made %d mutating calls; want 0", n)
	}
	if after := e.fake.Snapshot(); after.String() != before.String() {
		t.Errorf("second RevokeUser changed state: %v -> %v", before, after)
	}
}

func TestRetryAfterCrashBeforeOrgRemovalRevokesNothingTwice(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	// The run dies at the org removal (as a crash would leave it).
	e.fake.Inject(fakeapi.Fault{Method: "DELETE", PathPrefix: "/v1/organizations/users/", Status: 500})
	if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); !providers.Retryable(err) {
		t.Fatalf("RevokeUser = %v; want retryable", err)
	}
	e.fake.ResetCalls()
	rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if err != nil {
		t.Fatalf("retry RevokeUser = %v", err)
	}
	want := map[string]int{"invite/already_absent": 1, "api_key/already_absent": 4, "workspace_membership/already_absent": 1, "org_membership/revoked": 1}
	if got := outcomes(rev); !maps.Equal(got, want) {
		t.Errorf("retry outcomes = %v; want %v", got, want)
	}
	if n := e.fake.Mutations(); n != 1 {
		t.Errorf("retry made %d mutating calls; want 1 (the org removal)", n)
	}
}

func TestRevokeUserNotFoundStillDeletesInvites(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	e.fake.AddInvite(fakeanthropic.Invite{ID: "invite_9", Email: "Nobody@Example.com", Status: "pending"})
	rev, err := e.conn.RevokeUser(context.Background(), "nobody@example.com")
	if err != nil {
		t.Fatalf("RevokeUser = %v; want nil", err)
	}
	if rev.UserFound {
		t.Errorf("UserFound = true; want false")
	}
	want := map[string]int{"invite/revoked": 1, "api_key/already_absent": 1, "workspace_membership/already_absent": 1, "org_membership/already_absent": 1}
	if got := outcomes(rev); !maps.Equal(got, want) {
		t.Errorf("outcomes = %v; want %v", got, want)
	}
	if s := e.fake.Snapshot(); s.Invites["invite_9"] != "deleted" || len(s.Users) != 5 || s.Keys["apikey_l1"] != "active" {
		t.Errorf("state after = %v; want only invite_9 deleted", s)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	t.Run("long Retry-After is returned", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "POST", PathPrefix: "/v1/organizations/api_keys/", Status: 429, RetryAfter: "20"})
		rev, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
		if !providers.Retryable(err) || !errors.Is(err, providers.ErrRateLimited) {
			t.Fatalf("RevokeUser = %v; want a retryable rate limit", err)
		}
		if d, ok := providers.RetryAfter(err); !ok || d != 20*time.Second {
			t.Errorf("RetryAfter(err) = %v, %v; want 20s, true", d, ok)
		}
		last := rev.Actions[len(rev.Actions)-1]
		if last.Kind != providers.KindAPIKey || last.Outcome != providers.OutcomeFailed || last.Status != 429 || last.RequestID == "" {
			t.Errorf("last action = %+v; want the failed key update, 429, with request id", last)
		}
		if !slices.Contains(e.fake.Snapshot().Users, "user_leaver") {
			t.Errorf("user removed although the run was rate limited")
		}
	})
	t.Run("short Retry-After is waited out in place", func(t *testing.T) {
		t.Parallel()
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: "/v1/organizations/workspaces", Status: 429, RetryAfter: "2"})
		if _, err := e.conn.RevokeUser(context.Background(), "leaver@example.com"); err != nil {
			t.Fatalf("RevokeUser = %v; want nil", err)
		}
		if !slices.Equal(e.waits, []time.Duration{2 * time.Second}) {
			t.Errorf("waits = %v; want [2s]", e.waits)
		}
	})
}

func TestOverloadedIsRetryable(t *testing.T) {
	t.Parallel()
	for _, status := range []int{500, 529} {
		e := setup(t, adminKey)
		e.fake.Inject(fakeapi.Fault{Method: "GET", PathPrefix: "/v1/organizations/invites", Status: status})
		_, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
		var pe *providers.Error
		if !providers.Retryable(err) || !errors.As(err, &pe) || pe.Status != status || pe.Type == "" {
			t.Errorf("RevokeUser with %d = %v; want retryable *providers.Error with the error type", status, err)
		}
		// The run goes on with the keys and workspaces but keeps the user.
		if s := e.fake.Snapshot(); !slices.Contains(s.Users, "user_leaver") || s.Keys["apikey_l1"] != "inactive" {
			t.Errorf("state after a failed invite list = %v; want keys revoked, user kept", s)
		}
	}
}

func TestBadAdminKeyIsPermanent(t *testing.T) {
	t.Parallel()
	const wrong = "sk-ant-admin01-WRONGwrongWRONGwrong1234"
	e := setup(t, wrong)
	if err := e.conn.Validate(context.Background()); providers.Retryable(err) || !errors.Is(err, providers.ErrUnauthorized) {
		t.Errorf("Validate = %v; want permanent unauthorized", err)
	}
	_, err := e.conn.RevokeUser(context.Background(), "leaver@example.com")
	if err == nil || providers.Retryable(err) || !errors.Is(err, providers.ErrPermanent) || !errors.Is(err, providers.ErrUnauthorized) {
		t.Fatalf("RevokeUser = %v; want permanent unauthorized", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q contains the admin key", err)
	}
	if !strings.Contains(err.Error(), "authentication_error") {
		t.Errorf("error %q; want the provider's error type", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	e := setup(t, adminKey)
	if err := e.conn.Validate(context.Background()); err != nil {
		t.Errorf("Validate = %v; want nil", err)
	}
	calls := e.fake.Calls()
	if len(calls) != 1 || calls[0].Method != "GET" {
		t.Errorf("Validate calls = %v; want one read", calls)
	}
}
