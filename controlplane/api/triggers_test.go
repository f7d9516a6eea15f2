package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/secrets"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/triggers"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr/bamboohrtest"
	"github.com/toktra/toktra/controlplane/triggers/okta"
	"github.com/toktra/toktra/controlplane/triggers/workday/workdaytest"
	"github.com/toktra/toktra/internal/clock"
)

// The fake BambooHR company every test org connects to.
const (
	bambooCompany = "aco"
	bambooAPIKey  = "bamboo-api-key-0000000000"
	bambooSecret  = "bamboo-webhook-private-key-0000"
)

// newTriggers makes the real triggers service on the test's store, calling
// a fake BambooHR; its jobs run on the test pipeline's job client.
func (f *apiFixture) newTriggers(t *testing.T, st *sqlite.Store, sealer *secrets.Sealer, clk clock.Clock, log *slog.Logger) *triggers.Service {
	t.Helper()
	f.bamboo = bamboohrtest.New(bambooCompany, bambooAPIKey)
	t.Cleanup(f.bamboo.Close)
	svc, err := triggers.New(triggers.Config{
		Store: st, Sealer: sealer, Clock: clk, Logger: log,
		BambooHRBaseURL: f.bamboo.URL(), AllowAnyHRISURL: true, ProcessAttempts: 3, RetryBase: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// oktaEvent is a System Log event in an Okta delivery.
type oktaEvent struct {
	uuid, eventType, userID, login, outcome string
}

// oktaBody is an event hook delivery as Okta documents it.
func oktaBody(eventID string, events ...oktaEvent) []byte {
	var evs []map[string]any
	for _, e := range events {
		if e.outcome == "" {
			e.outcome = "SUCCESS"
		}
		evs = append(evs, map[string]any{
			"uuid": e.uuid, "published": "2026-03-02T10:15:03.270Z", "eventType": e.eventType, "version": "0",
			"displayMessage": "Deactivate Okta user", "severity": "INFO",
			"client":  map[string]any{"userAgent": map[string]any{"rawUserAgent": "Mozilla/5.0"}, "zone": "null", "device": "Computer", "id": nil},
			"actor":   map[string]any{"id": "00uadmin", "type": "User", "alternateId": "admin@a.example", "displayName": "Admin", "detailEntry": nil},
			"outcome": map[string]any{"result": e.outcome, "reason": nil},
			"target":  []any{map[string]any{"id": e.userID, "type": "User", "alternateId": e.login, "displayName": "Departing", "detailEntry": nil}},
		})
	}
	b, _ := json.Marshal(map[string]any{
		"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
		"source": "https://acme.okta.com/api/v1/eventHooks/who8tsqyrhCdmetzx135", "eventId": eventID,
		"eventTime": "2026-03-02T10:15:04.000Z", "contentType": "application/json", "data": map[string]any{"events": evs},
	})
	return b
}

// raw sends a request without an API key and returns its status, error
// code and body.
func (f *apiFixture) raw(t *testing.T, method, path string, headers map[string]string, body []byte) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e errorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" {
			t.Errorf("%s %s = %d with body %q; want a JSON error with a code", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, e.Error.Code, data
}

func (f *apiFixture) postOkta(t *testing.T, hook, auth, sig string, body []byte) (int, string) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json", "Authorization": auth}
	if sig != "" {
		h[okta.SignatureHeader] = sig
	}
	code, ecode, _ := f.raw(t, "POST", "/v1/hooks/okta/"+hook, h, body)
	return code, ecode
}

func (f *apiFixture) postBamboo(t *testing.T, hook, ts, sig string, body []byte) (int, string, webhookReceipt) {
	t.Helper()
	code, ecode, data := f.raw(t, "POST", "/v1/hris/webhook/bamboohr?hook="+hook,
		map[string]string{"Content-Type": "application/json", bamboohr.TimestampHeader: ts, bamboohr.SignatureHeader: sig}, body)
	var rec webhookReceipt
	if code == 200 {
		json.Unmarshal(data, &rec)
	}
	return code, ecode, rec
}

// signedBamboo signs body as BambooHR does, at the fixture's time plus skew.
func (f *apiFixture) signedBamboo(body []byte, secret string, skew time.Duration) (ts, sig string) {
	ts = f.clk.Now().Add(skew).UTC().Format("2006-01-02T15:04:05-0700")
	return ts, bamboohr.Sign(secret, body, ts)
}

// waitEvents polls the org's inbox until cond holds.
func (f *apiFixture) waitEvents(t *testing.T, key, query, what string, cond func([]triggerEventView) bool) []triggerEventView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var l triggerEventList
		f.do(t, key, "GET", "/v1/triggers"+query, "", &l)
		if cond(l.Data) {
			return l.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events %+v", what, l.Data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// userLockouts returns the user's lockouts in the store.
func (f *apiFixture) userLockouts(t *testing.T, orgID, email string) []store.Lockout {
	t.Helper()
	u, err := f.st.GetUserByEmail(f.ctx, orgID, email)
	if err != nil {
		return nil
	}
	page, err := f.st.ListLockoutsPage(f.ctx, store.ListLockoutsParams{OrgID: orgID, UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	return page.Lockouts
}

func (f *apiFixture) addUser(t *testing.T, orgID, email string) store.User {
	t.Helper()
	u, err := f.st.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: orgID, Email: email, CreatedAt: f.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: orgID, UserID: u.ID, Hostname: "laptop-" + email, OS: "linux", Serial: "SN-" + email, CreatedAt: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *apiFixture) connectOkta(t *testing.T, tn tenant) oktaView {
	t.Helper()
	var v oktaView
	if code := f.do(t, tn.adminKey, "PUT", "/v1/integrations/okta", `{}`, &v); code != 201 {
		t.Fatalf("PUT /v1/integrations/okta = %d; want 201", code)
	}
	return v
}

func (f *apiFixture) connectBamboo(t *testing.T, tn tenant, secret string) hrisView {
	t.Helper()
	var v hrisView
	body := fmt.Sprintf(`{"provider":"bamboohr","subdomain":%q,"api_key":%q,"webhook_secret":%q}`, bambooCompany, bambooAPIKey, secret)
	if code := f.do(t, tn.adminKey, "PUT", "/v1/hris/config", body, &v); code != 200 {
		t.Fatalf("PUT /v1/hris/config = %d; want 200", code)
	}
	return v
}

func hookOf(webhookURL string) string {
	if i := strings.LastIndex(webhookURL, "hook="); i >= 0 {
		return webhookURL[i+len("hook="):]
	}
	return webhookURL[strings.LastIndex(webhookURL, "/")+1:]
}

// triggerState is an org's trigger integrations and one inbox event, for
// the cross-tenant test.
type triggerState struct {
	org                  store.Org
	okta                 oktaView
	oktaHook, bambooHook string
	eventID              string
	hris                 hrisView
}

func (f *apiFixture) triggerTenant(t *testing.T, tn tenant) triggerState {
	t.Helper()
	st := triggerState{org: tn.org, okta: f.connectOkta(t, tn)}
	st.oktaHook = st.okta.HookID
	st.hris = f.connectBamboo(t, tn, bambooSecret)
	st.bambooHook = hookOf(st.hris.WebhookURL)
	body := oktaBody("evt-ct", oktaEvent{uuid: "uuid-ct", eventType: okta.EventDeactivate, userID: "00uct", login: "ghost@a.example"})
	if code, _ := f.postOkta(t, st.oktaHook, st.okta.Secret, "", body); code != 204 {
		t.Fatalf("okta delivery = %d; want 204", code)
	}
	evs := f.waitEvents(t, tn.adminKey, "", "the unknown user", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerUnknownUser
	})
	st.eventID = evs[0].ID
	return st
}

func (st triggerState) checkUntouched(t *testing.T, f *apiFixture) {
	t.Helper()
	o, err := f.st.GetTriggerIntegration(f.ctx, st.org.ID, triggers.SourceOkta)
	if err != nil || o.HookID != st.oktaHook || !o.UpdatedAt.Equal(st.okta.UpdatedAt) {
		t.Errorf("org A's okta integration after org B's calls: %+v, %v; want untouched", o, err)
	}
	h, err := f.st.GetTriggerIntegration(f.ctx, st.org.ID, triggers.SourceBambooHR)
	if err != nil || h.HookID != st.bambooHook || !h.UpdatedAt.Equal(st.hris.UpdatedAt) {
		t.Errorf("org A's bamboohr integration after org B's calls: %+v, %v; want untouched", h, err)
	}
	e, err := f.st.GetTriggerEvent(f.ctx, st.org.ID, st.eventID)
	if err != nil || e.State != store.TriggerUnknownUser {
		t.Errorf("org A's trigger event after org B's calls: %+v, %v; want still unknown_user", e, err)
	}
}

// TestOktaEventHook: the verification, and each kind of delivery with its
// status and exactly the lockouts it should start.
func TestOktaEventHook(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	v := f.connectOkta(t, a)
	if !strings.HasPrefix(v.Secret, triggers.OktaSecretPrefix) || v.WebhookURL != f.srv.URL[len("http://"):] && !strings.HasSuffix(v.WebhookURL, "/v1/hooks/okta/"+v.HookID) {
		t.Fatalf("PUT okta = %+v; want a secret and the hook's URL", v)
	}
	// Shown once: GET and a second PUT show only a hint.
	var got oktaView
	f.do(t, a.readKey, "GET", "/v1/integrations/okta", "", &got)
	if got.Secret != "" || got.SecretHint == "" || strings.Contains(got.SecretHint, v.Secret[8:]) || got.HookID != v.HookID {
		t.Errorf("GET okta = %+v; want the hint only", got)
	}
	if code := f.do(t, a.adminKey, "PUT", "/v1/integrations/okta", `{"org_url":"https://acme.okta.com"}`, &got); code != 200 || got.Secret != "" || got.HookID != v.HookID {
		t.Errorf("second PUT okta = %d %+v; want 200, same hook, no secret", code, got)
	}
	stored, _ := f.st.GetTriggerIntegration(f.ctx, a.org.ID, triggers.SourceOkta)
	if strings.Contains(string(stored.SealedSecrets), v.Secret) || strings.Contains(string(stored.Settings), v.Secret) {
		t.Error("the hook secret is stored in clear")
	}

	// One-time verification.
	verify := func(hook, auth, challenge string) (int, []byte) {
		h := map[string]string{okta.VerificationHeader: challenge}
		if auth != "" {
			h["Authorization"] = auth
		}
		code, _, body := f.raw(t, "GET", "/v1/hooks/okta/"+hook, h, nil)
		return code, body
	}
	if code, body := verify(v.HookID, v.Secret, "Z_rC4MxAzOcr7S3sTiYq"); code != 200 || strings.TrimSpace(string(body)) != `{
  "verification": "Z_rC4MxAzOcr7S3sTiYq"
}` {
		t.Errorf("verification = %d %s; want the challenge back", code, body)
	}
	for _, c := range []struct {
		name, hook, auth, challenge string
		want                        int
	}{
		{"unknown hook", "hk_00000000000000000000000000000000", "", "c", 404},
		{"wrong secret", v.HookID, "tko_wrong", "c", 401},
		{"no challenge", v.HookID, v.Secret, "", 400},
	} {
		if code, _ := verify(c.hook, c.auth, c.challenge); code != c.want {
			t.Errorf("verification (%s) = %d; want %d", c.name, code, c.want)
		}
	}

	dana := f.addUser(t, a.org.ID, "dana@a.example")
	deact := oktaEvent{uuid: "uuid-dana", eventType: okta.EventDeactivate, userID: "00udana", login: "Dana@A.example"}
	good := oktaBody("evt-1", deact, oktaEvent{uuid: "uuid-other", eventType: "group.user_membership.remove", userID: "00udana", login: "dana@a.example"})

	// Forged and malformed deliveries start nothing.
	for _, c := range []struct {
		name, hook, auth string
		body             []byte
		want             int
		code             string
	}{
		{"forged secret", v.HookID, "tko_forged", good, 401, CodeUnauthenticated},
		{"no secret", v.HookID, "", good, 401, CodeUnauthenticated},
		{"unknown hook", "hk_nope", v.Secret, good, 404, CodeNotFound},
		{"malformed", v.HookID, v.Secret, []byte(`{"eventId":"evt-x","data":{"events":[{"eventType":"user.lifecycle.deactivate"}]}}`), 400, CodeInvalidArgument},
		{"not JSON", v.HookID, v.Secret, []byte(`<xml/>`), 400, CodeInvalidArgument},
		{"too large", v.HookID, v.Secret, []byte(`{"eventId":"` + strings.Repeat("x", maxWebhookBytes) + `"}`), 413, CodeTooLarge},
		{"another org's source", v.HookID, v.Secret, []byte(strings.Replace(string(good), "acme.okta.com", "evil.okta.com", 1)), 401, CodeUnauthenticated},
	} {
		if code, ecode := f.postOkta(t, c.hook, c.auth, "", c.body); code != c.want || ecode != c.code {
			t.Errorf("delivery (%s) = %d %q; want %d %q", c.name, code, ecode, c.want, c.code)
		}
	}
	if n := len(f.userLockouts(t, a.org.ID, dana.Email)); n != 0 {
		t.Fatalf("lockouts of dana after refused deliveries = %d; want 0", n)
	}

	// Good: 204 at once, one lockout shortly after, with its evidence.
	if code, _ := f.postOkta(t, v.HookID, v.Secret, "", good); code != 204 {
		t.Fatalf("good delivery = %d; want 204", code)
	}
	evs := f.waitEvents(t, a.adminKey, "?source=okta", "dana's event processed", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed
	})
	e := evs[0]
	if e.Subject != "00udana" || e.VendorEventID != "uuid-dana" || e.DeliveryID != "evt-1" || e.Email != "dana@a.example" || e.UserID != dana.ID || e.LockoutID == "" || len(e.PayloadSHA256) != 64 {
		t.Errorf("processed event = %+v", e)
	}
	ls := f.userLockouts(t, a.org.ID, dana.Email)
	if len(ls) != 1 || ls[0].ID != e.LockoutID {
		t.Fatalf("lockouts of dana = %+v; want exactly the event's", ls)
	}
	trigs, _ := f.st.ListLockoutTriggers(f.ctx, a.org.ID, e.LockoutID)
	var ev map[string]any
	if len(trigs) != 1 || trigs[0].Source != "okta:"+e.ID || json.Unmarshal(trigs[0].Evidence, &ev) != nil ||
		ev["payload_sha256"] != e.PayloadSHA256 || ev["vendor_event_id"] != "uuid-dana" || ev["delivery_id"] != "evt-1" || ev["matched_by"] != "email" {
		t.Errorf("lockout triggers = %+v; want one with the delivery's evidence", trigs)
	}
	f.waitLockout(t, a.adminKey, e.LockoutID, "dana's device lock", func(v lockoutView) bool { return len(v.Devices) == 1 })

	// Duplicates: the same delivery again, and the same event in another
	// delivery: 204, nothing new.
	if code, _ := f.postOkta(t, v.HookID, v.Secret, "", good); code != 204 {
		t.Errorf("redelivery = %d; want 204", code)
	}
	if code, _ := f.postOkta(t, v.HookID, v.Secret, "", oktaBody("evt-2", deact)); code != 204 {
		t.Errorf("same event, new delivery = %d; want 204", code)
	}
	// Signed deliveries: good, replayed, stale, forged.
	erin := f.addUser(t, a.org.ID, "erin@a.example")
	signedBody := oktaBody("evt-3", oktaEvent{uuid: "uuid-erin", eventType: okta.EventDeactivate, userID: "00uerin", login: "erin@a.example"})
	sig := okta.Sign(v.Secret, f.clk.Now(), signedBody)
	for _, c := range []struct {
		name, sig string
		want      int
		code      string
	}{
		{"stale signature", okta.Sign(v.Secret, f.clk.Now().Add(-10*time.Minute), signedBody), 401, CodeStale},
		{"forged signature", okta.Sign("tko_other", f.clk.Now(), signedBody), 401, CodeUnauthenticated},
		{"good signature", sig, 204, ""},
		{"replayed signature", sig, 409, CodeReplayed},
	} {
		if code, ecode := f.postOkta(t, v.HookID, v.Secret, c.sig, signedBody); code != c.want || ecode != c.code {
			t.Errorf("delivery (%s) = %d %q; want %d %q", c.name, code, ecode, c.want, c.code)
		}
	}
	f.waitEvents(t, a.adminKey, "?email=erin@a.example", "erin's event processed", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed
	})
	if n, m := len(f.userLockouts(t, a.org.ID, dana.Email)), len(f.userLockouts(t, a.org.ID, erin.Email)); n != 1 || m != 1 {
		t.Errorf("lockouts of dana, erin = %d, %d; want 1 each", n, m)
	}
	all := f.waitEvents(t, a.adminKey, "?source=okta", "", func([]triggerEventView) bool { return true })
	if len(all) != 2 {
		t.Errorf("okta inbox = %d events; want 2 (duplicates and other event types not stored)", len(all))
	}

	// An unknown user is recorded, visible, and retried once they exist.
	unknown := oktaBody("evt-4", oktaEvent{uuid: "uuid-fay", eventType: okta.EventDeactivate, userID: "00ufay", login: "fay@a.example"})
	f.postOkta(t, v.HookID, v.Secret, "", unknown)
	evs = f.waitEvents(t, a.readKey, "?state=unknown_user", "fay's unknown user", func(es []triggerEventView) bool { return len(es) == 1 })
	if evs[0].Email != "fay@a.example" || !strings.Contains(evs[0].LastError, "fay@a.example") {
		t.Errorf("unknown-user event = %+v; want fay's email and why", evs[0])
	}
	var eb errorBody
	if code := f.do(t, a.adminKey, "POST", "/v1/triggers/"+e.ID+"/retry", "", &eb); code != 409 {
		t.Errorf("retry of a processed event = %d; want 409", code)
	}
	fay := f.addUser(t, a.org.ID, "fay@a.example")
	var retried triggerEventView
	if code := f.do(t, a.adminKey, "POST", "/v1/triggers/"+evs[0].ID+"/retry", "", &retried); code != 200 || retried.State != store.TriggerPending {
		t.Errorf("retry = %d %+v; want 200 pending", code, retried)
	}
	f.waitEvents(t, a.adminKey, "?email=fay@a.example", "fay's event processed", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed && es[0].UserID == fay.ID
	})
	if n := len(f.userLockouts(t, a.org.ID, fay.Email)); n != 1 {
		t.Errorf("lockouts of fay = %d; want 1", n)
	}

	// Rotation: the new secret works at once, the old one for the grace.
	var rot oktaView
	if code := f.do(t, a.adminKey, "POST", "/v1/integrations/okta/rotate-secret", "", &rot); code != 200 || rot.Secret == "" || rot.Secret == v.Secret || rot.PreviousSecretUntil == nil {
		t.Fatalf("rotate = %d %+v; want a new secret and the old one's end", code, rot)
	}
	empty := oktaBody("evt-5", oktaEvent{uuid: "uuid-login", eventType: "user.session.start", userID: "00udana", login: "dana@a.example"})
	for _, c := range []struct {
		name, secret string
		advance      time.Duration
		want         int
	}{{"new secret", rot.Secret, 0, 204}, {"old secret in its grace", v.Secret, 0, 204}, {"old secret after its grace", v.Secret, 25 * time.Hour, 401}, {"new secret later", rot.Secret, 0, 204}} {
		f.clk.Advance(c.advance)
		if code, _ := f.postOkta(t, v.HookID, c.secret, "", empty); code != c.want {
			t.Errorf("delivery with the %s = %d; want %d", c.name, code, c.want)
		}
	}
}

// TestWebhooksCrossTenant: org B's hook secrets start nothing in org A.
func TestWebhooksCrossTenant(t *testing.T) {
	t.Parallel()
	f := setup(t)
	oa, ob := f.connectOkta(t, f.a), f.connectOkta(t, f.b)
	ha, hb := f.connectBamboo(t, f.a, "a-private-key-000000000000"), f.connectBamboo(t, f.b, "b-private-key-000000000000")
	victim := f.addUser(t, f.a.org.ID, "victim@a.example")
	f.bamboo.SetEmployee("501", map[string]string{"workEmail": victim.Email, "status": "Inactive"})
	body := oktaBody("evt-x", oktaEvent{uuid: "uuid-x", eventType: okta.EventDeactivate, userID: "00uv", login: victim.Email})
	if code, _ := f.postOkta(t, oa.HookID, ob.Secret, "", body); code != 401 {
		t.Errorf("org B's okta secret on org A's hook = %d; want 401", code)
	}
	if code, _ := f.postOkta(t, oa.HookID, ob.Secret, okta.Sign(ob.Secret, f.clk.Now(), body), body); code != 401 {
		t.Errorf("org B's okta secret and signature on org A's hook = %d; want 401", code)
	}
	// B's own hook with B's secret: accepted, but in B, where no such user is.
	if code, _ := f.postOkta(t, ob.HookID, ob.Secret, "", body); code != 204 {
		t.Errorf("org B's own delivery = %d; want 204", code)
	}
	bb := []byte(`{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"1","employeeId":"501","changedFields":["status"]}}`)
	ts, sig := f.signedBamboo(bb, "b-private-key-000000000000", 0)
	if code, _, _ := f.postBamboo(t, hookOf(ha.WebhookURL), ts, sig, bb); code != 401 {
		t.Errorf("org B's bamboohr signature on org A's hook = %d; want 401", code)
	}
	if code, _, _ := f.postBamboo(t, hookOf(hb.WebhookURL), ts, sig, bb); code != 200 {
		t.Errorf("org B's own bamboohr webhook = %d; want 200", code)
	}
	f.waitEvents(t, f.b.adminKey, "", "org B's events settled", func(es []triggerEventView) bool {
		return len(es) == 2 && es[0].State != store.TriggerPending && es[1].State != store.TriggerPending
	})
	if n := len(f.userLockouts(t, f.a.org.ID, victim.Email)); n != 0 {
		t.Errorf("lockouts in org A after org B's webhooks = %d; want 0", n)
	}
	if page, _ := f.st.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.a.org.ID}); len(page.Events) != 0 {
		t.Errorf("org A's inbox after org B's webhooks = %d events; want 0", len(page.Events))
	}
}

