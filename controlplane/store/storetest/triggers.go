package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

func exerciseTriggers(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"TriggerIntegrations", testTriggerIntegrations},
		{"TriggerDeliveries", testTriggerDeliveries},
		{"TriggerEvents", testTriggerEvents},
		{"TriggerEventsPage", testTriggerEventsPage},
		{"TriggerIdentities", testTriggerIdentities},
		{"TriggerPolls", testTriggerPolls},
		{"TriggersInTx", testTriggersInTx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, setup(t, newStore))
		})
	}
}

// testTriggerIntegrations: an integration is replaced in place, found by
// its hook id from any org, invisible to another org by org, and deleted
// with its poll status.
func testTriggerIntegrations(t *testing.T, f *fixture) {
	put := func(orgID, kind, hook, settings string, at time.Time) store.TriggerIntegration {
		t.Helper()
		in, err := f.s.PutTriggerIntegration(f.ctx, store.PutTriggerIntegrationParams{
			OrgID: orgID, Kind: kind, HookID: hook, Settings: json.RawMessage(settings), SealedSecrets: []byte("sealed-" + kind), At: at,
		})
		if err != nil {
			t.Fatalf("PutTriggerIntegration(%s, %s) error = %v", orgID, kind, err)
		}
		return in
	}
	put(f.orgA.ID, "okta", "hk_a", `{"v":1}`, base)
	in := put(f.orgA.ID, "okta", "hk_a", `{"v":2}`, base.Add(time.Minute))
	if !in.CreatedAt.Equal(utc(base)) || !in.UpdatedAt.Equal(utc(base.Add(time.Minute))) || string(in.SealedSecrets) != "sealed-okta" {
		t.Errorf("PutTriggerIntegration replace = %+v; want created kept, updated moved", in)
	}
	var settings struct{ V int }
	if err := json.Unmarshal(in.Settings, &settings); err != nil || settings.V != 2 {
		t.Errorf("settings = %s (%v); want v 2", in.Settings, err)
	}
	put(f.orgA.ID, "workday", "", `{}`, base)
	put(f.orgB.ID, "okta", "hk_b", `{}`, base)

	got, err := f.s.GetTriggerIntegrationByHook(f.ctx, "hk_b")
	if err != nil || got.OrgID != f.orgB.ID || got.Kind != "okta" {
		t.Errorf("GetTriggerIntegrationByHook(hk_b) = %+v, %v; want org B's okta", got, err)
	}
	for _, hook := range []string{"", "hk_nope"} {
		if _, err := f.s.GetTriggerIntegrationByHook(f.ctx, hook); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTriggerIntegrationByHook(%q) error = %v; want ErrNotFound", hook, err)
		}
	}
	// A hook id names one integration in all orgs.
	_, err = f.s.PutTriggerIntegration(f.ctx, store.PutTriggerIntegrationParams{OrgID: f.orgB.ID, Kind: "bamboohr", HookID: "hk_a", Settings: json.RawMessage(`{}`), SealedSecrets: []byte("x"), At: base})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutTriggerIntegration(org B, A's hook id) error = %v; want ErrConflict", err)
	}
	list, err := f.s.ListTriggerIntegrations(f.ctx, f.orgA.ID)
	if err != nil || len(list) != 2 || list[0].Kind != "okta" || list[1].Kind != "workday" || list[1].HookID != "" {
		t.Errorf("ListTriggerIntegrations(A) = %+v, %v; want okta then workday (no hook)", list, err)
	}
	if _, err := f.s.GetTriggerIntegration(f.ctx, f.orgB.ID, "workday"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTriggerIntegration(org B, workday) error = %v; want ErrNotFound", err)
	}
	if err := f.s.DeleteTriggerIntegration(f.ctx, f.orgB.ID, "workday"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteTriggerIntegration(org B, A's workday) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.PutTriggerPoll(f.ctx, store.PutTriggerPollParams{OrgID: f.orgA.ID, Source: "workday", Interval: time.Hour, NextRunAt: base, At: base}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteTriggerIntegration(f.ctx, f.orgA.ID, "workday"); err != nil {
		t.Fatalf("DeleteTriggerIntegration(A, workday) error = %v", err)
	}
	if _, err := f.s.GetTriggerPoll(f.ctx, f.orgA.ID, "workday"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTriggerPoll after deleting the integration error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.PutTriggerPoll(f.ctx, store.PutTriggerPollParams{OrgID: f.orgA.ID, Source: "bamboohr", Interval: time.Hour, NextRunAt: base, At: base}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutTriggerPoll without its integration error = %v; want ErrNotFound", err)
	}
}

// testTriggerDeliveries: a delivery id is recorded once per org and source.
func testTriggerDeliveries(t *testing.T, f *fixture) {
	sum := sha256.Sum256([]byte("body"))
	rec := func(orgID, source, id string) error {
		return f.s.RecordTriggerDelivery(f.ctx, store.RecordTriggerDeliveryParams{
			OrgID: orgID, Source: source, DeliveryID: id, PayloadSHA256: sum[:], Events: 2, Accepted: 1, ReceivedAt: base,
		})
	}
	if err := rec(f.orgA.ID, "okta", "evt-1"); err != nil {
		t.Fatalf("RecordTriggerDelivery error = %v", err)
	}
	if err := rec(f.orgA.ID, "okta", "evt-1"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RecordTriggerDelivery again error = %v; want ErrConflict", err)
	}
	for _, c := range []struct{ org, source string }{{f.orgB.ID, "okta"}, {f.orgA.ID, "bamboohr"}} {
		if err := rec(c.org, c.source, "evt-1"); err != nil {
			t.Errorf("RecordTriggerDelivery(%s, %s, same id) error = %v; want nil", c.org, c.source, err)
		}
	}
}

func (f *fixture) addEvent(t *testing.T, orgID, source, subject, vendorID string, at time.Time) (store.TriggerEvent, bool) {
	t.Helper()
	sum := sha256.Sum256([]byte(subject + vendorID))
	e, added, err := f.s.AddTriggerEvent(f.ctx, store.AddTriggerEventParams{
		OrgID: orgID, Source: source, DeliveryID: "d-" + vendorID, Subject: subject, VendorEventID: vendorID,
		EventType: "user.lifecycle.deactivate", Email: subject + "@a.example", PayloadSHA256: sum[:],
		Detail: json.RawMessage(`{"target":"` + subject + `"}`), State: store.TriggerPending, ReceivedAt: at,
	})
	if err != nil {
		t.Fatalf("AddTriggerEvent(%s, %s/%s) error = %v", orgID, subject, vendorID, err)
	}
	return e, added
}

// testTriggerEvents: an event is added once (the second add returns the
// first, unchanged), moves only from the states given, and is invisible
// to another org.
func testTriggerEvents(t *testing.T, f *fixture) {
	e, added := f.addEvent(t, f.orgA.ID, "okta", "00u1", "uuid-1", base)
	if !added || e.ID == "" || e.State != store.TriggerPending || e.Email != "00u1@a.example" || !e.ReceivedAt.Equal(utc(base)) || e.ProcessedAt != nil || !e.DueAt.IsZero() {
		t.Fatalf("AddTriggerEvent = %+v, added %v; want a new pending event", e, added)
	}
	again, added := f.addEvent(t, f.orgA.ID, "okta", "00u1", "uuid-1", base.Add(time.Hour))
	if added || again.ID != e.ID || !again.ReceivedAt.Equal(e.ReceivedAt) {
		t.Errorf("AddTriggerEvent duplicate = %+v, added %v; want the first event, not added", again, added)
	}
	other, added := f.addEvent(t, f.orgA.ID, "okta", "00u2", "uuid-1", base)
	if !added || other.ID == e.ID {
		t.Errorf("AddTriggerEvent(other subject, same uuid) added %v; want a second event (one per target)", added)
	}
	if _, added := f.addEvent(t, f.orgB.ID, "okta", "00u1", "uuid-1", base); !added {
		t.Error("AddTriggerEvent(org B, same ids) not added; want org B's own event")
	}

	u := f.user(t, f.orgA.ID, "00u1@a.example")
	l := f.lockout(t, f.orgA.ID, u.ID)
	due := base.Add(48 * time.Hour)
	sched, err := f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{
		OrgID: f.orgA.ID, ID: e.ID, From: []store.TriggerEventState{store.TriggerPending},
		State: store.TriggerScheduled, DueAt: due, Attempts: 1, Email: e.Email, At: base.Add(time.Minute),
	})
	if err != nil || sched.State != store.TriggerScheduled || !sched.DueAt.Equal(utc(due)) || sched.ProcessedAt != nil || string(sched.Detail) == "" {
		t.Fatalf("UpdateTriggerEvent(scheduled) = %+v, %v; want scheduled at %v, detail kept", sched, err, due)
	}
	done, err := f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{
		OrgID: f.orgA.ID, ID: e.ID, From: []store.TriggerEventState{store.TriggerPending, store.TriggerScheduled},
		State: store.TriggerProcessed, DueAt: due, Attempts: 2, Email: e.Email, UserID: u.ID, LockoutID: l.ID,
		Detail: json.RawMessage(`{"matched":"email"}`), At: base.Add(2 * time.Minute),
	})
	if err != nil || done.State != store.TriggerProcessed || done.UserID != u.ID || done.LockoutID != l.ID || done.Attempts != 2 ||
		done.ProcessedAt == nil || !done.ProcessedAt.Equal(utc(base.Add(2*time.Minute))) {
		t.Fatalf("UpdateTriggerEvent(processed) = %+v, %v; want processed with user and lockout", done, err)
	}
	var detail map[string]string
	if err := json.Unmarshal(done.Detail, &detail); err != nil || detail["matched"] != "email" {
		t.Errorf("detail = %s (%v); want the replacement", done.Detail, err)
	}
	// A second worker finding it processed changes nothing.
	_, err = f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{
		OrgID: f.orgA.ID, ID: e.ID, From: []store.TriggerEventState{store.TriggerPending, store.TriggerScheduled},
		State: store.TriggerUnknownUser, At: base.Add(3 * time.Minute),
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateTriggerEvent from pending of a processed event error = %v; want ErrConflict", err)
	}
	if got, _ := f.s.GetTriggerEvent(f.ctx, f.orgA.ID, e.ID); got.State != store.TriggerProcessed {
		t.Errorf("after the refused update, state = %s; want processed", got.State)
	}
	// Org B cannot see or change it, nor point its events at A's rows.
	if _, err := f.s.GetTriggerEvent(f.ctx, f.orgB.ID, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTriggerEvent(org B) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{OrgID: f.orgB.ID, ID: e.ID, State: store.TriggerIgnored, At: base}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateTriggerEvent(org B) error = %v; want ErrNotFound", err)
	}
	_, err = f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{OrgID: f.orgA.ID, ID: other.ID, State: store.TriggerProcessed, UserID: "usr_nope", At: base})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateTriggerEvent(unknown user id) error = %v; want ErrNotFound", err)
	}
	// Back to pending (an admin's retry) clears processed_at.
	back, err := f.s.UpdateTriggerEvent(f.ctx, store.UpdateTriggerEventParams{OrgID: f.orgA.ID, ID: e.ID, State: store.TriggerPending, At: base.Add(4 * time.Minute)})
	if err != nil || back.ProcessedAt != nil || back.UserID != "" {
		t.Errorf("UpdateTriggerEvent(back to pending) = %+v, %v; want pending without processed_at", back, err)
	}
}

