package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toktra/toktra/controlplane/store"
)

// jsonCmpOpts compare JSON documents by meaning: Postgres keeps jsonb,
// which does not keep whitespace or key order.
var jsonCmpOpts = append(slices.Clone(cmpOpts), cmp.Comparer(func(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == 0 && len(b) == 0
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}))

func jsonDiff(want, got any) string { return cmp.Diff(want, got, jsonCmpOpts...) }

// stepNames are the steps the tests record, in the order they are
// initialized.
func stepNames(steps []store.LockoutStep) []string {
	out := make([]string, 0, len(steps))
	for _, s := range steps {
		out = append(out, s.Step)
	}
	return out
}

// testLockoutSteps: initializing is idempotent and keeps the first order;
// updates set started_at on first running and finished_at on entering done
// or unconfirmed; another org's lockout is not found.
func testLockoutSteps(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "steps@a.example")
	ub := f.user(t, f.orgB.ID, "steps@b.example")
	l := f.lockout(t, f.orgA.ID, ua.ID)
	lb := f.lockout(t, f.orgB.ID, ub.ID)

	noErr(t, "InitLockoutSteps", f.s.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Steps: []string{"revoke", "lock", "notify"}, At: base,
	}))
	steps, err := f.s.ListLockoutSteps(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutSteps", err)
	pending := func(step string, at time.Time) store.LockoutStep {
		return store.LockoutStep{OrgID: f.orgA.ID, LockoutID: l.ID, Step: step, State: store.StepPending, UpdatedAt: utc(at)}
	}
	want := []store.LockoutStep{pending("revoke", base), pending("lock", base), pending("notify", base)}
	if d := diff(want, steps); d != "" {
		t.Errorf("ListLockoutSteps() after init mismatch (-want +got):\n%s", d)
	}

	// Running for the first time sets StartedAt.
	t1 := base.Add(time.Minute)
	got, err := f.s.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Step: "revoke", State: store.StepRunning, Attempts: 1, At: t1,
	})
	noErr(t, "UpdateLockoutStep(running)", err)
	want[0] = store.LockoutStep{OrgID: f.orgA.ID, LockoutID: l.ID, Step: "revoke", State: store.StepRunning, Attempts: 1,
		StartedAt: ptr(utc(t1)), UpdatedAt: utc(t1)}
	if d := diff(want[0], got); d != "" {
		t.Errorf("UpdateLockoutStep(running) mismatch (-want +got):\n%s", d)
	}

	// Initializing again leaves recorded steps alone and appends new ones.
	noErr(t, "InitLockoutSteps(again)", f.s.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Steps: []string{"lock", "audit", "revoke"}, At: base.Add(time.Hour),
	}))
	want = append(want, pending("audit", base.Add(time.Hour)))
	steps, err = f.s.ListLockoutSteps(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutSteps", err)
	if d := diff(want, steps); d != "" {
		t.Errorf("ListLockoutSteps() after a second init mismatch (-want +got):\n%s", d)
	}

	// Running again keeps the first StartedAt.
	t2 := base.Add(2 * time.Minute)
	got, err = f.s.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Step: "revoke", State: store.StepRunning, Attempts: 2, LastError: "timeout", At: t2,
	})
	noErr(t, "UpdateLockoutStep(running again)", err)
	want[0].Attempts, want[0].LastError, want[0].UpdatedAt = 2, "timeout", utc(t2)
	if d := diff(want[0], got); d != "" {
		t.Errorf("UpdateLockoutStep(running again) mismatch (-want +got):\n%s", d)
	}

	// Entering done sets FinishedAt; staying done keeps it.
	t3 := base.Add(3 * time.Minute)
	got, err = f.s.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Step: "revoke", State: store.StepDone, Attempts: 3, At: t3,
	})
	noErr(t, "UpdateLockoutStep(done)", err)
	want[0].State, want[0].Attempts, want[0].LastError, want[0].FinishedAt, want[0].UpdatedAt = store.StepDone, 3, "", ptr(utc(t3)), utc(t3)
	if d := diff(want[0], got); d != "" {
		t.Errorf("UpdateLockoutStep(done) mismatch (-want +got):\n%s", d)
	}
	t4 := base.Add(4 * time.Minute)
	got, err = f.s.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Step: "revoke", State: store.StepDone, Attempts: 3, LastError: "note", At: t4,
	})
	noErr(t, "UpdateLockoutStep(done again)", err)
	want[0].LastError, want[0].UpdatedAt = "note", utc(t4)
	if d := diff(want[0], got); d != "" {
		t.Errorf("UpdateLockoutStep(done again) mismatch (-want +got):\n%s", d)
	}

	// Pending straight to unconfirmed: finished, never started.
	t5 := base.Add(5 * time.Minute)
	got, err = f.s.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Step: "lock", State: store.StepUnconfirmed, Attempts: 5, LastError: "gave up", At: t5,
	})
	noErr(t, "UpdateLockoutStep(unconfirmed)", err)
	want[1] = store.LockoutStep{OrgID: f.orgA.ID, LockoutID: l.ID, Step: "lock", State: store.StepUnconfirmed, Attempts: 5,
		LastError: "gave up", FinishedAt: ptr(utc(t5)), UpdatedAt: utc(t5)}
	if d := diff(want[1], got); d != "" {
		t.Errorf("UpdateLockoutStep(unconfirmed) mismatch (-want +got):\n%s", d)
	}

	// Unknown steps and lockouts, and another org's, are not found and
	// change nothing.
	for _, p := range []store.UpdateLockoutStepParams{
		{OrgID: f.orgA.ID, LockoutID: l.ID, Step: "missing"},
		{OrgID: f.orgA.ID, LockoutID: "lck_missing", Step: "revoke"},
		{OrgID: f.orgB.ID, LockoutID: l.ID, Step: "revoke"},
		{OrgID: "org_missing", LockoutID: l.ID, Step: "revoke"},
	} {
		p.State, p.At = store.StepRunning, base.Add(time.Hour)
		_, err := f.s.UpdateLockoutStep(f.ctx, p)
		wantErr(t, fmt.Sprintf("UpdateLockoutStep(%s, %s, %s)", p.OrgID, p.LockoutID, p.Step), err, store.ErrNotFound)
	}
	for _, p := range []store.InitLockoutStepsParams{
		{OrgID: f.orgB.ID, LockoutID: l.ID, Steps: []string{"revoke"}},
		{OrgID: f.orgA.ID, LockoutID: "lck_missing", Steps: []string{"revoke"}},
		{OrgID: f.orgB.ID, LockoutID: l.ID},
		{OrgID: f.orgA.ID, LockoutID: "lck_missing"},
	} {
		p.At = base
		err := f.s.InitLockoutSteps(f.ctx, p)
		wantErr(t, fmt.Sprintf("InitLockoutSteps(%s, %s, %q)", p.OrgID, p.LockoutID, p.Steps), err, store.ErrNotFound)
	}
	noErr(t, "InitLockoutSteps(no steps)", f.s.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{OrgID: f.orgA.ID, LockoutID: l.ID, At: base}))
	steps, err = f.s.ListLockoutSteps(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutSteps", err)
	if d := diff(want, steps); d != "" {
		t.Errorf("ListLockoutSteps() after refused calls mismatch (-want +got):\n%s", d)
	}

	// Org B's own lockout has its own steps; it sees none of A's.
	noErr(t, "InitLockoutSteps(B)", f.s.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{
		OrgID: f.orgB.ID, LockoutID: lb.ID, Steps: []string{"lock", "revoke"}, At: base,
	}))
	steps, err = f.s.ListLockoutSteps(f.ctx, f.orgB.ID, lb.ID)
	noErr(t, "ListLockoutSteps(B)", err)
	if d := diff([]string{"lock", "revoke"}, stepNames(steps)); d != "" {
		t.Errorf("ListLockoutSteps(B) mismatch (-want +got):\n%s", d)
	}
	for _, c := range []struct{ org, lockout string }{{f.orgB.ID, l.ID}, {f.orgA.ID, lb.ID}, {f.orgA.ID, "lck_missing"}} {
		steps, err := f.s.ListLockoutSteps(f.ctx, c.org, c.lockout)
		noErr(t, "ListLockoutSteps", err)
		if len(steps) != 0 {
			t.Errorf("ListLockoutSteps(%s, %s) = %d steps; want none", c.org, c.lockout, len(steps))
		}
	}
}

