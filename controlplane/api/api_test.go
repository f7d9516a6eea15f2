package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/connect"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr/bamboohrtest"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
)

type tenant struct {
	org        store.Org
	adminKey   string
	adminKeyID string
	readKey    string
	user       store.User
	device     store.Device
	secret     store.EnrollmentSecret
	lockoutID  string
}

type apiFixture struct {
	srv  *httptest.Server
	st   store.Store
	clk  *clock.Fake
	api  *Server
	a, b tenant
	ctx  context.Context
	http *http.Client
	// bamboo is the fake BambooHR API the triggers call (triggers_test.go).
	bamboo *bamboohrtest.Server
}

func setup(t *testing.T) *apiFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The job queue schedules by the real clock: the fake one starts there.
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.LoadOrCreateSigningKeys(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testLogOutput(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	issuer := fleet.NewIssuer(st, keys, clk)
	fl := fleet.NewService(fleet.Config{Store: st, CA: ca, Keys: keys, Issuer: issuer, Clock: clk, Logger: log})
	kek, err := secrets.LoadOrCreateLocalKEK(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	sealer := secrets.NewSealer(kek)
	f := &apiFixture{st: st, clk: clk, ctx: ctx}
	trig := f.newTriggers(t, st, sealer, clk, log)
	pl := newPipeline(t, st, issuer, sealer, clk, log, trig.Jobs())
	lo := lockout.NewService(st, issuer, pl, clk, log)
	trig.Attach(lo, pl.InsertTx)
	if err := trig.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.api = NewServer(Config{
		Store: st, Lockouts: lo, Fleet: fl, Clock: clk, Logger: log, Triggers: trig,
		Providers: ProviderConfig{Sealer: sealer, Options: providers.Options{Clock: clk, Logger: log}, AllowBaseURL: true},
		Custody:   newTestCustody(t, st, dir, clk),
	})
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(f.srv.Close)
	f.http = f.srv.Client()
	f.a = f.newTenant(t, "Org A", "alice@a.example")
	f.b = f.newTenant(t, "Org B", "bob@b.example")
	return f
}

func (f *apiFixture) newTenant(t *testing.T, name, email string) tenant {
	t.Helper()
	now := f.clk.Now()
	org, err := f.st.CreateOrg(f.ctx, store.CreateOrgParams{Name: name, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := CreateAPIKey(f.ctx, f.st, org.ID, "admin", store.ScopeAdmin, now, MaxAPIKeyLifetime)
	if err != nil {
		t.Fatal(err)
	}
	read, err := CreateAPIKey(f.ctx, f.st, org.ID, "read", store.ScopeReadOnly, now, MaxAPIKeyLifetime)
	if err != nil {
		t.Fatal(err)
	}
	user, err := f.st.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: org.ID, Email: email, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := f.st.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: org.ID, UserID: user.ID, Hostname: "laptop-" + email, OS: "linux", Serial: "SN-" + email, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := CreateEnrollmentSecret(f.ctx, f.st, org.ID, "mdm", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tn := tenant{org: org, adminKey: admin.Secret, adminKeyID: admin.ID, readKey: read.Secret, user: user, device: dev}
	tn.secret.ID = secret.ID
	var lo lockoutView
	if code := f.do(t, tn.adminKey, "POST", "/v1/lockouts", `{"email":"`+email+`"}`, &lo); code != http.StatusCreated {
		t.Fatalf("creating lockout for %s = %d", email, code)
	}
	tn.lockoutID = lo.ID
	// The pipeline locks the device in the background.
	f.waitLockout(t, tn.adminKey, lo.ID, "the device lock", func(v lockoutView) bool { return len(v.Devices) == 1 })
	return tn
}

func (f *apiFixture) do(t *testing.T, key, method, path, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e errorBody
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" {
			t.Errorf("%s %s = %d with body %q; want a JSON error with a code", method, path, resp.StatusCode, data)
		}
		if eb, ok := out.(*errorBody); ok {
			*eb = e
		}
		return resp.StatusCode
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// TestCrossTenant walks every endpoint with org B's admin key against org
// A's resources: B sees none of them and changes none of them.
func TestCrossTenant(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	at := f.triggerTenant(t, a)
	aNode, _ := recordCustody(t, f, a), recordCustody(t, f, f.b)
	aSnap, _, err := f.st.PutSnapshot(f.ctx, store.PutSnapshotParams{OrgID: a.org.ID, LockoutID: a.lockoutID, ID: store.NewID("snap"),
		PDF: []byte("%PDF-1.7 A's"), SHA256: make([]byte, 32), TimestampToken: []byte("token"), At: f.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		pattern string
		method  string
		path    string
		body    string
		// wantStatus for id routes; list routes must answer 200 without A's ids.
		wantStatus int
	}{
		// First: B's later cases make B's own log name the ids of A's that B tried.
		{"GET /v1/audit-log", "GET", "/v1/audit-log", "", 200},
		{"GET /v1/users", "GET", "/v1/users", "", 200},
		{"GET /v1/users/{id}", "GET", "/v1/users/" + a.user.ID, "", 404},
		{"GET /v1/devices", "GET", "/v1/devices?email=" + a.user.Email, "", 200},
		{"GET /v1/devices/{id}", "GET", "/v1/devices/" + a.device.ID, "", 404},
		{"POST /v1/devices/{id}/revoke", "POST", "/v1/devices/" + a.device.ID + "/revoke", "", 404},
		{"GET /v1/enrollment-secrets", "GET", "/v1/enrollment-secrets", "", 200},
		{"POST /v1/enrollment-secrets", "POST", "/v1/enrollment-secrets", `{"name":"b's"}`, 201},
		{"DELETE /v1/enrollment-secrets/{id}", "DELETE", "/v1/enrollment-secrets/" + a.secret.ID, "", 404},
		{"GET /v1/policy", "GET", "/v1/policy", "", 200},
		{"PUT /v1/policy", "PUT", "/v1/policy", `{"domains":["llm.b.example"],"cidrs":[]}`, 200},
		{"GET /v1/lockouts", "GET", "/v1/lockouts", "", 200},
		{"POST /v1/lockouts", "POST", "/v1/lockouts", `{"email":"` + a.user.Email + `"}`, 404},
		{"GET /v1/lockouts/{id}", "GET", "/v1/lockouts/" + a.lockoutID, "", 404},
		{"POST /v1/lockouts/{id}/override", "POST", "/v1/lockouts/" + a.lockoutID + "/override", `{"reason":"not yours"}`, 404},
		{"GET /v1/api-keys", "GET", "/v1/api-keys", "", 200},
		{"POST /v1/api-keys", "POST", "/v1/api-keys", `{"name":"b's","scope":"read-only"}`, 201},
		{"DELETE /v1/api-keys/{id}", "DELETE", "/v1/api-keys/" + a.adminKeyID, "", 404},
		{"GET /v1/providers", "GET", "/v1/providers", "", 200},
		{"GET /v1/providers/{name}", "GET", "/v1/providers/openai", "", 404},
		// B's own connection attempt fails its read check (no provider is
		// reachable here) and must not touch A's.
		{"PUT /v1/providers/{name}", "PUT", "/v1/providers/openai", `{"admin_key":"sk-b-key-0000000000000000","base_url":"http://127.0.0.1:1/v1"}`, 400},
		{"DELETE /v1/providers/{name}", "DELETE", "/v1/providers/openai", "", 404},
		{"GET /v1/users/{id}/usage", "GET", "/v1/users/" + a.user.ID + "/usage", "", 404},
		{"GET /v1/users/{id}/anomalies", "GET", "/v1/users/" + a.user.ID + "/anomalies", "", 404},
		// B's own integrations, made and removed; A's untouched (below).
		{"GET /v1/integrations/okta", "GET", "/v1/integrations/okta", "", 404},
		{"PUT /v1/integrations/okta", "PUT", "/v1/integrations/okta", `{}`, 201},
		{"POST /v1/integrations/okta/rotate-secret", "POST", "/v1/integrations/okta/rotate-secret", "", 200},
		{"DELETE /v1/integrations/okta", "DELETE", "/v1/integrations/okta", "", 204},
		{"GET /v1/hris/config", "GET", "/v1/hris/config", "", 404},
		{"PUT /v1/hris/config", "PUT", "/v1/hris/config", `{"provider":"bamboohr","subdomain":"bco","api_key":"b-key-0000000000","webhook_secret":"b-secret-000000000"}`, 200},
		{"DELETE /v1/hris/config", "DELETE", "/v1/hris/config", "", 204},
		{"GET /v1/triggers", "GET", "/v1/triggers", "", 200},
		{"GET /v1/triggers/{id}", "GET", "/v1/triggers/" + at.eventID, "", 404},
		{"POST /v1/triggers/{id}/retry", "POST", "/v1/triggers/" + at.eventID + "/retry", "", 404},
		{"GET /v1/scim/users", "GET", "/v1/scim/users?include_deleted=true", "", 200},
		{"GET /v1/scim/config", "GET", "/v1/scim/config", "", 200},
		{"POST /v1/scim/token", "POST", "/v1/scim/token", "", 201},
		{"DELETE /v1/scim/token", "DELETE", "/v1/scim/token", "", 204},
		{"GET /v1/snapshots/{id}", "GET", "/v1/snapshots/" + aSnap.ID, "", 404},
		{"GET /v1/hris/offboarding/{snapshot_id}", "GET", "/v1/hris/offboarding/" + aSnap.ID, "", 404},
		{"GET /v1/lockouts/{id}/snapshot", "GET", "/v1/lockouts/" + a.lockoutID + "/snapshot", "", 404},
		{"GET /v1/custody/checkpoint", "GET", "/v1/custody/checkpoint", "", 200},
		{"GET /v1/custody/nodes/{hash}", "GET", "/v1/custody/nodes/" + aNode, "", 404},
		{"GET /v1/custody/proofs/inclusion", "GET", "/v1/custody/proofs/inclusion?hash=" + aNode, "", 404},
		{"GET /v1/custody/proofs/consistency", "GET", "/v1/custody/proofs/consistency?from=1", "", 200},
	}
	aSCIM := f.scimToken(t, a)
	aSCIMUser := f.scim(t, aSCIM, "POST", "/Users", `{"userName":"`+a.user.Email+`"}`).id()
	aConn, err := f.st.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: a.org.ID, Provider: "openai", SealedKey: []byte("sealed"), KeyHint: "sk-...aaaa", At: f.clk.Now(), ValidatedAt: f.clk.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.pattern] = true
		var raw json.RawMessage
		code := f.do(t, f.b.adminKey, tc.method, tc.path, tc.body, &raw)
		if code != tc.wantStatus {
			t.Errorf("org B: %s %s = %d; want %d", tc.method, tc.path, code, tc.wantStatus)
		}
		for _, id := range []string{a.org.ID, a.user.ID, a.device.ID, a.secret.ID, a.lockoutID, a.user.Email, a.adminKeyID, at.oktaHook, at.bambooHook, at.eventID, aSCIMUser, aSCIM, aNode, aSnap.ID} {
			if bytes.Contains(raw, []byte(id)) {
				t.Errorf("org B: %s %s leaks org A's %q: %s", tc.method, tc.path, id, raw)
			}
		}
	}
	for _, p := range f.api.patterns {
		if !covered[p] {
			t.Errorf("route %q has no cross-tenant case; add one", p)
		}
	}

	// Nothing of A's changed.
	dev, err := f.st.GetDevice(f.ctx, a.org.ID, a.device.ID)
	if err != nil || dev.RevokedAt != nil {
		t.Errorf("org A's device after org B's calls: %+v, %v; want not revoked", dev, err)
	}
	l, err := f.st.GetLockout(f.ctx, a.org.ID, a.lockoutID)
	if err != nil || l.State != store.LockoutOpen {
		t.Errorf("org A's lockout after org B's calls: %+v, %v; want open", l, err)
	}
	pol, err := f.st.GetPolicy(f.ctx, a.org.ID)
	if err != nil || pol.Version != 0 {
		t.Errorf("org A's policy after org B's calls: %+v, %v; want untouched", pol, err)
	}
	if c, err := f.st.GetProviderConnection(f.ctx, a.org.ID, "openai"); err != nil || !c.UpdatedAt.Equal(aConn.UpdatedAt) || string(c.SealedKey) != "sealed" {
		t.Errorf("org A's provider connection after org B's calls: %+v, %v; want untouched", c, err)
	}
	secrets, err := f.st.ListEnrollmentSecrets(f.ctx, a.org.ID)
	if err != nil || len(secrets) != 1 || secrets[0].RevokedAt != nil {
		t.Errorf("org A's enrollment secrets after org B's calls: %+v, %v; want one, not revoked", secrets, err)
	}
	cmds, err := f.st.ListCommandsByLockout(f.ctx, a.org.ID, a.lockoutID)
	if err != nil || len(cmds) != 1 || cmds[0].Kind != store.CommandLock {
		t.Errorf("org A's commands after org B's calls: %+v, %v; want the one lock", cmds, err)
	}
	at.checkUntouched(t, f)
	if r := f.scim(t, aSCIM, "GET", "/Users/"+aSCIMUser, ""); r.status != 200 {
		t.Errorf("org A's SCIM token and user after org B's calls: GET = %d; want 200", r.status)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := setup(t)
	expired, err := CreateAPIKey(f.ctx, f.st, f.a.org.ID, "short", store.ScopeAdmin, f.clk.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := CreateAPIKey(f.ctx, f.st, f.a.org.ID, "revoked", store.ScopeAdmin, f.clk.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.RevokeAPIKey(f.ctx, f.a.org.ID, revoked.ID, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, key, method, path, body string
		want                          int
		code                          string
	}{
		{"no key", "", "GET", "/v1/users", "", 401, CodeUnauthenticated},
		{"unknown key", "tka_nope", "GET", "/v1/users", "", 401, CodeUnauthenticated},
		{"expired key", expired.Secret, "GET", "/v1/users", "", 401, CodeUnauthenticated},
		{"revoked key", revoked.Secret, "GET", "/v1/users", "", 401, CodeUnauthenticated},
		{"read-only key writes", f.a.readKey, "POST", "/v1/lockouts", `{"email":"alice@a.example"}`, 403, CodePermissionDenied},
		{"read-only key reads", f.a.readKey, "GET", "/v1/lockouts", "", 200, ""},
		{"unknown route", f.a.adminKey, "GET", "/v1/nope", "", 404, CodeNotFound},
	}
	for _, tc := range cases {
		var e errorBody
		got := f.do(t, tc.key, tc.method, tc.path, tc.body, &e)
		if got != tc.want || e.Error.Code != tc.code {
			t.Errorf("%s: %s %s = %d %q; want %d %q", tc.name, tc.method, tc.path, got, e.Error.Code, tc.want, tc.code)
		}
	}
}

// TestBadInputChangesNothing sends malformed requests to every writing
// endpoint: each gets a JSON error with a stable code and nothing changes.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	big := `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		want                     int
		code                     string
	}{
		{"lockout: not JSON", "POST", "/v1/lockouts", `{"email":`, 400, CodeInvalidArgument},
		{"lockout: unknown field", "POST", "/v1/lockouts", `{"email":"alice@a.example","force":true}`, 400, CodeInvalidArgument},
		{"lockout: two objects", "POST", "/v1/lockouts", `{"email":"alice@a.example"}{}`, 400, CodeInvalidArgument},
		{"lockout: no body", "POST", "/v1/lockouts", ``, 400, CodeInvalidArgument},
		{"lockout: bad email", "POST", "/v1/lockouts", `{"email":"alice"}`, 400, CodeInvalidArgument},
		{"lockout: display-name email", "POST", "/v1/lockouts", `{"email":"Alice <alice@a.example>"}`, 400, CodeInvalidArgument},
		{"lockout: unknown user", "POST", "/v1/lockouts", `{"email":"nobody@a.example"}`, 404, CodeUnknownUser},
		{"override: no reason", "POST", "/v1/lockouts/" + a.lockoutID + "/override", `{"reason":"  "}`, 400, CodeInvalidArgument},
		{"override: unknown lockout", "POST", "/v1/lockouts/lck_nope/override", `{"reason":"x"}`, 404, CodeNotFound},
		{"policy: bad CIDR", "PUT", "/v1/policy", `{"domains":[],"cidrs":["10.0.0.0/33"]}`, 400, CodeInvalidArgument},
		{"policy: bad domain", "PUT", "/v1/policy", `{"domains":["not a domain"],"cidrs":[]}`, 400, CodeInvalidArgument},
		{"policy: wrong type", "PUT", "/v1/policy", `{"domains":"api.example.com"}`, 400, CodeInvalidArgument},
		{"secret: no name", "POST", "/v1/enrollment-secrets", `{"name":""}`, 400, CodeInvalidArgument},
		{"secret: ttl too long", "POST", "/v1/enrollment-secrets", `{"name":"x","ttl":"100000h"}`, 400, CodeInvalidArgument},
		{"secret: ttl garbage", "POST", "/v1/enrollment-secrets", `{"name":"x","ttl":"soon"}`, 400, CodeInvalidArgument},
		{"secret: body too large", "POST", "/v1/enrollment-secrets", big, 413, CodeTooLarge},
		{"revoke: unknown device", "POST", "/v1/devices/dev_nope/revoke", "", 404, CodeNotFound},
	}
	for _, tc := range cases {
		var e errorBody
		got := f.do(t, a.adminKey, tc.method, tc.path, tc.body, &e)
		if got != tc.want || e.Error.Code != tc.code {
			t.Errorf("%s: %s %s = %d %q; want %d %q", tc.name, tc.method, tc.path, got, e.Error.Code, tc.want, tc.code)
		}
	}
	l, _ := f.st.GetLockout(f.ctx, a.org.ID, a.lockoutID)
	if l.State != store.LockoutOpen {
		t.Errorf("lockout state after bad input = %s; want open", l.State)
	}
	pol, _ := f.st.GetPolicy(f.ctx, a.org.ID)
	if pol.Version != 0 {
		t.Errorf("policy version after bad input = %d; want 0", pol.Version)
	}
	secrets, _ := f.st.ListEnrollmentSecrets(f.ctx, a.org.ID)
	if len(secrets) != 1 {
		t.Errorf("enrollment secrets after bad input = %d; want 1", len(secrets))
	}
	lockouts, _ := f.st.ListLockouts(f.ctx, a.org.ID)
	if len(lockouts) != 1 {
		t.Errorf("lockouts after bad input = %d; want 1", len(lockouts))
	}
}

func TestLockoutLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	var lo lockoutView
	if code := f.do(t, a.adminKey, "GET", "/v1/lockouts/"+a.lockoutID, "", &lo); code != 200 {
		t.Fatalf("GET lockout = %d", code)
	}
	if len(lo.Devices) != 1 || lo.Devices[0].DeviceID != a.device.ID || lo.Devices[0].State != store.CommandPending || lo.Devices[0].Kind != store.CommandLock {
		t.Fatalf("lockout devices = %+v; want one pending lock for %s", lo.Devices, a.device.ID)
	}
	// A second trigger, with different case, returns the same lockout.
	var again lockoutView
	if code := f.do(t, a.adminKey, "POST", "/v1/lockouts", `{"email":"ALICE@a.example"}`, &again); code != 200 || again.ID != a.lockoutID || !again.Existing {
		t.Errorf("second lockout = %d %s existing=%v; want 200 %s existing", code, again.ID, again.Existing, a.lockoutID)
	}
	cmds, _ := f.st.ListCommandsByLockout(f.ctx, a.org.ID, a.lockoutID)
	if len(cmds) != 1 {
		t.Errorf("commands after a second trigger = %d; want 1 (no duplicate lock)", len(cmds))
	}
	if len(again.Triggers) != 2 {
		t.Errorf("triggers after a second trigger = %+v; want both recorded", again.Triggers)
	}
	if len(again.Steps) != 3 || again.Steps[0].Step != pipeline.StepCapture || again.Steps[0].State != store.StepDone ||
		again.Steps[1].Step != pipeline.StepRevoke || again.Steps[1].State != store.StepDone ||
		again.Steps[2].Step != pipeline.StepLock || again.Steps[2].State != store.StepDone {
		t.Errorf("steps = %+v; want capture and revoke done (no providers), then lock done", again.Steps)
	}

	// A policy change while locked reaches the locked device.
	var pol policyView
	if code := f.do(t, a.adminKey, "PUT", "/v1/policy", `{"domains":["LLM.Internal.Example."],"cidrs":["203.0.113.9"]}`, &pol); code != 200 {
		t.Fatalf("PUT policy = %d", code)
	}
	if pol.Version != 1 || !slices.Equal(pol.Domains, []string{"llm.internal.example"}) || !slices.Equal(pol.CIDRs, []string{"203.0.113.9/32"}) {
		t.Errorf("policy = %+v; want version 1, normalized domain and CIDR", pol)
	}
	cmds, _ = f.st.ListCommandsByLockout(f.ctx, a.org.ID, a.lockoutID)
	if len(cmds) != 2 || cmds[1].Kind != store.CommandPolicyUpdate {
		t.Errorf("commands after policy change = %+v; want lock then policy_update", cmds)
	}

	var over lockoutView
	if code := f.do(t, a.adminKey, "POST", "/v1/lockouts/"+a.lockoutID+"/override", `{"reason":"rehired"}`, &over); code != 200 {
		t.Fatalf("override = %d", code)
	}
	if over.State != store.LockoutOverridden || over.OverrideReason != "rehired" || len(over.Devices) != 1 || over.Devices[0].Kind != store.CommandUnlock {
		t.Errorf("override = %+v; want overridden with an unlock per device", over)
	}
	var e errorBody
	if code := f.do(t, a.adminKey, "POST", "/v1/lockouts/"+a.lockoutID+"/override", `{"reason":"again"}`, &e); code != 409 || e.Error.Code != CodeConflict {
		t.Errorf("second override = %d %q; want 409 conflict", code, e.Error.Code)
	}
}

func TestEnrollmentSecretShownOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var created enrollmentSecretView
	if code := f.do(t, f.a.adminKey, "POST", "/v1/enrollment-secrets", `{"name":"laptops","ttl":"24h"}`, &created); code != 201 {
		t.Fatalf("create = %d", code)
	}
	if !strings.HasPrefix(created.Secret, EnrollmentSecretPrefix) || !created.ExpiresAt.Equal(f.clk.Now().Add(24*time.Hour)) {
		t.Errorf("created = %+v; want a %s secret expiring in 24h", created, EnrollmentSecretPrefix)
	}
	var listed list[enrollmentSecretView]
	f.do(t, f.a.adminKey, "GET", "/v1/enrollment-secrets", "", &listed)
	for _, s := range listed.Data {
		if s.Secret != "" {
			t.Errorf("listed secret %s shows its value", s.ID)
		}
	}
	if code := f.do(t, f.a.adminKey, "DELETE", "/v1/enrollment-secrets/"+created.ID, "", nil); code != 204 {
		t.Errorf("revoke = %d; want 204", code)
	}
	got, err := f.st.GetEnrollmentSecretByHash(f.ctx, HashSecret(created.Secret))
	if err != nil || got.RevokedAt == nil {
		t.Errorf("after revoke: %+v, %v; want revoked", got, err)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var created NewAPIKey
	if code := f.do(t, f.a.adminKey, "POST", "/v1/api-keys", `{"name":"ci","scope":"read-only","expires_in":"24h"}`, &created); code != 201 {
		t.Fatalf("create = %d", code)
	}
	if !strings.HasPrefix(created.Secret, APIKeyPrefix) || created.Scope != store.ScopeReadOnly || !created.ExpiresAt.Equal(f.clk.Now().Add(24*time.Hour)) {
		t.Errorf("created = %+v; want a read-only %s key expiring in 24h", created, APIKeyPrefix)
	}
	// The new key reads but cannot write, and cannot manage keys.
	if code := f.do(t, created.Secret, "GET", "/v1/lockouts", "", nil); code != 200 {
		t.Errorf("read-only key GET /v1/lockouts = %d; want 200", code)
	}
	if code := f.do(t, created.Secret, "GET", "/v1/api-keys", "", nil); code != 403 {
		t.Errorf("read-only key GET /v1/api-keys = %d; want 403", code)
	}
	var listed list[json.RawMessage]
	f.do(t, f.a.adminKey, "GET", "/v1/api-keys", "", &listed)
	for _, raw := range listed.Data {
		if strings.Contains(string(raw), "secret") || strings.Contains(string(raw), "hash") {
			t.Errorf("listed key shows its secret or hash: %s", raw)
		}
	}
	// Deleted: refused at once.
	if code := f.do(t, f.a.adminKey, "DELETE", "/v1/api-keys/"+created.ID, "", nil); code != 204 {
		t.Fatalf("delete = %d; want 204", code)
	}
	var e errorBody
	if code := f.do(t, created.Secret, "GET", "/v1/lockouts", "", &e); code != 401 || e.Error.Code != CodeUnauthenticated {
		t.Errorf("deleted key = %d %q; want 401 unauthenticated", code, e.Error.Code)
	}
	// Expired: refused at once.
	f.clk.Advance(25 * time.Hour)
	var again NewAPIKey
	f.do(t, f.a.adminKey, "POST", "/v1/api-keys", `{"name":"short","scope":"admin","expires_in":"1h"}`, &again)
	f.clk.Advance(time.Hour)
	if code := f.do(t, again.Secret, "GET", "/v1/users", "", nil); code != 401 {
		t.Errorf("expired key = %d; want 401", code)
	}
	for _, body := range []string{`{"name":"x","scope":"root"}`, `{"name":"x","scope":"admin","expires_in":"2161h"}`, `{"scope":"admin"}`} {
		if code := f.do(t, f.a.adminKey, "POST", "/v1/api-keys", body, &e); code != 400 {
			t.Errorf("create %s = %d; want 400", body, code)
		}
	}
}

// newPipeline runs the real lockout pipeline on the test's SQLite store.
func newPipeline(t *testing.T, st *sqlite.Store, issuer *fleet.Issuer, sealer *secrets.Sealer, clk clock.Clock, log *slog.Logger, jobs ...pipeline.Jobs) *pipeline.Pipeline {
	t.Helper()
	ctx := context.Background()
	driver := riversqlite.New(st.WriterDB())
	if err := pipeline.Migrate(ctx, driver); err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.New(driver, pipeline.Config{
		Store: st, Issuer: issuer, Clock: clk, Logger: log, PollInterval: 50 * time.Millisecond,
		LockGrace: 200 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, RevokeAttempts: 3,
		Jobs: jobs,
		Connect: func(ctx context.Context, c store.ProviderConnection) (pipeline.Connector, error) {
			key, err := sealer.Open(ctx, c.SealedKey, ProviderKeyAAD(c.OrgID, c.Provider))
			if err != nil {
				return nil, err
			}
			return connect.New(c.Provider, string(key), providers.Options{BaseURL: c.BaseURL, Clock: clk, Logger: log})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pl.Stop(stopCtx)
	})
	return pl
}

// waitLockout polls a lockout until cond holds.
func (f *apiFixture) waitLockout(t *testing.T, key, id string, what string, cond func(lockoutView) bool) lockoutView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var v lockoutView
		f.do(t, key, "GET", "/v1/lockouts/"+id, "", &v)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockout %s: timed out waiting for %s; last view %+v", id, what, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProviderRevocation connects a (fake) OpenAI organization through the
// API and follows a lockout through the pipeline: the user is removed at
// the provider and their device locked; a provider that keeps failing is
// marked unconfirmed after its budget and never holds up the lock.
func TestProviderRevocation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const adminKey = "sk-admin-test-0123456789abcdef"
	fake := fakeopenai.New(adminKey)
	t.Cleanup(fake.Close)
	fake.AddUser(fakeopenai.User{ID: "user-carol", Email: "carol@a.example", Name: "Carol", Role: "reader"})
	fake.AddUser(fakeopenai.User{ID: "user-dave", Email: "dave@a.example", Name: "Dave", Role: "owner"})
	fake.AddProject(fakeopenai.Project{ID: "proj_1", Name: "P1"}, "user-carol", "user-dave")
	fake.AddKey(fakeopenai.Key{ID: "key_carol", Project: "proj_1", Name: "carol's", OwnerUser: "user-carol"})
	fake.AddKey(fakeopenai.Key{ID: "key_dave", Project: "proj_1", Name: "dave's", OwnerUser: "user-dave"})

	var e errorBody
	if code := f.do(t, f.a.adminKey, "PUT", "/v1/providers/openai", `{"admin_key":"sk-wrong-key-000000000000","base_url":"`+fake.URL()+`"}`, &e); code != 400 || e.Error.Code != CodeProviderRejected {
		t.Fatalf("PUT with a wrong key = %d %q; want 400 %s", code, e.Error.Code, CodeProviderRejected)
	}
	if cs, _ := f.st.ListProviderConnections(f.ctx, f.a.org.ID); len(cs) != 0 {
		t.Fatalf("a rejected key was stored: %+v", cs)
	}
	var pv providerView
	if code := f.do(t, f.a.adminKey, "PUT", "/v1/providers/openai", `{"admin_key":"`+adminKey+`","base_url":"`+fake.URL()+`"}`, &pv); code != 200 {
		t.Fatalf("PUT /v1/providers/openai = %d", code)
	}
	var raw json.RawMessage
	f.do(t, f.a.adminKey, "GET", "/v1/providers/openai", "", &raw)
	if strings.Contains(string(raw), adminKey) || !strings.Contains(string(raw), adminKey[len(adminKey)-4:]) {
		t.Errorf("GET /v1/providers/openai = %s; want only a hint of the key", raw)
	}
	conn, _ := f.st.GetProviderConnection(f.ctx, f.a.org.ID, "openai")
	if strings.Contains(string(conn.SealedKey), adminKey) {
		t.Error("the admin key is stored in clear")
	}

	carol, err := f.st.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: f.a.org.ID, Email: "carol@a.example", CreatedAt: f.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: f.a.org.ID, UserID: carol.ID, Hostname: "carol-laptop", OS: "linux", Serial: "SN-CAROL", CreatedAt: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	var lo lockoutView
	if code := f.do(t, f.a.adminKey, "POST", "/v1/lockouts", `{"email":"carol@a.example"}`, &lo); code != 201 {
		t.Fatalf("POST /v1/lockouts = %d", code)
	}
	done := f.waitLockout(t, f.a.adminKey, lo.ID, "the revocation and the lock", func(v lockoutView) bool {
		return len(v.Providers) == 1 && v.Providers[0].State == store.RevocationConfirmed && len(v.Devices) == 1
	})
	if done.Steps[0].State != store.StepDone || done.Steps[1].State != store.StepDone {
		t.Errorf("capture and revoke steps = %+v; want done", done.Steps[:2])
	}
	if len(done.UsageCaptures) != 1 || done.UsageCaptures[0].State != store.CaptureCaptured ||
		done.UsageCaptures[0].WindowTo.Sub(done.UsageCaptures[0].WindowFrom) != pipeline.UsageWindow {
		t.Errorf("usage captures = %+v; want the 14 days before the lockout captured", done.UsageCaptures)
	}
	var conf providers.Revocation
	if err := json.Unmarshal(done.Providers[0].Confirmation, &conf); err != nil || !conf.UserFound || len(conf.Actions) == 0 {
		t.Errorf("confirmation = %s (%v); want the provider's actions", done.Providers[0].Confirmation, err)
	}
	st := fake.Snapshot()
	if slices.Contains(st.Users, "user-carol") || slices.Contains(st.Keys, "key_carol") || !slices.Contains(st.Keys, "key_dave") {
		t.Errorf("provider state after the lockout = %+v; want carol and her key gone, dave's key kept", st)
	}

	// A provider that keeps failing: unconfirmed after the budget, and the
	// device lock does not wait for it.
	fake.Inject(fakeapi.Fault{Status: 500, Times: 1000})
	erin, _ := f.st.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: f.a.org.ID, Email: "erin@a.example", CreatedAt: f.clk.Now()})
	if _, err := f.st.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: f.a.org.ID, UserID: erin.ID, Hostname: "erin-laptop", OS: "linux", Serial: "SN-ERIN", CreatedAt: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if code := f.do(t, f.a.adminKey, "POST", "/v1/lockouts", `{"email":"erin@a.example"}`, &lo); code != 201 {
		t.Fatalf("POST /v1/lockouts = %d", code)
	}
	f.waitLockout(t, f.a.adminKey, lo.ID, "the device lock despite the failing provider", func(v lockoutView) bool { return len(v.Devices) == 1 })
	failed := f.waitLockout(t, f.a.adminKey, lo.ID, "the revocation to be given up", func(v lockoutView) bool {
		return len(v.Providers) == 1 && v.Providers[0].State == store.RevocationUnconfirmed
	})
	if failed.Providers[0].Attempts != 3 || failed.Providers[0].LastError == "" || failed.Steps[1].State != store.StepUnconfirmed {
		t.Errorf("given-up revocation = %+v, step %+v; want 3 attempts, the error, step unconfirmed", failed.Providers[0], failed.Steps[1])
	}
}

func testLogOutput() io.Writer {
	if os.Getenv("TOKTRA_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// TestRateLimits: every route shares the per-IP public limit, admin routes
// also the tighter admin one; over it, 429 with Retry-After and a JSON
// error, and an X-Forwarded-For from an untrusted peer changes nothing.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	f := setup(t)
	clk := clock.NewFake(f.clk.Now())
	public, err := ratelimit.New(ratelimit.Config{Limit: 6, Window: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ratelimit.New(ratelimit.Config{Limit: 2, Window: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	limited := NewServer(Config{Store: f.st, Lockouts: f.api.lockout, Fleet: f.api.fleet, Clock: f.clk, Logger: f.api.log,
		Providers: f.api.providers, Limits: RateLimits{Public: public, Admin: admin}})
	srv := httptest.NewServer(limited)
	t.Cleanup(srv.Close)
	call := func(method, path, body string, spoof string) (int, string, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("X-API-Key", f.a.adminKey)
		req.Header.Set("Content-Type", "application/json")
		if spoof != "" {
			req.Header.Set("X-Forwarded-For", spoof)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e errorBody
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, resp.Header.Get("Retry-After"), e.Error.Code
	}
	// Two admin writes pass, the third is over the admin limit; reads go on.
	for i := range 2 {
		if code, _, _ := call("PUT", "/v1/policy", `{"domains":[],"cidrs":[]}`, ""); code != 200 {
			t.Fatalf("admin write %d = %d; want 200", i+1, code)
		}
	}
	if code, retry, ecode := call("PUT", "/v1/policy", `{"domains":[],"cidrs":[]}`, "203.0.113.77"); code != 429 || retry == "" || ecode != CodeRateLimited {
		t.Errorf("third admin write (with a spoofed X-Forwarded-For) = %d Retry-After %q code %q; want 429 with Retry-After, %s", code, retry, ecode, CodeRateLimited)
	}
	// Reads count against the public limit only: 3 used so far (the refused
	// write counted there before the admin limit refused it).
	for i := range 3 {
		if code, _, _ := call("GET", "/v1/users", "", ""); code != 200 {
			t.Fatalf("read %d = %d; want 200", i+1, code)
		}
	}
	if code, _, ecode := call("GET", "/v1/users", "", ""); code != 429 || ecode != CodeRateLimited {
		t.Errorf("read over the public limit = %d %q; want 429 %s", code, ecode, CodeRateLimited)
	}
	clk.Advance(time.Minute)
	if code, _, _ := call("GET", "/v1/users", "", ""); code != 200 {
		t.Errorf("read after the window = %d; want 200", code)
	}
}
