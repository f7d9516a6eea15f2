package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// auditLog lists org's audit log through the API with the given query,
// following every cursor.
func (f *apiFixture) auditLog(t *testing.T, key, query string) []auditEntryView {
	t.Helper()
	var all []auditEntryView
	cursor := ""
	for range 1000 {
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page auditLogList
		if code := f.do(t, key, "GET", "/v1/audit-log?"+q.Encode(), "", &page); code != http.StatusOK {
			t.Fatalf("GET /v1/audit-log?%s = %d; want 200", q.Encode(), code)
		}
		all = append(all, page.Data...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
	t.Fatal("GET /v1/audit-log: cursor walk did not end")
	return nil
}

// entriesFromAPI turns the API's entries back into store entries, so the
// chain can be verified from the API output alone. Detail is compacted:
// the hash covers its canonical (compact) form.
func entriesFromAPI(t *testing.T, vs []auditEntryView) []store.AuditEntry {
	t.Helper()
	out := []store.AuditEntry{}
	for _, v := range vs {
		prev, err1 := hex.DecodeString(v.PrevHash)
		hash, err2 := hex.DecodeString(v.Hash)
		var detail bytes.Buffer
		if err := errors.Join(err1, err2, json.Compact(&detail, v.Detail)); err != nil {
			t.Fatalf("entry %d from the API: %v", v.Seq, err)
		}
		out = append(out, store.AuditEntry{
			OrgID: v.OrgID, Seq: v.Seq, ID: v.ID, At: v.At, Actor: v.Actor, Action: v.Action,
			Target: store.AuditTarget{Type: v.Target.Type, ID: v.Target.ID}, Detail: detail.Bytes(),
			RemoteIP: v.RemoteIP, PrevHash: prev, Hash: hash,
		})
	}
	return out
}

// auditCount is how many entries org has now, read from the store so the
// reading adds none.
func (f *apiFixture) auditCount(t *testing.T, orgID string) int {
	t.Helper()
	n := 0
	p := store.ListAuditParams{OrgID: orgID, Limit: store.MaxAuditPageLimit}
	for {
		page, err := f.st.ListAudit(f.ctx, p)
		if err != nil {
			t.Fatalf("ListAudit(%s) error = %v", orgID, err)
		}
		n += len(page.Entries)
		if page.NextCursor == "" {
			return n
		}
		p.Cursor = page.NextCursor
	}
}

type auditSummary struct {
	Actor, Action, Target string
	Status                int
}

func summarize(t *testing.T, vs []auditEntryView) []auditSummary {
	t.Helper()
	var out []auditSummary
	for _, v := range vs {
		var d auditDetail
		if err := json.Unmarshal(v.Detail, &d); err != nil {
			t.Fatalf("entry %d detail %s: %v", v.Seq, v.Detail, err)
		}
		target := v.Target.Type
		if v.Target.ID != "" {
			target += "/" + v.Target.ID
		}
		out = append(out, auditSummary{v.Actor, v.Action, target, d.Status})
	}
	return out
}

// TestAuditLog: every authenticated call of a small scenario appears in
// order with its outcome, the chain verifies from the API output, secrets
// never reach the log, and filters and paging work.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	adminActor := "api-key:" + a.adminKeyID
	// Setup created A's lockout (the first entry) and may have read it.
	before := f.auditCount(t, a.org.ID)
	var readKey apiKeyView
	var keys list[apiKeyView]
	f.do(t, a.adminKey, "GET", "/v1/api-keys", "", &keys)
	for _, k := range keys.Data {
		if k.Scope == store.ScopeReadOnly {
			readKey = k
		}
	}
	readActor := "api-key:" + readKey.ID
	start := f.clk.Now()

	var secret enrollmentSecretView
	steps := []struct {
		key, method, path, body string
		want                    int
		out                     any
	}{
		{a.adminKey, "GET", "/v1/devices/" + a.device.ID, "", 200, nil},
		{a.adminKey, "PUT", "/v1/policy", `{"domains":["llm.a.example"],"cidrs":[]}`, 200, nil},
		{a.adminKey, "POST", "/v1/enrollment-secrets", `{"name":"laptops"}`, 201, &secret},
		{a.readKey, "POST", "/v1/lockouts/" + a.lockoutID + "/override", `{"reason":"x"}`, 403, nil},
		{a.adminKey, "GET", "/v1/users/usr_nope", "", 404, nil},
		{"tka_unknown", "GET", "/v1/users", "", 401, nil}, // not authenticated: not recorded
		{a.adminKey, "POST", "/v1/lockouts/" + a.lockoutID + "/override", `{"reason":"rehired"}`, 200, nil},
	}
	for _, st := range steps {
		f.clk.Advance(time.Minute)
		if code := f.do(t, st.key, st.method, st.path, st.body, st.out); code != st.want {
			t.Fatalf("%s %s = %d; want %d", st.method, st.path, code, st.want)
		}
	}
	f.clk.Advance(time.Minute)

	// One page (limit 1000): reading a page adds an entry a later page would show.
	got := f.auditLog(t, a.readKey, "limit=1000")
	if s := summarize(t, got[:1]); s[0] != (auditSummary{adminActor, "lockouts.create", "lockouts/" + a.lockoutID, 201}) {
		t.Errorf("first entry = %v; want setup's lockouts.create", s[0])
	}
	want := []auditSummary{
		{adminActor, "api_keys.list", "api_keys", 200},
		{adminActor, "devices.read", "devices/" + a.device.ID, 200},
		{adminActor, "policy.update", "policy", 200},
		{adminActor, "enrollment_secrets.create", "enrollment_secrets/" + secret.ID, 201},
		{readActor, "lockouts.override", "lockouts/" + a.lockoutID, 403},
		{adminActor, "users.read", "users/usr_nope", 404},
		{adminActor, "lockouts.override", "lockouts/" + a.lockoutID, 200},
	}
	if s := summarize(t, got[before:]); fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("audit log =\n%v\nwant\n%v", s, want)
	}
	for i, v := range got {
		if v.OrgID != a.org.ID || v.Seq != uint64(i+1) || v.RemoteIP != "127.0.0.1" {
			t.Errorf("entry %d = org %s, seq %d, remote ip %q; want org A, seq %d, 127.0.0.1", i, v.OrgID, v.Seq, v.RemoteIP, i+1)
		}
	}
	devRead := got[before+1]
	if !devRead.At.Equal(start.Add(time.Minute)) {
		t.Errorf("devices.read entry at %v; want the clock's %v", devRead.At, start.Add(time.Minute))
	}
	if err := store.VerifyAuditChain(entriesFromAPI(t, got)); err != nil {
		t.Errorf("VerifyAuditChain(API output) = %v; want nil", err)
	}
	var d auditDetail
	_ = json.Unmarshal(devRead.Detail, &d)
	if d.Path["id"] != a.device.ID {
		t.Errorf("devices.read detail = %s; want the path's id", devRead.Detail)
	}
	raw, _ := json.Marshal(got)
	if secret.Secret == "" || bytes.Contains(raw, []byte(secret.Secret)) || bytes.Contains(raw, []byte("rehired")) {
		t.Errorf("audit log holds a secret or a request body: %s", raw)
	}

	// Reading the log is itself recorded, after the read.
	again := f.auditLog(t, a.adminKey, "limit=1000")
	if n := len(again); n != len(got)+1 || again[n-1].Action != "audit_log.list" || again[n-1].Actor != readActor {
		t.Errorf("after one more read: %d entries, last %+v; want %d ending with audit_log.list by the read key", n, again[n-1], len(got)+1)
	}
	all := again

	// Each filter gives exactly the matching entries, in order; paged one
	// at a time the same.
	filterCases := []struct {
		query string
		keep  func(v auditEntryView) bool
	}{
		{"actor=" + url.QueryEscape(readActor), func(v auditEntryView) bool { return v.Actor == readActor }},
		{"action=lockouts.override", func(v auditEntryView) bool { return v.Action == "lockouts.override" }},
		{"target=lockouts/" + a.lockoutID, func(v auditEntryView) bool { return v.Target == auditTargetView{"lockouts", a.lockoutID} }},
		{"target=policy", func(v auditEntryView) bool { return v.Target.Type == "policy" }},
		{"from=" + start.Add(2*time.Minute).Format(time.RFC3339) + "&to=" + start.Add(4*time.Minute).Format(time.RFC3339),
			func(v auditEntryView) bool {
				return !v.At.Before(start.Add(2*time.Minute)) && v.At.Before(start.Add(4*time.Minute))
			}},
		{"actor=" + url.QueryEscape(adminActor) + "&action=lockouts.override", func(v auditEntryView) bool {
			return v.Actor == adminActor && v.Action == "lockouts.override"
		}},
	}
	for _, tc := range filterCases {
		var wantSeqs []uint64
		for _, v := range all {
			if tc.keep(v) {
				wantSeqs = append(wantSeqs, v.Seq)
			}
		}
		for _, q := range []string{tc.query, tc.query + "&limit=1"} {
			var gotSeqs []uint64
			for _, v := range f.auditLog(t, a.adminKey, q) {
				if v.Seq <= all[len(all)-1].Seq { // ignore the reads this loop adds
					gotSeqs = append(gotSeqs, v.Seq)
				}
			}
			if len(wantSeqs) == 0 || fmt.Sprint(gotSeqs) != fmt.Sprint(wantSeqs) {
				t.Errorf("GET /v1/audit-log?%s = seqs %v; want %v (non-empty)", q, gotSeqs, wantSeqs)
			}
		}
	}

	// Paging two at a time covers every entry exactly once, in order, and
	// the pages verify as one chain.
	paged := f.auditLog(t, a.adminKey, "limit=2")
	for i, v := range paged {
		if v.Seq != uint64(i+1) {
			t.Fatalf("paged walk seq %d at index %d; want every entry once, in order", v.Seq, i)
		}
	}
	if len(paged) < len(all) {
		t.Errorf("paged walk = %d entries; want at least %d", len(paged), len(all))
	}
	if err := store.VerifyAuditChain(entriesFromAPI(t, paged)); err != nil {
		t.Errorf("VerifyAuditChain(paged API output) = %v; want nil", err)
	}

	// Org B's log is its own.
	for _, v := range f.auditLog(t, f.b.adminKey, "") {
		if v.OrgID != f.b.org.ID || v.Actor == adminActor || v.Actor == readActor {
			t.Errorf("org B's audit log has %+v", v)
		}
	}
}