// testProviderRevocations: a put creates or replaces the record but keeps
// its creation time; records are listed by provider and stay in their org.
func testProviderRevocations(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "rev@a.example")
	l := f.lockout(t, f.orgA.ID, ua.ID)

	got, err := f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "openai", State: store.RevocationPending, At: base,
	})
	noErr(t, "PutProviderRevocation(create)", err)
	openai := store.ProviderRevocation{OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "openai", State: store.RevocationPending,
		CreatedAt: utc(base), UpdatedAt: utc(base)}
	if d := jsonDiff(openai, got); d != "" {
		t.Errorf("PutProviderRevocation(create) mismatch (-want +got):\n%s", d)
	}
	if got.Confirmation != nil {
		t.Errorf("PutProviderRevocation(no confirmation).Confirmation = %s; want nil", got.Confirmation)
	}

	confirmation := json.RawMessage(`{"user_found": true, "actions": [{"kind": "key_revoked", "id": "k1"}], "at": "2025-03-04T05:06:07Z"}`)
	later := base.Add(time.Minute)
	got, err = f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "openai", State: store.RevocationConfirmed, Attempts: 2,
		Confirmation: confirmation, LastError: "", At: later,
	})
	noErr(t, "PutProviderRevocation(replace)", err)
	openai.State, openai.Attempts, openai.Confirmation, openai.UpdatedAt = store.RevocationConfirmed, 2, confirmation, utc(later)
	if d := jsonDiff(openai, got); d != "" {
		t.Errorf("PutProviderRevocation(replace) mismatch (-want +got):\n%s", d)
	}
	_, err = f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "anthropic", State: store.RevocationUnconfirmed, Attempts: 5,
		LastError: "503 from provider", At: base,
	})
	noErr(t, "PutProviderRevocation(anthropic)", err)
	anthropic := store.ProviderRevocation{OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "anthropic", State: store.RevocationUnconfirmed,
		Attempts: 5, LastError: "503 from provider", CreatedAt: utc(base), UpdatedAt: utc(base)}

	got, err = f.s.GetProviderRevocation(f.ctx, f.orgA.ID, l.ID, "openai")
	noErr(t, "GetProviderRevocation", err)
	if d := jsonDiff(openai, got); d != "" {
		t.Errorf("GetProviderRevocation() mismatch (-want +got):\n%s", d)
	}
	list, err := f.s.ListProviderRevocations(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListProviderRevocations", err)
	if d := jsonDiff([]store.ProviderRevocation{anthropic, openai}, list); d != "" {
		t.Errorf("ListProviderRevocations() mismatch (-want +got):\n%s", d)
	}

	// Replacing without a confirmation drops the old one.
	got, err = f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgA.ID, LockoutID: l.ID, Provider: "anthropic", State: store.RevocationPending, Attempts: 1, At: later,
	})
	noErr(t, "PutProviderRevocation(anthropic again)", err)
	anthropic.State, anthropic.Attempts, anthropic.LastError, anthropic.UpdatedAt = store.RevocationPending, 1, "", utc(later)
	if d := jsonDiff(anthropic, got); d != "" {
		t.Errorf("PutProviderRevocation(anthropic again) mismatch (-want +got):\n%s", d)
	}

	// Org B cannot write, read or list A's lockout's revocations.
	_, err = f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgB.ID, LockoutID: l.ID, Provider: "openai", State: store.RevocationPending, At: base,
	})
	wantErr(t, "PutProviderRevocation(B, A's lockout)", err, store.ErrNotFound)
	_, err = f.s.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{
		OrgID: f.orgA.ID, LockoutID: "lck_missing", Provider: "openai", State: store.RevocationPending, At: base,
	})
	wantErr(t, "PutProviderRevocation(unknown lockout)", err, store.ErrNotFound)
	_, err = f.s.GetProviderRevocation(f.ctx, f.orgB.ID, l.ID, "openai")
	wantErr(t, "GetProviderRevocation(B, A's lockout)", err, store.ErrNotFound)
	_, err = f.s.GetProviderRevocation(f.ctx, f.orgA.ID, l.ID, "gemini")
	wantErr(t, "GetProviderRevocation(unknown provider)", err, store.ErrNotFound)
	list, err = f.s.ListProviderRevocations(f.ctx, f.orgB.ID, l.ID)
	noErr(t, "ListProviderRevocations(B, A's lockout)", err)
	if len(list) != 0 {
		t.Errorf("ListProviderRevocations(B, A's lockout) = %d records; want none", len(list))
	}
	got, err = f.s.GetProviderRevocation(f.ctx, f.orgA.ID, l.ID, "openai")
	noErr(t, "GetProviderRevocation", err)
	if d := jsonDiff(openai, got); d != "" {
		t.Errorf("GetProviderRevocation() after refused puts mismatch (-want +got):\n%s", d)
	}
}