// TestBambooHRWebhook: both payload formats, the email read from the API
// when the payload lacks it, and each kind of request with its status and
// exactly the lockouts it should start.
func TestBambooHRWebhook(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	h := f.connectBamboo(t, a, bambooSecret)
	hook := hookOf(h.WebhookURL)
	if h.Provider != "bamboohr" || !strings.Contains(h.WebhookURL, "/v1/hris/webhook/bamboohr?hook=hk_") || h.APIKeyHint == "" || strings.Contains(h.APIKeyHint, bambooAPIKey[4:]) {
		t.Fatalf("PUT hris = %+v; want the webhook URL and hints", h)
	}
	var raw json.RawMessage
	f.do(t, a.readKey, "GET", "/v1/hris/config", "", &raw)
	if strings.Contains(string(raw), bambooAPIKey) || strings.Contains(string(raw), bambooSecret) {
		t.Errorf("GET /v1/hris/config shows a secret: %s", raw)
	}

	gus := f.addUser(t, a.org.ID, "gus@a.example")
	f.bamboo.SetEmployee("301", map[string]string{"workEmail": "Gus@A.example", "status": "Inactive", "employmentHistoryStatus": "Terminated", "terminationDate": "2026-01-30"})
	event := []byte(`{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"12345","employeeId":"301","changedFields":["employmentHistoryStatus","status"]}}`)
	ts, sig := f.signedBamboo(event, bambooSecret, 0)
	for _, c := range []struct {
		name, ts, sig, hook string
		body                []byte
		want                int
		code                string
	}{
		{"forged", ts, bamboohr.Sign("guess", event, ts), hook, event, 401, CodeUnauthenticated},
		{"unsigned", "", "", hook, event, 401, CodeUnauthenticated},
		{"unknown hook", ts, sig, "hk_nope", event, 404, CodeNotFound},
		{"stale", f.clk.Now().Add(-6 * time.Minute).UTC().Format("2006-01-02T15:04:05-0700"), "", hook, event, 401, CodeStale},
		{"malformed", ts, bamboohr.Sign(bambooSecret, []byte(`{"data":{}}`), ts), hook, []byte(`{"data":{}}`), 400, CodeInvalidArgument},
	} {
		if c.name == "stale" {
			c.sig = bamboohr.Sign(bambooSecret, c.body, c.ts)
		}
		if code, ecode, _ := f.postBamboo(t, c.hook, c.ts, c.sig, c.body); code != c.want || ecode != c.code {
			t.Errorf("webhook (%s) = %d %q; want %d %q", c.name, code, ecode, c.want, c.code)
		}
	}
	if f.bamboo.Calls() != 0 || len(f.userLockouts(t, a.org.ID, gus.Email)) != 0 {
		t.Fatalf("after refused webhooks: %d api calls, %d lockouts; want none", f.bamboo.Calls(), len(f.userLockouts(t, a.org.ID, gus.Email)))
	}

	// Good (event-based, no email in it): the email comes from the API.
	if code, _, rec := f.postBamboo(t, hook, ts, sig, event); code != 200 || rec.Accepted != 1 {
		t.Fatalf("good webhook = %d %+v; want 200, 1 accepted", code, rec)
	}
	evs := f.waitEvents(t, a.adminKey, "?source=bamboohr", "gus's event processed", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed
	})
	if evs[0].Email != "gus@a.example" || evs[0].UserID != gus.ID || evs[0].Subject != "301" {
		t.Errorf("processed event = %+v; want gus, by the email BambooHR's API gave", evs[0])
	}
	// Replayed (the same signed request) and duplicate (re-signed).
	if code, ecode, _ := f.postBamboo(t, hook, ts, sig, event); code != 409 || ecode != CodeReplayed {
		t.Errorf("replayed webhook = %d %q; want 409 %s", code, ecode, CodeReplayed)
	}
	ts2, sig2 := f.signedBamboo(event, bambooSecret, time.Second)
	if code, _, rec := f.postBamboo(t, hook, ts2, sig2, event); code != 200 || rec.Accepted != 0 || rec.Duplicates != 1 {
		t.Errorf("duplicate webhook = %d %+v; want 200, 1 duplicate", code, rec)
	}
	if n := len(f.userLockouts(t, a.org.ID, gus.Email)); n != 1 {
		t.Errorf("lockouts of gus = %d; want 1", n)
	}

	// Legacy field-based, with the email in it; a change that is not a
	// termination is acknowledged and dropped.
	hana := f.addUser(t, a.org.ID, "hana@a.example")
	f.bamboo.SetEmployee("302", map[string]string{"workEmail": "hana@a.example", "status": "Inactive"})
	fields := []byte(`{"employees":[{"action":"Updated","changedFields":["Status"],"fields":{"Status":"Inactive","Work Email":"HANA@a.example","Employment Status":"Terminated","Termination Date":"2026-01-02"},"id":"302","timestamp":"2026-01-31T18:50:00+0000"},{"action":"Updated","changedFields":["First Name"],"fields":{"First Name":"Ida"},"id":"303","timestamp":"2026-01-31T18:50:00+0000"}]}`)
	calls := f.bamboo.Calls()
	ts3, sig3 := f.signedBamboo(fields, bambooSecret, 0)
	if code, _, rec := f.postBamboo(t, hook, ts3, sig3, fields); code != 200 || rec.Accepted != 1 || rec.Ignored != 1 {
		t.Fatalf("field-based webhook = %d %+v; want 200, 1 accepted, 1 ignored", code, rec)
	}
	f.waitEvents(t, a.adminKey, "?email=hana@a.example", "hana's event processed", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed && es[0].UserID == hana.ID
	})
	if f.bamboo.Calls() != calls {
		t.Errorf("BambooHR API calls for a complete field-based payload = %d; want none", f.bamboo.Calls()-calls)
	}

	// Not a termination after all (the API says active): ignored.
	f.bamboo.SetEmployee("304", map[string]string{"workEmail": "ivy@a.example", "status": "Active", "employmentHistoryStatus": "Full-Time"})
	ivy := f.addUser(t, a.org.ID, "ivy@a.example")
	notTerm := []byte(`{"type":"employee.updated","timestamp":"2026-01-31T19:00:00+0000","data":{"companyId":"12345","employeeId":"304","changedFields":["employmentHistoryStatus"]}}`)
	ts4, sig4 := f.signedBamboo(notTerm, bambooSecret, 0)
	f.postBamboo(t, hook, ts4, sig4, notTerm)
	f.waitEvents(t, a.adminKey, "?source=bamboohr&state=ignored", "ivy's event ignored", func(es []triggerEventView) bool { return len(es) == 1 })
	if n := len(f.userLockouts(t, a.org.ID, ivy.Email)); n != 0 {
		t.Errorf("lockouts of ivy = %d; want 0", n)
	}

	// BambooHR's API failing: retried, then failed for admins to see.
	f.bamboo.SetEmployee("305", map[string]string{"workEmail": "jo@a.example", "status": "Inactive"})
	f.bamboo.FailNext(100)
	failing := []byte(`{"type":"employee.updated","timestamp":"2026-01-31T19:10:00+0000","data":{"companyId":"12345","employeeId":"305","changedFields":["status"]}}`)
	ts5, sig5 := f.signedBamboo(failing, bambooSecret, 0)
	f.postBamboo(t, hook, ts5, sig5, failing)
	evs = f.waitEvents(t, a.adminKey, "?state=failed", "the failing API's event failed", func(es []triggerEventView) bool { return len(es) == 1 })
	if evs[0].Attempts != 3 || !strings.Contains(evs[0].LastError, "503") {
		t.Errorf("failed event = %+v; want 3 attempts and the API's answer", evs[0])
	}
}