func TestAuditLogBadParams(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=ten", "from=yesterday", "to=2026-13-01T00:00:00Z",
		"from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z", "from=2026-11-23T10:00:00Z&to=2026-11-23T10:00:00Z",
		"cursor=!!", "cursor=" + store.EncodeAuditCursor(0), "target=/lck_1", "target=lockouts/",
	} {
		var e errorBody
		if code := f.do(t, f.a.readKey, "GET", "/v1/audit-log?"+q, "", &e); code != 400 || e.Error.Code != CodeInvalidArgument {
			t.Errorf("GET /v1/audit-log?%s = %d %q; want 400 %s", q, code, e.Error.Code, CodeInvalidArgument)
		}
	}
}

// Concurrent requests of one org still leave one unforked chain.
func TestAuditLogConcurrentRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	before := f.auditCount(t, f.a.org.ID)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				f.do(t, f.a.readKey, "GET", "/v1/users", "", nil)
			}
		})
	}
	wg.Wait()
	got := f.auditLog(t, f.a.adminKey, "limit=1000") // one page: no reads of its own
	if len(got) != before+40 {
		t.Errorf("audit log after 40 concurrent reads = %d entries; want %d", len(got), before+40)
	}
	if err := store.VerifyAuditChain(entriesFromAPI(t, got)); err != nil {
		t.Errorf("VerifyAuditChain = %v; want nil", err)
	}
}