// testLockoutTriggers: triggers are listed oldest first, in the order
// recorded when their times are equal, and stay in their org.
func testLockoutTriggers(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "trig@a.example")
	ub := f.user(t, f.orgB.ID, "trig@b.example")
	l := f.lockout(t, f.orgA.ID, ua.ID)
	lb := f.lockout(t, f.orgB.ID, ub.ID)

	adds := []store.AddLockoutTriggerParams{
		{Source: "okta", Evidence: json.RawMessage(`{"event_id": "evt_2", "type": "user.deactivate"}`), At: base.Add(2 * time.Minute)},
		{Source: "api:key_1", At: base},
		{Source: "scim", Evidence: json.RawMessage(`{"payload_sha256": "ab12"}`), At: base.Add(time.Minute)},
		{Source: "same-time-first", Evidence: json.RawMessage(`[1, 2, 3]`), At: base.Add(3 * time.Minute)},
		{Source: "same-time-second", At: base.Add(3 * time.Minute)},
	}
	for _, a := range adds {
		a.OrgID, a.LockoutID = f.orgA.ID, l.ID
		noErr(t, "AddLockoutTrigger("+a.Source+")", f.s.AddLockoutTrigger(f.ctx, a))
	}
	noErr(t, "AddLockoutTrigger(B)", f.s.AddLockoutTrigger(f.ctx, store.AddLockoutTriggerParams{
		OrgID: f.orgB.ID, LockoutID: lb.ID, Source: "b", At: base,
	}))
	var want []store.LockoutTrigger
	for _, i := range []int{1, 2, 0, 3, 4} {
		a := adds[i]
		want = append(want, store.LockoutTrigger{OrgID: f.orgA.ID, LockoutID: l.ID, Source: a.Source, Evidence: a.Evidence, At: utc(a.At)})
	}
	got, err := f.s.ListLockoutTriggers(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutTriggers", err)
	if d := jsonDiff(want, got); d != "" {
		t.Errorf("ListLockoutTriggers() mismatch (-want +got):\n%s", d)
	}
	if got[0].Evidence != nil {
		t.Errorf("ListLockoutTriggers()[0].Evidence = %s; want nil (none given)", got[0].Evidence)
	}

	err = f.s.AddLockoutTrigger(f.ctx, store.AddLockoutTriggerParams{OrgID: f.orgB.ID, LockoutID: l.ID, Source: "x", At: base})
	wantErr(t, "AddLockoutTrigger(B, A's lockout)", err, store.ErrNotFound)
	err = f.s.AddLockoutTrigger(f.ctx, store.AddLockoutTriggerParams{OrgID: f.orgA.ID, LockoutID: "lck_missing", Source: "x", At: base})
	wantErr(t, "AddLockoutTrigger(unknown lockout)", err, store.ErrNotFound)
	for _, c := range []struct{ org, lockout string }{{f.orgB.ID, l.ID}, {f.orgA.ID, lb.ID}} {
		got, err := f.s.ListLockoutTriggers(f.ctx, c.org, c.lockout)
		noErr(t, "ListLockoutTriggers", err)
		if len(got) != 0 {
			t.Errorf("ListLockoutTriggers(%s, %s) = %d triggers; want none", c.org, c.lockout, len(got))
		}
	}
	got, err = f.s.ListLockoutTriggers(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutTriggers", err)
	if len(got) != len(want) {
		t.Errorf("ListLockoutTriggers() after refused adds = %d triggers; want %d", len(got), len(want))
	}
}

// testProviderConnections: a put creates or replaces the connection but
// keeps its creation time; connections are listed by provider, deleted
// once, and stay in their org.
func testProviderConnections(t *testing.T, f *fixture) {
	got, err := f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: f.orgA.ID, Provider: "openai", SealedKey: []byte{0, 1, 2, 0xff}, KeyHint: "…abcd", At: base,
	})
	noErr(t, "PutProviderConnection(create)", err)
	openai := store.ProviderConnection{OrgID: f.orgA.ID, Provider: "openai", SealedKey: []byte{0, 1, 2, 0xff}, KeyHint: "…abcd",
		CreatedAt: utc(base), UpdatedAt: utc(base)}
	if d := diff(openai, got); d != "" {
		t.Errorf("PutProviderConnection(create) mismatch (-want +got):\n%s", d)
	}

	later := base.Add(time.Hour)
	got, err = f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: f.orgA.ID, Provider: "openai", SealedKey: []byte("sealed-2"), KeyHint: "…wxyz",
		BaseURL: "https://llm-proxy.example.com/v1", At: later, ValidatedAt: later,
	})
	noErr(t, "PutProviderConnection(replace)", err)
	openai.SealedKey, openai.KeyHint, openai.BaseURL, openai.UpdatedAt, openai.ValidatedAt =
		[]byte("sealed-2"), "…wxyz", "https://llm-proxy.example.com/v1", utc(later), utc(later)
	if d := diff(openai, got); d != "" {
		t.Errorf("PutProviderConnection(replace) mismatch (-want +got):\n%s", d)
	}
	anthropic, err := f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: f.orgA.ID, Provider: "anthropic", SealedKey: []byte("sealed-a"), KeyHint: "…1234", At: base, ValidatedAt: base,
	})
	noErr(t, "PutProviderConnection(anthropic)", err)
	openaiB, err := f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: f.orgB.ID, Provider: "openai", SealedKey: []byte("sealed-b"), KeyHint: "…b", At: base,
	})
	noErr(t, "PutProviderConnection(B)", err)
	_, err = f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{
		OrgID: "org_missing", Provider: "openai", SealedKey: []byte("x"), At: base,
	})
	wantErr(t, "PutProviderConnection(unknown org)", err, store.ErrNotFound)

	got, err = f.s.GetProviderConnection(f.ctx, f.orgA.ID, "openai")
	noErr(t, "GetProviderConnection", err)
	if d := diff(openai, got); d != "" {
		t.Errorf("GetProviderConnection() mismatch (-want +got):\n%s", d)
	}
	list, err := f.s.ListProviderConnections(f.ctx, f.orgA.ID)
	noErr(t, "ListProviderConnections(A)", err)
	if d := diff([]store.ProviderConnection{anthropic, openai}, list); d != "" {
		t.Errorf("ListProviderConnections(A) mismatch (-want +got):\n%s", d)
	}
	list, err = f.s.ListProviderConnections(f.ctx, f.orgB.ID)
	noErr(t, "ListProviderConnections(B)", err)
	if d := diff([]store.ProviderConnection{openaiB}, list); d != "" {
		t.Errorf("ListProviderConnections(B) mismatch (-want +got):\n%s", d)
	}
	list, err = f.s.ListProviderConnections(f.ctx, "org_missing")
	noErr(t, "ListProviderConnections(unknown org)", err)
	if len(list) != 0 {
		t.Errorf("ListProviderConnections(unknown org) = %d; want none", len(list))
	}

	// B has no anthropic connection, whatever A has.
	_, err = f.s.GetProviderConnection(f.ctx, f.orgB.ID, "anthropic")
	wantErr(t, "GetProviderConnection(B, anthropic)", err, store.ErrNotFound)
	wantErr(t, "DeleteProviderConnection(B, anthropic)", f.s.DeleteProviderConnection(f.ctx, f.orgB.ID, "anthropic"), store.ErrNotFound)
	if _, err := f.s.GetProviderConnection(f.ctx, f.orgA.ID, "anthropic"); err != nil {
		t.Errorf("GetProviderConnection(A, anthropic) after B's delete: %v", err)
	}

	noErr(t, "DeleteProviderConnection(A, openai)", f.s.DeleteProviderConnection(f.ctx, f.orgA.ID, "openai"))
	_, err = f.s.GetProviderConnection(f.ctx, f.orgA.ID, "openai")
	wantErr(t, "GetProviderConnection(deleted)", err, store.ErrNotFound)
	wantErr(t, "DeleteProviderConnection(deleted)", f.s.DeleteProviderConnection(f.ctx, f.orgA.ID, "openai"), store.ErrNotFound)
	got, err = f.s.GetProviderConnection(f.ctx, f.orgB.ID, "openai")
	noErr(t, "GetProviderConnection(B, openai) after A's delete", err)
	if d := diff(openaiB, got); d != "" {
		t.Errorf("GetProviderConnection(B, openai) after A's delete mismatch (-want +got):\n%s", d)
	}
	list, err = f.s.ListProviderConnections(f.ctx, f.orgA.ID)
	noErr(t, "ListProviderConnections(A)", err)
	if d := diff([]store.ProviderConnection{anthropic}, list); d != "" {
		t.Errorf("ListProviderConnections(A) after delete mismatch (-want +got):\n%s", d)
	}
}