// TestBambooHRFutureTermination: a termination dated tomorrow is
// scheduled for 00:00 UTC of that day, and runs then (after checking the
// date still stands at BambooHR).
func TestBambooHRFutureTermination(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	h := f.connectBamboo(t, a, bambooSecret)
	// Two seconds before midnight (UTC), on the fake clock.
	now := f.clk.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(24 * time.Hour)
	f.clk.Set(midnight.Add(-2 * time.Second))
	kim := f.addUser(t, a.org.ID, "kim@a.example")
	f.bamboo.SetEmployee("401", map[string]string{"workEmail": "kim@a.example", "status": "Active", "terminationDate": midnight.Format("2006-01-02")})
	body := []byte(`{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"12345","employeeId":"401","changedFields":["terminationDate"]}}`)
	ts, sig := f.signedBamboo(body, bambooSecret, 0)
	if code, _, _ := f.postBamboo(t, hookOf(h.WebhookURL), ts, sig, body); code != 200 {
		t.Fatalf("webhook = %d; want 200", code)
	}
	evs := f.waitEvents(t, a.adminKey, "", "kim's event scheduled", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerScheduled
	})
	if evs[0].DueAt == nil || !evs[0].DueAt.Equal(midnight) {
		t.Fatalf("scheduled event = %+v; want due at %v", evs[0], midnight)
	}
	time.Sleep(3 * time.Second) // the queue's time passes the due time; the business clock has not
	if n := len(f.userLockouts(t, a.org.ID, kim.Email)); n != 0 {
		t.Fatalf("lockouts of kim before the date = %d; want 0", n)
	}
	f.clk.Advance(3 * time.Second)
	f.waitEvents(t, a.adminKey, "", "kim's event processed on the date", func(es []triggerEventView) bool {
		return len(es) == 1 && es[0].State == store.TriggerProcessed
	})
	if n := len(f.userLockouts(t, a.org.ID, kim.Email)); n != 1 {
		t.Errorf("lockouts of kim on the date = %d; want 1", n)
	}
}