// failingAuditStore refuses every audit append, to check a request is
// still answered (and the failure logged) when its entry cannot be stored.
type failingAuditStore struct{ store.Store }

func (failingAuditStore) AppendAudit(context.Context, store.AppendAuditParams) (store.AuditEntry, error) {
	return store.AuditEntry{}, errors.New("disk full")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditAppendFailureIsLogged(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var logs syncBuffer
	srv := NewServer(Config{
		Store: failingAuditStore{f.st}, Lockouts: f.api.lockout, Fleet: f.api.fleet, Providers: f.api.providers,
		Clock: f.clk, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	req := httptest.NewRequest("PUT", "/v1/policy", strings.NewReader(`{"domains":["x.example"],"cidrs":[]}`))
	req.Header.Set("X-API-Key", f.a.adminKey)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("PUT /v1/policy with a failing audit log = %d; want 200 (the change was made)", w.Code)
	}
	if pol, err := f.st.GetPolicy(f.ctx, f.a.org.ID); err != nil || pol.Version != 1 {
		t.Errorf("policy = %+v, %v; want version 1", pol, err)
	}
	if l := logs.String(); !strings.Contains(l, "audit entry not recorded") || !strings.Contains(l, "disk full") {
		t.Errorf("log = %q; want the failed audit append", l)
	}
}

func TestAuditAction(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]string{
		"GET /v1/users":                          "users.list",
		"GET /v1/users/{id}":                     "users.read",
		"POST /v1/devices/{id}/revoke":           "devices.revoke",
		"POST /v1/lockouts":                      "lockouts.create",
		"POST /v1/lockouts/{id}/override":        "lockouts.override",
		"PUT /v1/policy":                         "policy.update",
		"GET /v1/policy":                         "policy.read",
		"DELETE /v1/api-keys/{id}":               "api_keys.revoke",
		"GET /v1/audit-log":                      "audit_log.list",
		"GET /v1/hris/offboarding/{snapshot_id}": "hris.offboarding.read",
		"PUT /v1/hris/config":                    "hris.config.update",
		"DELETE /v1/providers/{name}":            "providers.delete",
	} {
		if got := auditAction(pattern); got != want {
			t.Errorf("auditAction(%q) = %q; want %q", pattern, got, want)
		}
	}
	f := setup(t)
	for _, p := range f.api.patterns {
		if a := auditAction(p); a == "" || strings.ContainsAny(a, "{}/ ") {
			t.Errorf("auditAction(%q) = %q; want a dotted name", p, a)
		}
	}
}