// newestFirst sorts lockouts the way ListLockoutsPage pages them.
func newestFirst(ls []store.Lockout) []store.Lockout {
	out := slices.Clone(ls)
	slices.SortFunc(out, func(a, b store.Lockout) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// walkLockouts follows ListLockoutsPage's cursors from p to the last page
// and returns every lockout seen. Every page but the last must be full, and
// the last must have no cursor.
func (f *fixture) walkLockouts(t *testing.T, p store.ListLockoutsParams) []store.Lockout {
	t.Helper()
	limit := p.Limit
	if limit == 0 {
		limit = 50
	}
	var all []store.Lockout
	for pages := 1; ; pages++ {
		if pages > 1000 {
			t.Fatalf("ListLockoutsPage(%+v) did not end after 1000 pages", p)
		}
		page, err := f.s.ListLockoutsPage(f.ctx, p)
		noErr(t, "ListLockoutsPage", err)
		all = append(all, page.Lockouts...)
		if page.NextCursor == "" {
			if len(page.Lockouts) > limit {
				t.Errorf("ListLockoutsPage(%+v) last page has %d lockouts; want at most %d", p, len(page.Lockouts), limit)
			}
			if len(page.Lockouts) == 0 && pages > 1 {
				t.Errorf("ListLockoutsPage(%+v) gave an empty last page after a cursor; want the cursor left off the page before", p)
			}
			return all
		}
		if len(page.Lockouts) != limit {
			t.Errorf("ListLockoutsPage(%+v) = %d lockouts with a next cursor; want a full page of %d", p, len(page.Lockouts), limit)
		}
		p.Cursor = page.NextCursor
	}
}

// testListLockoutsPage: pages run newest first by (created_at, id), cover
// every matching lockout exactly once whatever the page size, filter by
// state and user, and stay in their org.
func testListLockoutsPage(t *testing.T, f *fixture) {
	users := []store.User{f.user(t, f.orgA.ID, "page1@a.example"), f.user(t, f.orgA.ID, "page2@a.example")}
	ub := f.user(t, f.orgB.ID, "page@b.example")

	// 23 lockouts over two users, three to a creation time so that ties
	// fall across page boundaries. Only one lockout per user is open at a
	// time: each is overridden before the user's next, but the last two.
	const n = 23
	var all []store.Lockout
	for i := range n {
		u := users[i%2]
		at := base.Add(time.Duration(i/3) * time.Minute)
		l, created, err := f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: u.ID, Trigger: fmt.Sprint("t", i), CreatedAt: at})
		noErr(t, "CreateLockout", err)
		if !created {
			t.Fatalf("CreateLockout(#%d) created = false; want a new lockout", i)
		}
		if i < n-2 {
			l, err = f.s.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgA.ID, ID: l.ID, Reason: "r", Actor: "a", At: at})
			noErr(t, "OverrideLockout", err)
		}
		all = append(all, l)
	}
	lb := f.lockout(t, f.orgB.ID, ub.ID)
	all = newestFirst(all)
	filter := func(keep func(store.Lockout) bool) []store.Lockout {
		var out []store.Lockout
		for _, l := range all {
			if keep(l) {
				out = append(out, l)
			}
		}
		return out
	}

	tests := []struct {
		name   string
		params store.ListLockoutsParams
		want   []store.Lockout
	}{
		{"all, default limit", store.ListLockoutsParams{}, all},
		{"all, limit 1", store.ListLockoutsParams{Limit: 1}, all},
		{"all, limit 4", store.ListLockoutsParams{Limit: 4}, all},
		{"all, limit 5", store.ListLockoutsParams{Limit: 5}, all},
		{"all, limit 23", store.ListLockoutsParams{Limit: n}, all},
		{"all, limit 24", store.ListLockoutsParams{Limit: n + 1}, all},
		{"all, limit 500", store.ListLockoutsParams{Limit: 500}, all},
		{"open", store.ListLockoutsParams{State: store.LockoutOpen, Limit: 1},
			filter(func(l store.Lockout) bool { return l.State == store.LockoutOpen })},
		{"overridden", store.ListLockoutsParams{State: store.LockoutOverridden, Limit: 4},
			filter(func(l store.Lockout) bool { return l.State == store.LockoutOverridden })},
		{"user 1", store.ListLockoutsParams{UserID: users[0].ID, Limit: 5},
			filter(func(l store.Lockout) bool { return l.UserID == users[0].ID })},
		{"user 2 overridden", store.ListLockoutsParams{UserID: users[1].ID, State: store.LockoutOverridden, Limit: 3},
			filter(func(l store.Lockout) bool { return l.UserID == users[1].ID && l.State == store.LockoutOverridden })},
		{"A's user in org B", store.ListLockoutsParams{OrgID: f.orgB.ID, UserID: users[0].ID}, nil},
	}
	for _, tt := range tests {
		p := tt.params
		if p.OrgID == "" {
			p.OrgID = f.orgA.ID
		}
		got := f.walkLockouts(t, p)
		if d := diff(tt.want, got); d != "" {
			t.Errorf("ListLockoutsPage(%s) pages mismatch (-want +got):\n%s", tt.name, d)
		}
	}
	if open := filter(func(l store.Lockout) bool { return l.State == store.LockoutOpen }); len(open) != 2 {
		t.Fatalf("open lockouts = %d; want 2 (the test's own setup)", len(open))
	}

	// Org B sees only its own; an unknown org none.
	got := f.walkLockouts(t, store.ListLockoutsParams{OrgID: f.orgB.ID, Limit: 2})
	if d := diff([]store.Lockout{lb}, got); d != "" {
		t.Errorf("ListLockoutsPage(B) mismatch (-want +got):\n%s", d)
	}
	if got := f.walkLockouts(t, store.ListLockoutsParams{OrgID: "org_missing"}); len(got) != 0 {
		t.Errorf("ListLockoutsPage(unknown org) = %d lockouts; want none", len(got))
	}

	// A cursor the store did not issue is refused.
	for _, c := range []string{"not a cursor!", "bm9jb2xvbg"} {
		if _, err := f.s.ListLockoutsPage(f.ctx, store.ListLockoutsParams{OrgID: f.orgA.ID, Cursor: c}); err == nil {
			t.Errorf("ListLockoutsPage(cursor %q) error = nil; want an error", c)
		}
	}
}