// TestWorkdayPolling: the first poll runs when Workday is connected;
// terminations become lockouts once however often they are read; a failed
// read shows in the status; OAuth works too.
func TestWorkdayPolling(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	wd := workdaytest.New("ISU_Toktra@acme", "wd-password", "client", "client-secret", "refresh-token")
	t.Cleanup(wd.Close)
	lee := f.addUser(t, a.org.ID, "lee@a.example")
	tomorrow := f.clk.Now().UTC().Add(48 * time.Hour).Format("2006-01-02")
	recent := f.clk.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	wd.SetEntries(
		workdaytest.Entry{"Worker_ID": "21001", "Email_Address": "Lee@A.example", "Termination_Date": "2026-03-01", "Event_ID": "TERM-1", "Event_Completed_Moment": recent},
		workdaytest.Entry{"Worker_ID": "21002", "Email_Address": "mo@a.example", "Termination_Date": tomorrow, "Event_ID": "TERM-2"},
		workdaytest.Entry{"Worker_ID": "21003", "Email_Address": "lee@a.example", "Termination_Date": "2026-03-01", "Event_ID": "TERM-3", "Rescinded": true},
	)
	put := func(body string) hrisView {
		t.Helper()
		var v hrisView
		if code := f.do(t, a.adminKey, "PUT", "/v1/hris/config", body, &v); code != 200 {
			t.Fatalf("PUT workday = %d", code)
		}
		return v
	}
	basic := fmt.Sprintf(`{"provider":"workday","base_url":%q,"report_url":%q,"username":"ISU_Toktra@acme","password":"wd-password","poll_interval":"2h"}`,
		wd.URL(), wd.URL()+workdaytest.ReportPath)
	v := put(basic)
	if v.Auth != "basic" || v.PollInterval != "2h0m0s" || v.PasswordHint == "" || v.Status == nil {
		t.Fatalf("PUT workday = %+v; want basic auth, the interval, a status", v)
	}
	waitStatus := func(what string, cond func(*pollView) bool) hrisView {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var got hrisView
			f.do(t, a.readKey, "GET", "/v1/hris/config", "", &got)
			if got.Status != nil && cond(got.Status) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status %+v", what, got.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	st := waitStatus("the first poll", func(p *pollView) bool { return p.LastSuccessAt != nil })
	if !st.Status.NextRunAt.Equal(st.Status.LastRunAt.Add(2*time.Hour)) || st.Status.LastError != "" {
		t.Errorf("status after the first poll = %+v; want the next run 2h later", st.Status)
	}
	f.waitEvents(t, a.adminKey, "?source=workday", "lee processed, mo scheduled", func(es []triggerEventView) bool {
		states := map[string]store.TriggerEventState{}
		for _, e := range es {
			states[e.Subject] = e.State
		}
		return len(es) == 2 && states["21001"] == store.TriggerProcessed && states["21002"] == store.TriggerScheduled
	})
	reqs := wd.Requests()
	if len(reqs) != 1 || reqs[0].Auth != "basic" || reqs[0].Format != "json" {
		t.Errorf("report requests = %+v; want one json read with basic auth", reqs)
	}

	// Read again (a new config runs a poll at once): nothing new.
	wd.FailNext(1)
	put(basic)
	st = waitStatus("the failed poll", func(p *pollView) bool { return p.LastError != "" })
	if !strings.Contains(st.Status.LastError, "500") || st.Status.LastSuccessAt == nil {
		t.Errorf("status after a failed poll = %+v; want the error, the last success kept", st.Status)
	}
	oauth := fmt.Sprintf(`{"provider":"workday","base_url":%q,"report_url":%q,"token_url":%q,"client_id":"client","client_secret":"client-secret","refresh_token":"refresh-token"}`,
		wd.URL(), wd.URL()+workdaytest.ReportPath, wd.URL()+workdaytest.TokenPath)
	before := len(wd.Requests())
	v = put(oauth)
	if v.Auth != "oauth" || v.RefreshTokenHint == "" || v.PollInterval != "1h0m0s" {
		t.Errorf("PUT workday (oauth) = %+v", v)
	}
	waitStatus("the oauth poll", func(p *pollView) bool { return p.LastError == "" && len(wd.Requests()) > before })
	if r := wd.Requests(); r[len(r)-1].Auth != "bearer" {
		t.Errorf("last report request = %+v; want a bearer token", r[len(r)-1])
	}
	evs := f.waitEvents(t, a.adminKey, "?source=workday", "", func([]triggerEventView) bool { return true })
	if len(evs) != 2 || len(f.userLockouts(t, a.org.ID, lee.Email)) != 1 {
		t.Errorf("after three polls: %d events, %d lockouts of lee; want 2 and 1", len(evs), len(f.userLockouts(t, a.org.ID, lee.Email)))
	}

	// Bad configurations change nothing.
	for _, body := range []string{
		`{"provider":"workday","base_url":"ftp://x","report_url":"ftp://x/r","username":"u","password":"p"}`,
		fmt.Sprintf(`{"provider":"workday","base_url":%q,"report_url":"https://elsewhere.example/r","username":"u","password":"p"}`, wd.URL()),
		fmt.Sprintf(`{"provider":"workday","base_url":%q,"report_url":%q,"username":"u","password":"p","poll_interval":"1m"}`, wd.URL(), wd.URL()),
		`{"provider":"workday","base_url":"https://wd2.workday.com","report_url":"https://wd2.workday.com/r"}`,
		`{"provider":"sap"}`,
		`{"provider":"bamboohr","subdomain":"a b","api_key":"k","webhook_secret":"s"}`,
		`{"provider":"bamboohr","subdomain":"aco"}`,
		`{"provider":"bamboohr","subdomain":"aco","api_key":"k","webhook_secret":"s","password":"x"}`,
	} {
		var e errorBody
		if code := f.do(t, a.adminKey, "PUT", "/v1/hris/config", body, &e); code != 400 || e.Error.Code != CodeInvalidArgument {
			t.Errorf("PUT %s = %d %q; want 400 invalid_argument", body, code, e.Error.Code)
		}
	}
	var got hrisView
	f.do(t, a.readKey, "GET", "/v1/hris/config", "", &got)
	if got.Auth != "oauth" {
		t.Errorf("after bad configurations, config = %+v; want the oauth one kept", got)
	}
	if code := f.do(t, a.adminKey, "DELETE", "/v1/hris/config", "", nil); code != 204 {
		t.Errorf("DELETE /v1/hris/config = %d; want 204", code)
	}
}