// testTriggerEventsPage: newest first, filtered, paged to the end.
func testTriggerEventsPage(t *testing.T, f *fixture) {
	var ids []string
	for i := range 5 {
		src := "okta"
		if i%2 == 1 {
			src = "bamboohr"
		}
		e, _ := f.addEvent(t, f.orgA.ID, src, "s", string(rune('a'+i)), base.Add(time.Duration(i)*time.Minute))
		ids = append([]string{e.ID}, ids...)
	}
	f.addEvent(t, f.orgB.ID, "okta", "s", "b", base)
	var got []string
	cur := ""
	for range 10 {
		page, err := f.s.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.orgA.ID, Cursor: cur, Limit: 2})
		if err != nil {
			t.Fatalf("ListTriggerEvents error = %v", err)
		}
		for _, e := range page.Events {
			got = append(got, e.ID)
		}
		if cur = page.NextCursor; cur == "" {
			break
		}
	}
	if diff := diff(ids, got); diff != "" {
		t.Errorf("ListTriggerEvents pages (-want +got):\n%s", diff)
	}
	page, err := f.s.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.orgA.ID, Source: "bamboohr", State: store.TriggerPending, Email: "s@a.example"})
	if err != nil || len(page.Events) != 2 || page.NextCursor != "" {
		t.Errorf("ListTriggerEvents(bamboohr, pending, email) = %d events, %v; want 2", len(page.Events), err)
	}
	if page, _ := f.s.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.orgA.ID, State: store.TriggerFailed}); len(page.Events) != 0 {
		t.Errorf("ListTriggerEvents(failed) = %d events; want 0", len(page.Events))
	}
	if _, err := f.s.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.orgA.ID, Cursor: "!!"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("ListTriggerEvents(bad cursor) error = %v; want ErrInvalidCursor", err)
	}
}