// testListLockoutsPageLimits: the limit defaults to 50 and is clamped to
// 500.
func testListLockoutsPageLimits(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "limits@a.example")
	const n = 501
	// One transaction keeps a thousand writes quick on every backend.
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		for i := range n {
			at := base.Add(time.Duration(i) * time.Second)
			l, _, err := st.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: u.ID, Trigger: "t", CreatedAt: at})
			if err != nil {
				return err
			}
			if _, err := st.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgA.ID, ID: l.ID, At: at}); err != nil {
				return err
			}
		}
		return nil
	})
	noErr(t, "creating lockouts", err)

	for _, tt := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {499, 499}, {500, 500}, {501, 500}, {100000, 500}} {
		page, err := f.s.ListLockoutsPage(f.ctx, store.ListLockoutsParams{OrgID: f.orgA.ID, Limit: tt.limit})
		noErr(t, "ListLockoutsPage", err)
		if len(page.Lockouts) != tt.want || page.NextCursor == "" {
			t.Errorf("ListLockoutsPage(limit %d) = %d lockouts, cursor %q; want %d and a cursor", tt.limit, len(page.Lockouts), page.NextCursor, tt.want)
		}
	}
	if got := f.walkLockouts(t, store.ListLockoutsParams{OrgID: f.orgA.ID, Limit: 500}); len(got) != n {
		t.Errorf("ListLockoutsPage(limit 500) pages = %d lockouts; want %d", len(got), n)
	}
}