// testTriggerIdentities: an identity is upserted and scoped to its org.
func testTriggerIdentities(t *testing.T, f *fixture) {
	u1 := f.user(t, f.orgA.ID, "one@a.example")
	u2 := f.user(t, f.orgA.ID, "two@a.example")
	put := func(orgID, userID string) error {
		return f.s.PutTriggerIdentity(f.ctx, store.PutTriggerIdentityParams{OrgID: orgID, Source: "okta", ExternalID: "00uX", UserID: userID, At: base})
	}
	if err := put(f.orgA.ID, u1.ID); err != nil {
		t.Fatal(err)
	}
	if err := put(f.orgA.ID, u2.ID); err != nil {
		t.Fatal(err)
	}
	id, err := f.s.GetTriggerIdentity(f.ctx, f.orgA.ID, "okta", "00uX")
	if err != nil || id.UserID != u2.ID {
		t.Errorf("GetTriggerIdentity = %+v, %v; want moved to %s", id, err, u2.ID)
	}
	if _, err := f.s.GetTriggerIdentity(f.ctx, f.orgB.ID, "okta", "00uX"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTriggerIdentity(org B) error = %v; want ErrNotFound", err)
	}
	if err := put(f.orgB.ID, u1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutTriggerIdentity(org B, A's user) error = %v; want ErrNotFound", err)
	}
}

// testTriggerPolls: a poll run is recorded only if it is still the one
// due; rescheduling keeps the history; schedules cross orgs.
func testTriggerPolls(t *testing.T, f *fixture) {
	for _, org := range []string{f.orgA.ID, f.orgB.ID} {
		if _, err := f.s.PutTriggerIntegration(f.ctx, store.PutTriggerIntegrationParams{OrgID: org, Kind: "workday", Settings: json.RawMessage(`{}`), SealedSecrets: []byte("x"), At: base}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := f.s.PutTriggerPoll(f.ctx, store.PutTriggerPollParams{OrgID: f.orgA.ID, Source: "workday", Interval: time.Hour, NextRunAt: base, At: base})
	if err != nil || p.Interval != time.Hour || !p.NextRunAt.Equal(utc(base)) || !p.LastRunAt.IsZero() || !p.Cursor.IsZero() {
		t.Fatalf("PutTriggerPoll = %+v, %v; want a fresh poll due at base", p, err)
	}
	finish := func(expect time.Time, errText string, cur, next, at time.Time) (store.TriggerPoll, error) {
		return f.s.FinishTriggerPoll(f.ctx, store.FinishTriggerPollParams{OrgID: f.orgA.ID, Source: "workday",
			ExpectNextRunAt: expect, Err: errText, Cursor: cur, NextRunAt: next, At: at})
	}
	t1 := base.Add(time.Minute)
	p, err = finish(base, "", t1, base.Add(time.Hour), t1)
	if err != nil || !p.LastSuccessAt.Equal(utc(t1)) || !p.Cursor.Equal(utc(t1)) || p.LastError != "" || !p.NextRunAt.Equal(utc(base.Add(time.Hour))) {
		t.Fatalf("FinishTriggerPoll(success) = %+v, %v; want success, cursor and next run moved", p, err)
	}
	if _, err := finish(base, "", t1, base.Add(2*time.Hour), t1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("FinishTriggerPoll of a run no longer due error = %v; want ErrConflict", err)
	}
	t2 := base.Add(time.Hour + time.Minute)
	p, err = finish(base.Add(time.Hour), "report: 500", t2, base.Add(2*time.Hour), t2)
	if err != nil || p.LastError != "report: 500" || !p.LastRunAt.Equal(utc(t2)) || !p.LastSuccessAt.Equal(utc(t1)) || !p.Cursor.Equal(utc(t1)) {
		t.Errorf("FinishTriggerPoll(failure) = %+v, %v; want the error, success and cursor kept", p, err)
	}
	p, err = f.s.PutTriggerPoll(f.ctx, store.PutTriggerPollParams{OrgID: f.orgA.ID, Source: "workday", Interval: 2 * time.Hour, NextRunAt: base.Add(5 * time.Minute), At: t2})
	if err != nil || p.Interval != 2*time.Hour || p.LastError != "report: 500" || !p.Cursor.Equal(utc(t1)) {
		t.Errorf("PutTriggerPoll(reschedule) = %+v, %v; want the new interval, history kept", p, err)
	}
	if _, err := f.s.FinishTriggerPoll(f.ctx, store.FinishTriggerPollParams{OrgID: f.orgB.ID, Source: "workday", ExpectNextRunAt: p.NextRunAt, NextRunAt: p.NextRunAt, At: t2}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishTriggerPoll(org B, no poll) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.PutTriggerPoll(f.ctx, store.PutTriggerPollParams{OrgID: f.orgB.ID, Source: "workday", Interval: time.Hour, NextRunAt: base, At: base}); err != nil {
		t.Fatal(err)
	}
	scheds, err := f.s.ListTriggerPollSchedules(f.ctx)
	if err != nil || len(scheds) != 2 {
		t.Fatalf("ListTriggerPollSchedules = %+v, %v; want both orgs", scheds, err)
	}
	want := map[string]time.Time{f.orgA.ID: utc(base.Add(5 * time.Minute)), f.orgB.ID: utc(base)}
	for _, s := range scheds {
		if s.Source != "workday" || !s.NextRunAt.Equal(want[s.OrgID]) {
			t.Errorf("schedule %+v; want workday next at %v", s, want[s.OrgID])
		}
	}
}

// testTriggersInTx: inside InTx a refused delivery (a replay) leaves the
// rest of the transaction usable, and a rollback keeps none of it.
func testTriggersInTx(t *testing.T, f *fixture) {
	sum := sha256.Sum256([]byte("x"))
	d := store.RecordTriggerDeliveryParams{OrgID: f.orgA.ID, Source: "bamboohr", DeliveryID: "sig", PayloadSHA256: sum[:], ReceivedAt: base}
	if err := f.s.RecordTriggerDelivery(f.ctx, d); err != nil {
		t.Fatal(err)
	}
	errAbort := errors.New("abort")
	err := f.s.InTx(f.ctx, func(st store.Store, tx any) error {
		if err := st.RecordTriggerDelivery(f.ctx, d); !errors.Is(err, store.ErrConflict) {
			t.Errorf("RecordTriggerDelivery replay in tx error = %v; want ErrConflict", err)
		}
		d2 := d
		d2.DeliveryID = "sig2"
		if err := st.RecordTriggerDelivery(f.ctx, d2); err != nil {
			t.Errorf("RecordTriggerDelivery after a refused one error = %v", err)
		}
		if _, _, err := st.AddTriggerEvent(f.ctx, store.AddTriggerEventParams{OrgID: f.orgA.ID, Source: "bamboohr", DeliveryID: "sig2",
			Subject: "42", VendorEventID: "e", EventType: "t", PayloadSHA256: sum[:], State: store.TriggerPending, ReceivedAt: base}); err != nil {
			t.Errorf("AddTriggerEvent in tx error = %v", err)
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("InTx error = %v; want abort", err)
	}
	if page, _ := f.s.ListTriggerEvents(f.ctx, store.ListTriggerEventsParams{OrgID: f.orgA.ID}); len(page.Events) != 0 {
		t.Errorf("after rollback, events = %d; want 0", len(page.Events))
	}
	d.DeliveryID = "sig2"
	if err := f.s.RecordTriggerDelivery(f.ctx, d); err != nil {
		t.Errorf("after rollback, RecordTriggerDelivery(sig2) error = %v; want nil (not kept)", err)
	}
}