// testPipelineInTx: every PipelineStore method works inside InTx, sees the
// transaction's own writes, and keeps nothing when it rolls back.
func testPipelineInTx(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "ptx@a.example")
	u2 := f.user(t, f.orgA.ID, "ptx2@a.example")
	l := f.lockout(t, f.orgA.ID, u.ID)

	// everything writes through st with every method, reading back as it goes.
	everything := func(st store.Store, lockoutID string) error {
		if err := st.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{OrgID: f.orgA.ID, LockoutID: lockoutID, Steps: []string{"revoke", "lock"}, At: base}); err != nil {
			return err
		}
		// A nested InTx joins the transaction.
		err := st.InTx(f.ctx, func(inner store.Store, _ any) error {
			_, err := inner.UpdateLockoutStep(f.ctx, store.UpdateLockoutStepParams{OrgID: f.orgA.ID, LockoutID: lockoutID, Step: "revoke", State: store.StepRunning, Attempts: 1, At: base})
			return err
		})
		if err != nil {
			return err
		}
		if steps, err := st.ListLockoutSteps(f.ctx, f.orgA.ID, lockoutID); err != nil || len(steps) != 2 || steps[0].State != store.StepRunning {
			return fmt.Errorf("ListLockoutSteps inside InTx = %+v, %v; want revoke running, lock pending", steps, err)
		}
		if _, err := st.PutProviderRevocation(f.ctx, store.PutProviderRevocationParams{OrgID: f.orgA.ID, LockoutID: lockoutID, Provider: "openai", State: store.RevocationPending, At: base}); err != nil {
			return err
		}
		if _, err := st.GetProviderRevocation(f.ctx, f.orgA.ID, lockoutID, "openai"); err != nil {
			return err
		}
		if rs, err := st.ListProviderRevocations(f.ctx, f.orgA.ID, lockoutID); err != nil || len(rs) != 1 {
			return fmt.Errorf("ListProviderRevocations inside InTx = %d, %v; want 1", len(rs), err)
		}
		if err := st.AddLockoutTrigger(f.ctx, store.AddLockoutTriggerParams{OrgID: f.orgA.ID, LockoutID: lockoutID, Source: "api", At: base}); err != nil {
			return err
		}
		if trs, err := st.ListLockoutTriggers(f.ctx, f.orgA.ID, lockoutID); err != nil || len(trs) != 1 {
			return fmt.Errorf("ListLockoutTriggers inside InTx = %d, %v; want 1", len(trs), err)
		}
		for _, provider := range []string{"openai", "anthropic"} {
			if _, err := st.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{OrgID: f.orgA.ID, Provider: provider, SealedKey: []byte("k"), At: base}); err != nil {
				return err
			}
		}
		if _, err := st.GetProviderConnection(f.ctx, f.orgA.ID, "openai"); err != nil {
			return err
		}
		if err := st.DeleteProviderConnection(f.ctx, f.orgA.ID, "anthropic"); err != nil {
			return err
		}
		if cs, err := st.ListProviderConnections(f.ctx, f.orgA.ID); err != nil || len(cs) != 1 {
			return fmt.Errorf("ListProviderConnections inside InTx = %d, %v; want 1", len(cs), err)
		}
		if page, err := st.ListLockoutsPage(f.ctx, store.ListLockoutsParams{OrgID: f.orgA.ID}); err != nil || len(page.Lockouts) == 0 {
			return fmt.Errorf("ListLockoutsPage inside InTx = %d, %v; want lockouts", len(page.Lockouts), err)
		}
		return nil
	}

	// Rolled back: the lockout created inside and every pipeline row are gone.
	errAbort := errors.New("abort")
	var inner store.Lockout
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		var err error
		if inner, _, err = st.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: u2.ID, Trigger: "t", CreatedAt: base}); err != nil {
			return err
		}
		if err := st.InitLockoutSteps(f.ctx, store.InitLockoutStepsParams{OrgID: f.orgA.ID, LockoutID: inner.ID, Steps: []string{"revoke"}, At: base}); err != nil {
			return err
		}
		if err := everything(st, l.ID); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("InTx(abort) error = %v; want the fn's error", err)
	}
	for _, id := range []string{l.ID, inner.ID} {
		steps, err := f.s.ListLockoutSteps(f.ctx, f.orgA.ID, id)
		noErr(t, "ListLockoutSteps", err)
		if len(steps) != 0 {
			t.Errorf("after a rolled-back InTx, steps of %s = %d; want none", id, len(steps))
		}
	}
	if rs, err := f.s.ListProviderRevocations(f.ctx, f.orgA.ID, l.ID); err != nil || len(rs) != 0 {
		t.Errorf("after a rolled-back InTx, revocations = %d, %v; want none", len(rs), err)
	}
	if trs, err := f.s.ListLockoutTriggers(f.ctx, f.orgA.ID, l.ID); err != nil || len(trs) != 0 {
		t.Errorf("after a rolled-back InTx, triggers = %d, %v; want none", len(trs), err)
	}
	if cs, err := f.s.ListProviderConnections(f.ctx, f.orgA.ID); err != nil || len(cs) != 0 {
		t.Errorf("after a rolled-back InTx, connections = %d, %v; want none", len(cs), err)
	}

	// Committed: everything stays.
	noErr(t, "InTx(commit)", f.s.InTx(f.ctx, func(st store.Store, _ any) error { return everything(st, l.ID) }))
	steps, err := f.s.ListLockoutSteps(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "ListLockoutSteps", err)
	if d := diff([]string{"revoke", "lock"}, stepNames(steps)); d != "" || steps[0].State != store.StepRunning {
		t.Errorf("after a committed InTx, steps = %+v; want revoke running, lock pending", steps)
	}
	if _, err := f.s.GetProviderRevocation(f.ctx, f.orgA.ID, l.ID, "openai"); err != nil {
		t.Errorf("after a committed InTx, GetProviderRevocation: %v", err)
	}
	if trs, err := f.s.ListLockoutTriggers(f.ctx, f.orgA.ID, l.ID); err != nil || len(trs) != 1 {
		t.Errorf("after a committed InTx, triggers = %d, %v; want 1", len(trs), err)
	}
	if cs, err := f.s.ListProviderConnections(f.ctx, f.orgA.ID); err != nil || len(cs) != 1 || cs[0].Provider != "openai" {
		t.Errorf("after a committed InTx, connections = %+v, %v; want openai", cs, err)
	}
}
