// Package storetest is the conformance suite every store.Store backend runs:
// one set of tests, written against the interface, so the Postgres and SQLite
// stores cannot drift apart. A change to store semantics extends it first.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toktra/toktra/controlplane/store"
)

// Exercise runs the suite. newStore must return a fresh, empty store for the
// test it is given, and close it when that test ends (t.Cleanup). Subtests
// run in parallel, each with its own store.
func Exercise(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"Orgs", testOrgs},
		{"APIKeys", testAPIKeys},
		{"EnrollmentSecrets", testEnrollmentSecrets},
		{"Users", testUsers},
		{"Devices", testDevices},
		{"DeviceSerialUniqueness", testDeviceSerialUniqueness},
		{"DeviceState", testDeviceState},
		{"CommandSequences", testCommandSequences},
		{"CommandConcurrentInserts", testCommandConcurrentInserts},
		{"CommandSignFailure", testCommandSignFailure},
		{"CommandLifecycle", testCommandLifecycle},
		{"CommandOrgScoping", testCommandOrgScoping},
		{"CommandsByLockoutAndCounts", testCommandsByLockoutAndCounts},
		{"SubscribeCommands", testSubscribeCommands},
		{"Lockouts", testLockouts},
		{"Policy", testPolicy},
		{"Ping", testPing},
		{"InTx", testInTx},
		{"UsageCaptures", testUsageCaptures},
		{"LockoutSteps", testLockoutSteps},
		{"ProviderRevocations", testProviderRevocations},
		{"LockoutTriggers", testLockoutTriggers},
		{"ProviderConnections", testProviderConnections},
		{"ListLockoutsPage", testListLockoutsPage},
		{"ListLockoutsPageLimits", testListLockoutsPageLimits},
		{"PipelineInTx", testPipelineInTx},
		{"SCIMTokens", testSCIMTokens},
		{"SCIMUsers", testSCIMUsers},
		{"SCIMGroups", testSCIMGroups},
	}
	tests = append(tests, usageTests...)
	tests = append(tests, snapshotTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, setup(t, newStore))
		})
	}
	exerciseAudit(t, newStore)
	exerciseTriggers(t, newStore)
	exerciseCustody(t, newStore)
}

// base has nanoseconds and a non-UTC zone on purpose: stores keep UTC
// microseconds.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))

// fixture is what every test starts from: a fresh store with two orgs, so
// each test can check that org B's id never reaches org A's rows.
type fixture struct {
	s    store.Store
	ctx  context.Context
	orgA store.Org
	orgB store.Org
}

func setup(t *testing.T, newStore func(t *testing.T) store.Store) *fixture {
	t.Helper()
	f := &fixture{s: newStore(t), ctx: t.Context()}
	f.orgA = f.createOrg(t, "Org A")
	f.orgB = f.createOrg(t, "Org B")
	return f
}

func (f *fixture) createOrg(t *testing.T, name string) store.Org {
	t.Helper()
	o, err := f.s.CreateOrg(f.ctx, store.CreateOrgParams{Name: name, CreatedAt: base})
	if err != nil {
		t.Fatalf("CreateOrg(%q) error = %v", name, err)
	}
	return o
}

func (f *fixture) user(t *testing.T, orgID, email string) store.User {
	t.Helper()
	u, err := f.s.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: orgID, Email: email, Name: "N " + email, CreatedAt: base})
	if err != nil {
		t.Fatalf("UpsertUser(%s, %q) error = %v", orgID, email, err)
	}
	return u
}

func (f *fixture) device(t *testing.T, orgID, userID, serial string) store.Device {
	t.Helper()
	d, err := f.s.CreateDevice(f.ctx, store.CreateDeviceParams{
		OrgID: orgID, UserID: userID, Hostname: "host-" + serial, OS: "linux", OSVersion: "6.1",
		Arch: "amd64", Serial: serial, AgentVersion: "1.0.0", CreatedAt: base,
	})
	if err != nil {
		t.Fatalf("CreateDevice(%s, serial %q) error = %v", orgID, serial, err)
	}
	return d
}

func (f *fixture) lockout(t *testing.T, orgID, userID string) store.Lockout {
	t.Helper()
	l, _, err := f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: orgID, UserID: userID, Trigger: "test", CreatedAt: base})
	if err != nil {
		t.Fatalf("CreateLockout(%s, %s) error = %v", orgID, userID, err)
	}
	return l
}

// signedBytes is what the fake signer returns for a sequence, so tests can
// check the store kept exactly the bytes signed for the sequence it allocated.
func signedBytes(deviceID string, seq uint64) []byte {
	return fmt.Appendf(nil, "signed:%s:%d", deviceID, seq)
}

func (f *fixture) insert(t *testing.T, orgID, deviceID, lockoutID string, kind store.CommandKind) store.Command {
	t.Helper()
	c, err := f.s.InsertCommand(f.ctx, store.InsertCommandParams{
		OrgID: orgID, DeviceID: deviceID, Kind: kind, LockoutID: lockoutID,
		CreatedAt: base, ExpiresAt: base.Add(time.Hour),
		Sign: func(seq uint64) ([]byte, error) { return signedBytes(deviceID, seq), nil },
	})
	if err != nil {
		t.Fatalf("InsertCommand(%s, %s) error = %v", orgID, deviceID, err)
	}
	return c
}

// utc is what a store gives back for t: UTC, truncated to the microsecond.
func utc(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

func ptr[T any](v T) *T { return &v }

// cmpOpts compare times with Equal and insist on the UTC location the store
// contract promises.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool {
		return a.Equal(b) && a.Location() == b.Location()
	}),
}

func diff(want, got any) string { return cmp.Diff(want, got, cmpOpts...) }

// wantErr fails unless err is target (store.ErrNotFound, store.ErrConflict).
func wantErr(t *testing.T, call string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s error = %v; want %v", call, err, target)
	}
}

func noErr(t *testing.T, call string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s error = %v", call, err)
	}
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func testOrgs(t *testing.T, f *fixture) {
	want := store.Org{ID: f.orgA.ID, Name: "Org A", CreatedAt: utc(base)}
	if len(f.orgA.ID) < 5 || f.orgA.ID[:4] != "org_" {
		t.Errorf("CreateOrg().ID = %q; want an org_ id", f.orgA.ID)
	}
	if d := diff(want, f.orgA); d != "" {
		t.Errorf("CreateOrg() mismatch (-want +got):\n%s", d)
	}
	got, err := f.s.GetOrg(f.ctx, f.orgA.ID)
	noErr(t, "GetOrg", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetOrg() mismatch (-want +got):\n%s", d)
	}
	if f.orgA.ID == f.orgB.ID {
		t.Errorf("two orgs got the same id %s", f.orgA.ID)
	}
	_, err = f.s.GetOrg(f.ctx, "org_missing")
	wantErr(t, "GetOrg(missing)", err, store.ErrNotFound)
}

func testAPIKeys(t *testing.T, f *fixture) {
	expires := base.Add(24 * time.Hour)
	a, err := f.s.CreateAPIKey(f.ctx, store.CreateAPIKeyParams{
		OrgID: f.orgA.ID, Name: "ci", Scope: store.ScopeAdmin, Hash: hashOf("a"), CreatedAt: base, ExpiresAt: expires,
	})
	noErr(t, "CreateAPIKey(A)", err)
	want := store.APIKey{
		ID: a.ID, OrgID: f.orgA.ID, Name: "ci", Scope: store.ScopeAdmin, Hash: hashOf("a"),
		CreatedAt: utc(base), ExpiresAt: utc(expires),
	}
	if a.ID[:4] != "key_" {
		t.Errorf("CreateAPIKey().ID = %q; want a key_ id", a.ID)
	}
	if d := diff(want, a); d != "" {
		t.Errorf("CreateAPIKey() mismatch (-want +got):\n%s", d)
	}
	// No expiry: the zero time round-trips.
	b, err := f.s.CreateAPIKey(f.ctx, store.CreateAPIKeyParams{
		OrgID: f.orgB.ID, Name: "ro", Scope: store.ScopeReadOnly, Hash: hashOf("b"), CreatedAt: base,
	})
	noErr(t, "CreateAPIKey(B)", err)
	if !b.ExpiresAt.IsZero() {
		t.Errorf("CreateAPIKey(no expiry).ExpiresAt = %v; want zero", b.ExpiresAt)
	}

	got, err := f.s.GetAPIKeyByHash(f.ctx, hashOf("a"))
	noErr(t, "GetAPIKeyByHash(a)", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetAPIKeyByHash(a) mismatch (-want +got):\n%s", d)
	}
	got, err = f.s.GetAPIKeyByHash(f.ctx, hashOf("b"))
	noErr(t, "GetAPIKeyByHash(b)", err)
	if got.ID != b.ID || got.OrgID != f.orgB.ID {
		t.Errorf("GetAPIKeyByHash(b) = %s in %s; want %s in %s", got.ID, got.OrgID, b.ID, f.orgB.ID)
	}
	_, err = f.s.GetAPIKeyByHash(f.ctx, hashOf("nope"))
	wantErr(t, "GetAPIKeyByHash(unknown)", err, store.ErrNotFound)

	_, err = f.s.CreateAPIKey(f.ctx, store.CreateAPIKeyParams{OrgID: f.orgB.ID, Name: "dup", Scope: store.ScopeAdmin, Hash: hashOf("a"), CreatedAt: base})
	wantErr(t, "CreateAPIKey(duplicate hash)", err, store.ErrConflict)
	_, err = f.s.CreateAPIKey(f.ctx, store.CreateAPIKeyParams{OrgID: "org_missing", Name: "x", Scope: store.ScopeAdmin, Hash: hashOf("x"), CreatedAt: base})
	wantErr(t, "CreateAPIKey(unknown org)", err, store.ErrNotFound)

	list, err := f.s.ListAPIKeys(f.ctx, f.orgA.ID)
	noErr(t, "ListAPIKeys(A)", err)
	if d := diff([]store.APIKey{want}, list); d != "" {
		t.Errorf("ListAPIKeys(A) mismatch (-want +got):\n%s", d)
	}

	// Org B cannot revoke org A's key.
	wantErr(t, "RevokeAPIKey(B, A's key)", f.s.RevokeAPIKey(f.ctx, f.orgB.ID, a.ID, base), store.ErrNotFound)
	wantErr(t, "RevokeAPIKey(missing)", f.s.RevokeAPIKey(f.ctx, f.orgA.ID, "key_missing", base), store.ErrNotFound)
	got, err = f.s.GetAPIKeyByHash(f.ctx, hashOf("a"))
	noErr(t, "GetAPIKeyByHash(a)", err)
	if got.RevokedAt != nil {
		t.Fatalf("key revoked by another org's call: RevokedAt = %v", got.RevokedAt)
	}

	revokedAt := base.Add(time.Minute)
	noErr(t, "RevokeAPIKey", f.s.RevokeAPIKey(f.ctx, f.orgA.ID, a.ID, revokedAt))
	noErr(t, "RevokeAPIKey(again)", f.s.RevokeAPIKey(f.ctx, f.orgA.ID, a.ID, revokedAt.Add(time.Hour)))
	got, err = f.s.GetAPIKeyByHash(f.ctx, hashOf("a"))
	noErr(t, "GetAPIKeyByHash(revoked)", err)
	if d := diff(ptr(utc(revokedAt)), got.RevokedAt); d != "" {
		t.Errorf("RevokedAt after revoking twice mismatch (-want +got):\n%s", d)
	}
}

func testEnrollmentSecrets(t *testing.T, f *fixture) {
	expires := base.Add(7 * 24 * time.Hour)
	a, err := f.s.CreateEnrollmentSecret(f.ctx, store.CreateEnrollmentSecretParams{
		OrgID: f.orgA.ID, Name: "mdm", Hash: hashOf("a"), CreatedAt: base, ExpiresAt: expires,
	})
	noErr(t, "CreateEnrollmentSecret(A)", err)
	want := store.EnrollmentSecret{
		ID: a.ID, OrgID: f.orgA.ID, Name: "mdm", Hash: hashOf("a"), CreatedAt: utc(base), ExpiresAt: utc(expires),
	}
	if a.ID[:4] != "enr_" {
		t.Errorf("CreateEnrollmentSecret().ID = %q; want an enr_ id", a.ID)
	}
	if d := diff(want, a); d != "" {
		t.Errorf("CreateEnrollmentSecret() mismatch (-want +got):\n%s", d)
	}
	b, err := f.s.CreateEnrollmentSecret(f.ctx, store.CreateEnrollmentSecretParams{
		OrgID: f.orgB.ID, Name: "mdm", Hash: hashOf("b"), CreatedAt: base, ExpiresAt: expires,
	})
	noErr(t, "CreateEnrollmentSecret(B)", err)

	got, err := f.s.GetEnrollmentSecretByHash(f.ctx, hashOf("a"))
	noErr(t, "GetEnrollmentSecretByHash(a)", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetEnrollmentSecretByHash(a) mismatch (-want +got):\n%s", d)
	}
	got, err = f.s.GetEnrollmentSecretByHash(f.ctx, hashOf("b"))
	noErr(t, "GetEnrollmentSecretByHash(b)", err)
	if got.ID != b.ID || got.OrgID != f.orgB.ID {
		t.Errorf("GetEnrollmentSecretByHash(b) = %s in %s; want %s in %s", got.ID, got.OrgID, b.ID, f.orgB.ID)
	}
	_, err = f.s.GetEnrollmentSecretByHash(f.ctx, hashOf("nope"))
	wantErr(t, "GetEnrollmentSecretByHash(unknown)", err, store.ErrNotFound)
	_, err = f.s.CreateEnrollmentSecret(f.ctx, store.CreateEnrollmentSecretParams{OrgID: f.orgA.ID, Name: "dup", Hash: hashOf("b"), CreatedAt: base})
	wantErr(t, "CreateEnrollmentSecret(duplicate hash)", err, store.ErrConflict)
	_, err = f.s.CreateEnrollmentSecret(f.ctx, store.CreateEnrollmentSecretParams{OrgID: "org_missing", Name: "x", Hash: hashOf("x"), CreatedAt: base})
	wantErr(t, "CreateEnrollmentSecret(unknown org)", err, store.ErrNotFound)

	list, err := f.s.ListEnrollmentSecrets(f.ctx, f.orgA.ID)
	noErr(t, "ListEnrollmentSecrets(A)", err)
	if d := diff([]store.EnrollmentSecret{want}, list); d != "" {
		t.Errorf("ListEnrollmentSecrets(A) mismatch (-want +got):\n%s", d)
	}

	wantErr(t, "RevokeEnrollmentSecret(B, A's secret)", f.s.RevokeEnrollmentSecret(f.ctx, f.orgB.ID, a.ID, base), store.ErrNotFound)
	wantErr(t, "RevokeEnrollmentSecret(missing)", f.s.RevokeEnrollmentSecret(f.ctx, f.orgA.ID, "enr_missing", base), store.ErrNotFound)
	revokedAt := base.Add(time.Minute)
	noErr(t, "RevokeEnrollmentSecret", f.s.RevokeEnrollmentSecret(f.ctx, f.orgA.ID, a.ID, revokedAt))
	noErr(t, "RevokeEnrollmentSecret(again)", f.s.RevokeEnrollmentSecret(f.ctx, f.orgA.ID, a.ID, revokedAt.Add(time.Hour)))
	got, err = f.s.GetEnrollmentSecretByHash(f.ctx, hashOf("a"))
	noErr(t, "GetEnrollmentSecretByHash(revoked)", err)
	if d := diff(ptr(utc(revokedAt)), got.RevokedAt); d != "" {
		t.Errorf("RevokedAt after revoking twice mismatch (-want +got):\n%s", d)
	}
	got, err = f.s.GetEnrollmentSecretByHash(f.ctx, hashOf("b"))
	noErr(t, "GetEnrollmentSecretByHash(b)", err)
	if got.RevokedAt != nil {
		t.Errorf("org B's secret RevokedAt = %v; want nil", got.RevokedAt)
	}
}

func testUsers(t *testing.T, f *fixture) {
	u, err := f.s.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: f.orgA.ID, Email: "Ada.Lovelace@Example.COM", Name: "Ada", CreatedAt: base})
	noErr(t, "UpsertUser", err)
	want := store.User{ID: u.ID, OrgID: f.orgA.ID, Email: "ada.lovelace@example.com", Name: "Ada", CreatedAt: utc(base)}
	if u.ID[:4] != "usr_" {
		t.Errorf("UpsertUser().ID = %q; want a usr_ id", u.ID)
	}
	if d := diff(want, u); d != "" {
		t.Errorf("UpsertUser() mismatch (-want +got):\n%s", d)
	}

	tests := []struct {
		name     string
		email    string
		userName string
		wantName string
	}{
		{"same email, other case, empty name keeps name", "ADA.LOVELACE@example.com", "", "Ada"},
		{"non-empty name replaces", "ada.lovelace@example.com", "Augusta Ada King", "Augusta Ada King"},
		{"empty name again keeps the new name", "Ada.Lovelace@example.com", "", "Augusta Ada King"},
	}
	for _, tt := range tests {
		got, err := f.s.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: f.orgA.ID, Email: tt.email, Name: tt.userName, CreatedAt: base.Add(time.Hour)})
		noErr(t, "UpsertUser("+tt.name+")", err)
		w := want
		w.Name = tt.wantName
		if d := diff(w, got); d != "" {
			t.Errorf("UpsertUser(%s) mismatch (-want +got):\n%s", tt.name, d)
		}
	}
	want.Name = "Augusta Ada King"

	// The same email in org B is another user.
	ub, err := f.s.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: f.orgB.ID, Email: "ada.lovelace@example.com", Name: "B", CreatedAt: base})
	noErr(t, "UpsertUser(B)", err)
	if ub.ID == u.ID || ub.OrgID != f.orgB.ID {
		t.Errorf("UpsertUser(B) = %s in %s; want a new user in %s", ub.ID, ub.OrgID, f.orgB.ID)
	}
	_, err = f.s.UpsertUser(f.ctx, store.UpsertUserParams{OrgID: "org_missing", Email: "x@example.com", CreatedAt: base})
	wantErr(t, "UpsertUser(unknown org)", err, store.ErrNotFound)

	got, err := f.s.GetUser(f.ctx, f.orgA.ID, u.ID)
	noErr(t, "GetUser", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetUser() mismatch (-want +got):\n%s", d)
	}
	_, err = f.s.GetUser(f.ctx, f.orgB.ID, u.ID)
	wantErr(t, "GetUser(B, A's user)", err, store.ErrNotFound)

	got, err = f.s.GetUserByEmail(f.ctx, f.orgA.ID, "ADA.lovelace@EXAMPLE.com")
	noErr(t, "GetUserByEmail", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetUserByEmail() mismatch (-want +got):\n%s", d)
	}
	got, err = f.s.GetUserByEmail(f.ctx, f.orgB.ID, "ada.lovelace@example.com")
	noErr(t, "GetUserByEmail(B)", err)
	if got.ID != ub.ID {
		t.Errorf("GetUserByEmail(B).ID = %s; want %s", got.ID, ub.ID)
	}
	_, err = f.s.GetUserByEmail(f.ctx, f.orgA.ID, "nobody@example.com")
	wantErr(t, "GetUserByEmail(unknown)", err, store.ErrNotFound)

	other := f.user(t, f.orgA.ID, "bob@example.com")
	list, err := f.s.ListUsers(f.ctx, f.orgA.ID)
	noErr(t, "ListUsers(A)", err)
	if d := diff(sortedIDs(u.ID, other.ID), ids(list, func(u store.User) string { return u.ID })); d != "" {
		t.Errorf("ListUsers(A) ids mismatch (-want +got):\n%s", d)
	}
	list, err = f.s.ListUsers(f.ctx, "org_missing")
	noErr(t, "ListUsers(unknown org)", err)
	if len(list) != 0 {
		t.Errorf("ListUsers(unknown org) = %d users; want none", len(list))
	}
}

// ids returns the sorted ids of a list, for order-insensitive comparisons.
func ids[T any](list []T, id func(T) string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, id(v))
	}
	sort.Strings(out)
	return out
}

func sortedIDs(s ...string) []string {
	sort.Strings(s)
	return s
}

func deviceID(d store.Device) string { return d.ID }

func testDevices(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "a@example.com")
	ub := f.user(t, f.orgB.ID, "b@example.com")
	d, err := f.s.CreateDevice(f.ctx, store.CreateDeviceParams{
		OrgID: f.orgA.ID, UserID: ua.ID, Hostname: "laptop", OS: "darwin", OSVersion: "15.1",
		Arch: "arm64", Serial: "C02X", AgentVersion: "1.2.3", CreatedAt: base,
	})
	noErr(t, "CreateDevice", err)
	want := store.Device{
		ID: d.ID, OrgID: f.orgA.ID, UserID: ua.ID, Hostname: "laptop", OS: "darwin", OSVersion: "15.1",
		Arch: "arm64", Serial: "C02X", AgentVersion: "1.2.3", CreatedAt: utc(base), LockState: store.LockStateUnknown,
	}
	if d.ID[:4] != "dev_" {
		t.Errorf("CreateDevice().ID = %q; want a dev_ id", d.ID)
	}
	if delta := diff(want, d); delta != "" {
		t.Errorf("CreateDevice() mismatch (-want +got):\n%s", delta)
	}
	got, err := f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetDevice() mismatch (-want +got):\n%s", delta)
	}
	_, err = f.s.GetDevice(f.ctx, f.orgB.ID, d.ID)
	wantErr(t, "GetDevice(B, A's device)", err, store.ErrNotFound)

	// A device cannot belong to a user of another org, or to nobody known.
	_, err = f.s.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: f.orgA.ID, UserID: ub.ID, Hostname: "x", Serial: "X1", CreatedAt: base})
	wantErr(t, "CreateDevice(A, B's user)", err, store.ErrNotFound)
	_, err = f.s.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: f.orgA.ID, UserID: "usr_missing", Hostname: "x", Serial: "X2", CreatedAt: base})
	wantErr(t, "CreateDevice(unknown user)", err, store.ErrNotFound)
	_, err = f.s.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: "org_missing", Hostname: "x", Serial: "X3", CreatedAt: base})
	wantErr(t, "CreateDevice(unknown org)", err, store.ErrNotFound)
	// A device without a user is allowed (a shared machine).
	shared := f.device(t, f.orgA.ID, "", "SHARED")
	if shared.UserID != "" {
		t.Errorf("CreateDevice(no user).UserID = %q; want empty", shared.UserID)
	}
	second := f.device(t, f.orgA.ID, ua.ID, "C03Y")
	devB := f.device(t, f.orgB.ID, ub.ID, "C02X")

	// Certificates.
	notAfter := base.Add(30 * 24 * time.Hour)
	noErr(t, "SetDeviceCert", f.s.SetDeviceCert(f.ctx, store.SetDeviceCertParams{OrgID: f.orgA.ID, DeviceID: d.ID, CertSerial: "0a1b", CertNotAfter: notAfter}))
	wantErr(t, "SetDeviceCert(B, A's device)",
		f.s.SetDeviceCert(f.ctx, store.SetDeviceCertParams{OrgID: f.orgB.ID, DeviceID: d.ID, CertSerial: "evil", CertNotAfter: notAfter}), store.ErrNotFound)
	want.CertSerial, want.CertNotAfter = "0a1b", utc(notAfter)

	// Connection.
	connectedAt := base.Add(time.Minute)
	noErr(t, "SetDeviceConnected(true)", f.s.SetDeviceConnected(f.ctx, f.orgA.ID, d.ID, true, connectedAt))
	want.Connected, want.LastSeenAt = true, ptr(utc(connectedAt))
	got, err = f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetDevice() after cert and connect mismatch (-want +got):\n%s", delta)
	}
	closedAt := base.Add(2 * time.Minute)
	noErr(t, "SetDeviceConnected(false)", f.s.SetDeviceConnected(f.ctx, f.orgA.ID, d.ID, false, closedAt))
	want.Connected, want.LastSeenAt = false, ptr(utc(closedAt))
	wantErr(t, "SetDeviceConnected(B, A's device)", f.s.SetDeviceConnected(f.ctx, f.orgB.ID, d.ID, true, closedAt), store.ErrNotFound)
	got, err = f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetDevice() after disconnect mismatch (-want +got):\n%s", delta)
	}

	// Listing.
	listTests := []struct {
		name string
		p    store.ListDevicesParams
		want []string
	}{
		{"org A", store.ListDevicesParams{OrgID: f.orgA.ID}, sortedIDs(d.ID, shared.ID, second.ID)},
		{"org B", store.ListDevicesParams{OrgID: f.orgB.ID}, sortedIDs(devB.ID)},
		{"org A, user", store.ListDevicesParams{OrgID: f.orgA.ID, UserID: ua.ID}, sortedIDs(d.ID, second.ID)},
		{"org B, A's user", store.ListDevicesParams{OrgID: f.orgB.ID, UserID: ua.ID}, []string{}},
		{"unknown org", store.ListDevicesParams{OrgID: "org_missing"}, []string{}},
	}
	for _, tt := range listTests {
		list, err := f.s.ListDevices(f.ctx, tt.p)
		noErr(t, "ListDevices("+tt.name+")", err)
		if delta := diff(tt.want, ids(list, deviceID)); delta != "" {
			t.Errorf("ListDevices(%s) ids mismatch (-want +got):\n%s", tt.name, delta)
		}
	}

	// Revocation.
	wantErr(t, "RevokeDevice(B, A's device)", f.s.RevokeDevice(f.ctx, f.orgB.ID, second.ID, base), store.ErrNotFound)
	wantErr(t, "RevokeDevice(missing)", f.s.RevokeDevice(f.ctx, f.orgA.ID, "dev_missing", base), store.ErrNotFound)
	revokedAt := base.Add(time.Hour)
	noErr(t, "RevokeDevice", f.s.RevokeDevice(f.ctx, f.orgA.ID, second.ID, revokedAt))
	noErr(t, "RevokeDevice(again)", f.s.RevokeDevice(f.ctx, f.orgA.ID, second.ID, revokedAt.Add(time.Hour)))
	got, err = f.s.GetDevice(f.ctx, f.orgA.ID, second.ID)
	noErr(t, "GetDevice(revoked)", err)
	if delta := diff(ptr(utc(revokedAt)), got.RevokedAt); delta != "" {
		t.Errorf("RevokedAt after revoking twice mismatch (-want +got):\n%s", delta)
	}
	for _, tt := range []struct {
		name string
		p    store.ListDevicesParams
		want []string
	}{
		{"without revoked", store.ListDevicesParams{OrgID: f.orgA.ID, UserID: ua.ID}, sortedIDs(d.ID)},
		{"with revoked", store.ListDevicesParams{OrgID: f.orgA.ID, UserID: ua.ID, IncludeRevoked: true}, sortedIDs(d.ID, second.ID)},
	} {
		list, err := f.s.ListDevices(f.ctx, tt.p)
		noErr(t, "ListDevices("+tt.name+")", err)
		if delta := diff(tt.want, ids(list, deviceID)); delta != "" {
			t.Errorf("ListDevices(%s) ids mismatch (-want +got):\n%s", tt.name, delta)
		}
	}
}

func testDeviceSerialUniqueness(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "a@example.com")
	first := f.device(t, f.orgA.ID, ua.ID, "SN1")
	create := func(orgID, userID, serial string) error {
		_, err := f.s.CreateDevice(f.ctx, store.CreateDeviceParams{OrgID: orgID, UserID: userID, Hostname: "h", Serial: serial, CreatedAt: base})
		return err
	}
	wantErr(t, "CreateDevice(same org, same serial)", create(f.orgA.ID, ua.ID, "SN1"), store.ErrConflict)
	wantErr(t, "CreateDevice(same org, same serial, no user)", create(f.orgA.ID, "", "SN1"), store.ErrConflict)
	noErr(t, "CreateDevice(other org, same serial)", create(f.orgB.ID, "", "SN1"))
	noErr(t, "CreateDevice(empty serial)", create(f.orgA.ID, ua.ID, ""))
	noErr(t, "CreateDevice(empty serial again)", create(f.orgA.ID, ua.ID, ""))
	// Once revoked, the machine may enroll again.
	noErr(t, "RevokeDevice", f.s.RevokeDevice(f.ctx, f.orgA.ID, first.ID, base))
	noErr(t, "CreateDevice(serial of a revoked device)", create(f.orgA.ID, ua.ID, "SN1"))
	wantErr(t, "CreateDevice(serial re-enrolled)", create(f.orgA.ID, ua.ID, "SN1"), store.ErrConflict)
}

func testDeviceState(t *testing.T, f *fixture) {
	d := f.device(t, f.orgA.ID, "", "SN1")
	at := base.Add(time.Minute)
	p := store.RecordDeviceStateParams{
		OrgID: f.orgA.ID, DeviceID: d.ID, AgentVersion: "1.3.0",
		Enforcers:   []string{"nftables", "ebpf-cgroup"},
		Unsupported: map[string]string{"wfp": "not windows", "pf": "not macOS"},
		Locked:      true, EnforcementActive: true, LastAppliedSeq: 7, At: at,
	}
	noErr(t, "RecordDeviceState", f.s.RecordDeviceState(f.ctx, p))
	got, err := f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	want := d
	want.AgentVersion = "1.3.0"
	want.Enforcers = []string{"nftables", "ebpf-cgroup"}
	want.Unsupported = map[string]string{"wfp": "not windows", "pf": "not macOS"}
	want.LockState = store.LockStateLocked
	want.EnforcementActive = true
	want.LastAppliedSeq = 7
	want.LastSeenAt = ptr(utc(at))
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetDevice() after RecordDeviceState mismatch (-want +got):\n%s", delta)
	}

	// Another org's id changes nothing.
	evil := p
	evil.OrgID, evil.Locked, evil.Enforcers = f.orgB.ID, false, nil
	wantErr(t, "RecordDeviceState(B, A's device)", f.s.RecordDeviceState(f.ctx, evil), store.ErrNotFound)

	// Unlocked, nothing enforced: empty lists and maps read back empty.
	p.Locked, p.EnforcementActive, p.Enforcers, p.Unsupported, p.LastAppliedSeq = false, false, nil, map[string]string{}, 8
	noErr(t, "RecordDeviceState(unlocked)", f.s.RecordDeviceState(f.ctx, p))
	got, err = f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if got.LockState != store.LockStateUnlocked || got.EnforcementActive || len(got.Enforcers) != 0 || len(got.Unsupported) != 0 || got.LastAppliedSeq != 8 {
		t.Errorf("GetDevice() after unlocked state = lock %s, active %t, enforcers %q, unsupported %v, applied %d; want unlocked, false, none, none, 8",
			got.LockState, got.EnforcementActive, got.Enforcers, got.Unsupported, got.LastAppliedSeq)
	}
	wantErr(t, "RecordDeviceState(missing)", f.s.RecordDeviceState(f.ctx, store.RecordDeviceStateParams{OrgID: f.orgA.ID, DeviceID: "dev_missing", At: at}), store.ErrNotFound)
}

func testCommandSequences(t *testing.T, f *fixture) {
	d1 := f.device(t, f.orgA.ID, "", "SN1")
	d2 := f.device(t, f.orgA.ID, "", "SN2")
	var signedWith []uint64
	insert := func(d store.Device) store.Command {
		t.Helper()
		c, err := f.s.InsertCommand(f.ctx, store.InsertCommandParams{
			OrgID: f.orgA.ID, DeviceID: d.ID, Kind: store.CommandLock, CreatedAt: base, ExpiresAt: base.Add(time.Hour),
			Sign: func(seq uint64) ([]byte, error) {
				signedWith = append(signedWith, seq)
				return signedBytes(d.ID, seq), nil
			},
		})
		noErr(t, "InsertCommand", err)
		return c
	}
	for i, tt := range []struct {
		dev  store.Device
		want uint64
	}{
		{d1, 1}, {d1, 2}, {d2, 1}, {d1, 3}, {d2, 2},
	} {
		c := insert(tt.dev)
		if c.Seq != tt.want {
			t.Errorf("insert %d on %s: Seq = %d; want %d", i, tt.dev.Hostname, c.Seq, tt.want)
		}
		if got := signedWith[len(signedWith)-1]; got != c.Seq {
			t.Errorf("insert %d: Sign called with %d; stored as %d", i, got, c.Seq)
		}
		if !bytes.Equal(c.Signed, signedBytes(tt.dev.ID, c.Seq)) {
			t.Errorf("insert %d: Signed = %q; want %q", i, c.Signed, signedBytes(tt.dev.ID, c.Seq))
		}
		want := store.Command{
			OrgID: f.orgA.ID, DeviceID: tt.dev.ID, Seq: tt.want, Kind: store.CommandLock,
			Signed: signedBytes(tt.dev.ID, tt.want), State: store.CommandPending,
			CreatedAt: utc(base), ExpiresAt: utc(base.Add(time.Hour)),
		}
		got, err := f.s.GetCommand(f.ctx, f.orgA.ID, tt.dev.ID, tt.want)
		noErr(t, "GetCommand", err)
		if delta := diff(want, got); delta != "" {
			t.Errorf("GetCommand(%d) mismatch (-want +got):\n%s", tt.want, delta)
		}
	}
	for _, tt := range []struct {
		dev  store.Device
		want uint64
	}{{d1, 3}, {d2, 2}} {
		got, err := f.s.GetDevice(f.ctx, f.orgA.ID, tt.dev.ID)
		noErr(t, "GetDevice", err)
		if got.LastSeq != tt.want {
			t.Errorf("GetDevice(%s).LastSeq = %d; want %d", tt.dev.Hostname, got.LastSeq, tt.want)
		}
	}
	_, err := f.s.GetCommand(f.ctx, f.orgA.ID, d1.ID, 4)
	wantErr(t, "GetCommand(unallocated seq)", err, store.ErrNotFound)
}

func testCommandConcurrentInserts(t *testing.T, f *fixture) {
	const workers, perWorker = 8, 5
	d := f.device(t, f.orgA.ID, "", "SN1")
	var (
		mu   sync.Mutex
		seqs []uint64
		wg   sync.WaitGroup
		errs = make(chan error, workers*perWorker)
	)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				c, err := f.s.InsertCommand(f.ctx, store.InsertCommandParams{
					OrgID: f.orgA.ID, DeviceID: d.ID, Kind: store.CommandLock, CreatedAt: base, ExpiresAt: base.Add(time.Hour),
					Sign: func(seq uint64) ([]byte, error) { return signedBytes(d.ID, seq), nil },
				})
				if err != nil {
					errs <- err
					continue
				}
				if !bytes.Equal(c.Signed, signedBytes(d.ID, c.Seq)) {
					errs <- fmt.Errorf("command %d stored bytes signed for another sequence: %q", c.Seq, c.Signed)
				}
				mu.Lock()
				seqs = append(seqs, c.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent InsertCommand error = %v", err)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	want := make([]uint64, workers*perWorker)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if delta := diff(want, seqs); delta != "" {
		t.Errorf("sequences from concurrent inserts are not 1..%d, each once (-want +got):\n%s", len(want), delta)
	}
	got, err := f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if got.LastSeq != uint64(len(want)) {
		t.Errorf("GetDevice().LastSeq = %d; want %d", got.LastSeq, len(want))
	}
	unacked, err := f.s.ListUnackedCommands(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "ListUnackedCommands", err)
	if len(unacked) != len(want) {
		t.Errorf("ListUnackedCommands() = %d commands; want %d", len(unacked), len(want))
	}
}

func testCommandSignFailure(t *testing.T, f *fixture) {
	d := f.device(t, f.orgA.ID, "", "SN1")
	first := f.insert(t, f.orgA.ID, d.ID, "", store.CommandLock)
	errSign := errors.New("signing key unavailable")
	var calledWith uint64
	_, err := f.s.InsertCommand(f.ctx, store.InsertCommandParams{
		OrgID: f.orgA.ID, DeviceID: d.ID, Kind: store.CommandUnlock, CreatedAt: base, ExpiresAt: base.Add(time.Hour),
		Sign: func(seq uint64) ([]byte, error) { calledWith = seq; return nil, errSign },
	})
	if !errors.Is(err, errSign) {
		t.Errorf("InsertCommand(failing Sign) error = %v; want %v", err, errSign)
	}
	if calledWith != first.Seq+1 {
		t.Errorf("failing Sign called with %d; want %d", calledWith, first.Seq+1)
	}
	_, err = f.s.GetCommand(f.ctx, f.orgA.ID, d.ID, first.Seq+1)
	wantErr(t, "GetCommand(seq of failed insert)", err, store.ErrNotFound)
	got, err := f.s.GetDevice(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "GetDevice", err)
	if got.LastSeq != first.Seq {
		t.Errorf("GetDevice().LastSeq after failed Sign = %d; want %d (rolled back)", got.LastSeq, first.Seq)
	}
	// The rolled-back sequence is the next one used.
	next := f.insert(t, f.orgA.ID, d.ID, "", store.CommandUnlock)
	if next.Seq != first.Seq+1 {
		t.Errorf("InsertCommand() after failed Sign: Seq = %d; want %d", next.Seq, first.Seq+1)
	}
	unacked, err := f.s.ListUnackedCommands(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "ListUnackedCommands", err)
	if len(unacked) != 2 {
		t.Errorf("ListUnackedCommands() = %d commands; want 2", len(unacked))
	}
}

func testCommandLifecycle(t *testing.T, f *fixture) {
	d := f.device(t, f.orgA.ID, "", "SN1")
	c1 := f.insert(t, f.orgA.ID, d.ID, "", store.CommandLock)
	c2 := f.insert(t, f.orgA.ID, d.ID, "", store.CommandPolicyUpdate)
	c3 := f.insert(t, f.orgA.ID, d.ID, "", store.CommandUnlock)
	c4 := f.insert(t, f.orgA.ID, d.ID, "", store.CommandLock)

	deliveredAt := base.Add(time.Second)
	noErr(t, "MarkCommandDelivered(1)", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d.ID, c1.Seq, deliveredAt))
	// Delivering twice keeps the first time.
	noErr(t, "MarkCommandDelivered(1 again)", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d.ID, c1.Seq, deliveredAt.Add(time.Hour)))
	noErr(t, "MarkCommandDelivered(2)", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d.ID, c2.Seq, deliveredAt))
	wantErr(t, "MarkCommandDelivered(missing)", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d.ID, 99, deliveredAt), store.ErrNotFound)
	wantErr(t, "MarkCommandDelivered(B, A's command)", f.s.MarkCommandDelivered(f.ctx, f.orgB.ID, d.ID, c3.Seq, deliveredAt), store.ErrNotFound)

	got, err := f.s.GetCommand(f.ctx, f.orgA.ID, d.ID, c1.Seq)
	noErr(t, "GetCommand(1)", err)
	if got.State != store.CommandDelivered || diff(ptr(utc(deliveredAt)), got.DeliveredAt) != "" {
		t.Errorf("GetCommand(1) = state %s, delivered %v; want delivered at %v", got.State, got.DeliveredAt, utc(deliveredAt))
	}
	got, err = f.s.GetCommand(f.ctx, f.orgA.ID, d.ID, c3.Seq)
	noErr(t, "GetCommand(3)", err)
	if got.State != store.CommandPending || got.DeliveredAt != nil {
		t.Errorf("GetCommand(3) after another org's MarkCommandDelivered = state %s, delivered %v; want pending, nil", got.State, got.DeliveredAt)
	}

	// Acks: applied, rejected with reason and detail, and pending-to-acked.
	ackedAt := base.Add(2 * time.Second)
	applied, err := f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgA.ID, DeviceID: d.ID, Seq: c1.Seq, Applied: true, At: ackedAt})
	noErr(t, "AckCommand(1 applied)", err)
	want1 := c1
	want1.State, want1.DeliveredAt, want1.AckedAt = store.CommandApplied, ptr(utc(deliveredAt)), ptr(utc(ackedAt))
	if delta := diff(want1, applied); delta != "" {
		t.Errorf("AckCommand(1 applied) mismatch (-want +got):\n%s", delta)
	}
	rejected, err := f.s.AckCommand(f.ctx, store.AckCommandParams{
		OrgID: f.orgA.ID, DeviceID: d.ID, Seq: c2.Seq, Applied: false, Reason: "expired", Detail: "expired 3s ago", At: ackedAt,
	})
	noErr(t, "AckCommand(2 rejected)", err)
	want2 := c2
	want2.State, want2.Reason, want2.Detail = store.CommandRejected, "expired", "expired 3s ago"
	want2.DeliveredAt, want2.AckedAt = ptr(utc(deliveredAt)), ptr(utc(ackedAt))
	if delta := diff(want2, rejected); delta != "" {
		t.Errorf("AckCommand(2 rejected) mismatch (-want +got):\n%s", delta)
	}
	// Acking again changes nothing and returns the stored command.
	again, err := f.s.AckCommand(f.ctx, store.AckCommandParams{
		OrgID: f.orgA.ID, DeviceID: d.ID, Seq: c1.Seq, Applied: false, Reason: "late", Detail: "x", At: ackedAt.Add(time.Hour),
	})
	noErr(t, "AckCommand(1 again)", err)
	if delta := diff(want1, again); delta != "" {
		t.Errorf("AckCommand(1 again) mismatch (-want +got):\n%s", delta)
	}
	// Delivering an acked command is a no-op.
	noErr(t, "MarkCommandDelivered(acked)", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d.ID, c1.Seq, ackedAt.Add(time.Hour)))
	got, err = f.s.GetCommand(f.ctx, f.orgA.ID, d.ID, c1.Seq)
	noErr(t, "GetCommand(1)", err)
	if delta := diff(want1, got); delta != "" {
		t.Errorf("GetCommand(1) after late delivery mismatch (-want +got):\n%s", delta)
	}
	// Org B cannot ack org A's command.
	_, err = f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgB.ID, DeviceID: d.ID, Seq: c3.Seq, Applied: true, At: ackedAt})
	wantErr(t, "AckCommand(B, A's command)", err, store.ErrNotFound)
	_, err = f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgA.ID, DeviceID: d.ID, Seq: 99, Applied: true, At: ackedAt})
	wantErr(t, "AckCommand(missing)", err, store.ErrNotFound)
	// A pending command can be answered without a delivery record.
	pendingAck, err := f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgA.ID, DeviceID: d.ID, Seq: c4.Seq, Applied: true, At: ackedAt})
	noErr(t, "AckCommand(4 pending)", err)
	if pendingAck.State != store.CommandApplied || pendingAck.AckedAt == nil {
		t.Errorf("AckCommand(4 pending) = state %s, acked %v; want applied with a time", pendingAck.State, pendingAck.AckedAt)
	}

	unacked, err := f.s.ListUnackedCommands(f.ctx, f.orgA.ID, d.ID)
	noErr(t, "ListUnackedCommands", err)
	if delta := diff([]store.Command{c3}, unacked); delta != "" {
		t.Errorf("ListUnackedCommands() mismatch (-want +got):\n%s", delta)
	}
	unacked, err = f.s.ListUnackedCommands(f.ctx, f.orgB.ID, d.ID)
	noErr(t, "ListUnackedCommands(B)", err)
	if len(unacked) != 0 {
		t.Errorf("ListUnackedCommands(B, A's device) = %d commands; want none", len(unacked))
	}
}

func testCommandOrgScoping(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "a@example.com")
	ub := f.user(t, f.orgB.ID, "b@example.com")
	da := f.device(t, f.orgA.ID, ua.ID, "SN1")
	lb := f.lockout(t, f.orgB.ID, ub.ID)
	la := f.lockout(t, f.orgA.ID, ua.ID)
	signed := func(seq uint64) ([]byte, error) { return signedBytes(da.ID, seq), nil }

	tests := []struct {
		name string
		p    store.InsertCommandParams
	}{
		{"B's org, A's device", store.InsertCommandParams{OrgID: f.orgB.ID, DeviceID: da.ID, Kind: store.CommandLock, CreatedAt: base, Sign: signed}},
		{"unknown device", store.InsertCommandParams{OrgID: f.orgA.ID, DeviceID: "dev_missing", Kind: store.CommandLock, CreatedAt: base, Sign: signed}},
		{"B's lockout", store.InsertCommandParams{OrgID: f.orgA.ID, DeviceID: da.ID, LockoutID: lb.ID, Kind: store.CommandLock, CreatedAt: base, Sign: signed}},
	}
	for _, tt := range tests {
		_, err := f.s.InsertCommand(f.ctx, tt.p)
		wantErr(t, "InsertCommand("+tt.name+")", err, store.ErrNotFound)
	}
	got, err := f.s.GetDevice(f.ctx, f.orgA.ID, da.ID)
	noErr(t, "GetDevice", err)
	if got.LastSeq != 0 {
		t.Errorf("GetDevice().LastSeq after refused inserts = %d; want 0", got.LastSeq)
	}
	c := f.insert(t, f.orgA.ID, da.ID, la.ID, store.CommandLock)
	if c.Seq != 1 || c.LockoutID != la.ID {
		t.Errorf("InsertCommand() = seq %d, lockout %q; want 1, %q", c.Seq, c.LockoutID, la.ID)
	}
	_, err = f.s.GetCommand(f.ctx, f.orgB.ID, da.ID, c.Seq)
	wantErr(t, "GetCommand(B, A's command)", err, store.ErrNotFound)
	list, err := f.s.ListCommandsByLockout(f.ctx, f.orgB.ID, la.ID)
	noErr(t, "ListCommandsByLockout(B, A's lockout)", err)
	if len(list) != 0 {
		t.Errorf("ListCommandsByLockout(B, A's lockout) = %d commands; want none", len(list))
	}
}

func testCommandsByLockoutAndCounts(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "a@example.com")
	ub := f.user(t, f.orgB.ID, "b@example.com")
	d1 := f.device(t, f.orgA.ID, ua.ID, "SN1")
	d2 := f.device(t, f.orgA.ID, ua.ID, "SN2")
	db := f.device(t, f.orgB.ID, ub.ID, "SN1")
	la := f.lockout(t, f.orgA.ID, ua.ID)
	lb := f.lockout(t, f.orgB.ID, ub.ID)

	counts, err := f.s.CountCommandsByState(f.ctx)
	noErr(t, "CountCommandsByState(empty)", err)
	for _, st := range []store.CommandState{store.CommandPending, store.CommandDelivered, store.CommandApplied, store.CommandRejected} {
		if counts[st] != 0 {
			t.Errorf("CountCommandsByState(empty)[%s] = %d; want 0", st, counts[st])
		}
	}

	a1 := f.insert(t, f.orgA.ID, d1.ID, la.ID, store.CommandLock)
	a2 := f.insert(t, f.orgA.ID, d2.ID, la.ID, store.CommandLock)
	f.insert(t, f.orgA.ID, d1.ID, "", store.CommandPolicyUpdate)
	a3 := f.insert(t, f.orgA.ID, d1.ID, la.ID, store.CommandUnlock)
	b1 := f.insert(t, f.orgB.ID, db.ID, lb.ID, store.CommandLock)

	list, err := f.s.ListCommandsByLockout(f.ctx, f.orgA.ID, la.ID)
	noErr(t, "ListCommandsByLockout(A)", err)
	want := []store.Command{a1, a3, a2}
	if d1.ID > d2.ID {
		want = []store.Command{a2, a1, a3}
	}
	if delta := diff(want, list); delta != "" {
		t.Errorf("ListCommandsByLockout(A) mismatch (-want +got):\n%s", delta)
	}
	list, err = f.s.ListCommandsByLockout(f.ctx, f.orgB.ID, lb.ID)
	noErr(t, "ListCommandsByLockout(B)", err)
	if delta := diff([]store.Command{b1}, list); delta != "" {
		t.Errorf("ListCommandsByLockout(B) mismatch (-want +got):\n%s", delta)
	}

	noErr(t, "MarkCommandDelivered", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d1.ID, a1.Seq, base))
	noErr(t, "MarkCommandDelivered", f.s.MarkCommandDelivered(f.ctx, f.orgA.ID, d2.ID, a2.Seq, base))
	_, err = f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgA.ID, DeviceID: d2.ID, Seq: a2.Seq, Applied: true, At: base})
	noErr(t, "AckCommand(applied)", err)
	_, err = f.s.AckCommand(f.ctx, store.AckCommandParams{OrgID: f.orgB.ID, DeviceID: db.ID, Seq: b1.Seq, Reason: "bad_signature", At: base})
	noErr(t, "AckCommand(rejected)", err)

	counts, err = f.s.CountCommandsByState(f.ctx)
	noErr(t, "CountCommandsByState", err)
	wantCounts := map[store.CommandState]int64{
		store.CommandPending: 2, store.CommandDelivered: 1, store.CommandApplied: 1, store.CommandRejected: 1,
	}
	if delta := diff(wantCounts, counts); delta != "" {
		t.Errorf("CountCommandsByState() mismatch (-want +got):\n%s", delta)
	}
}

func testSubscribeCommands(t *testing.T, f *fixture) {
	da := f.device(t, f.orgA.ID, "", "SN1")
	db := f.device(t, f.orgB.ID, "", "SN1")
	// A command inserted before subscribing is not announced.
	f.insert(t, f.orgA.ID, da.ID, "", store.CommandLock)

	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	notices, err := f.s.SubscribeCommands(ctx)
	noErr(t, "SubscribeCommands", err)
	other, err := f.s.SubscribeCommands(f.ctx)
	noErr(t, "SubscribeCommands(second)", err)

	c2 := f.insert(t, f.orgA.ID, da.ID, "", store.CommandUnlock)
	cb := f.insert(t, f.orgB.ID, db.ID, "", store.CommandLock)
	want := []store.CommandNotice{
		{OrgID: f.orgA.ID, DeviceID: da.ID, Seq: c2.Seq},
		{OrgID: f.orgB.ID, DeviceID: db.ID, Seq: cb.Seq},
	}
	for _, sub := range []struct {
		name string
		ch   <-chan store.CommandNotice
	}{{"first", notices}, {"second", other}} {
		got := receiveNotices(t, sub.ch, len(want))
		sort.Slice(got, func(i, j int) bool { return got[i].OrgID == f.orgA.ID && got[j].OrgID != f.orgA.ID })
		if delta := diff(want, got); delta != "" {
			t.Errorf("%s subscriber's notices mismatch (-want +got):\n%s", sub.name, delta)
		}
	}

	// Ending the context closes the channel; the other subscription lives on.
	cancel()
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-notices:
		case <-deadline:
			t.Fatal("SubscribeCommands channel still open 10s after its context ended")
		}
	}
	c3 := f.insert(t, f.orgA.ID, da.ID, "", store.CommandLock)
	got := receiveNotices(t, other, 1)
	if delta := diff([]store.CommandNotice{{OrgID: f.orgA.ID, DeviceID: da.ID, Seq: c3.Seq}}, got); delta != "" {
		t.Errorf("second subscriber's notice after the first left mismatch (-want +got):\n%s", delta)
	}
}

// receiveNotices reads n command notices, skipping "reload everything"
// notices (empty DeviceID), which a store may send at any time.
func receiveNotices(t *testing.T, ch <-chan store.CommandNotice, n int) []store.CommandNotice {
	t.Helper()
	var got []store.CommandNotice
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case nt, ok := <-ch:
			if !ok {
				t.Fatalf("notice channel closed after %d of %d notices", len(got), n)
			}
			if nt.DeviceID != "" {
				got = append(got, nt)
			}
		case <-deadline:
			t.Fatalf("got %d of %d notices in 10s: %+v", len(got), n, got)
		}
	}
	return got
}

func testLockouts(t *testing.T, f *fixture) {
	ua := f.user(t, f.orgA.ID, "a@example.com")
	ub := f.user(t, f.orgB.ID, "b@example.com")

	l, created, err := f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: ua.ID, Trigger: "api:key_1", CreatedAt: base})
	noErr(t, "CreateLockout", err)
	want := store.Lockout{ID: l.ID, OrgID: f.orgA.ID, UserID: ua.ID, State: store.LockoutOpen, Trigger: "api:key_1", CreatedAt: utc(base)}
	if !created {
		t.Errorf("CreateLockout() created = false; want true")
	}
	if l.ID[:4] != "lck_" {
		t.Errorf("CreateLockout().ID = %q; want a lck_ id", l.ID)
	}
	if delta := diff(want, l); delta != "" {
		t.Errorf("CreateLockout() mismatch (-want +got):\n%s", delta)
	}
	// A second trigger for the same user returns the open lockout.
	again, created, err := f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: ua.ID, Trigger: "okta:evt", CreatedAt: base.Add(time.Minute)})
	noErr(t, "CreateLockout(again)", err)
	if created {
		t.Errorf("CreateLockout(again) created = true; want false")
	}
	if delta := diff(want, again); delta != "" {
		t.Errorf("CreateLockout(again) mismatch (-want +got):\n%s", delta)
	}
	_, _, err = f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgB.ID, UserID: ua.ID, Trigger: "x", CreatedAt: base})
	wantErr(t, "CreateLockout(B, A's user)", err, store.ErrNotFound)
	_, _, err = f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: "usr_missing", Trigger: "x", CreatedAt: base})
	wantErr(t, "CreateLockout(unknown user)", err, store.ErrNotFound)
	lb := f.lockout(t, f.orgB.ID, ub.ID)

	got, err := f.s.GetLockout(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "GetLockout", err)
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetLockout() mismatch (-want +got):\n%s", delta)
	}
	_, err = f.s.GetLockout(f.ctx, f.orgB.ID, l.ID)
	wantErr(t, "GetLockout(B, A's lockout)", err, store.ErrNotFound)

	// Overriding.
	_, err = f.s.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgB.ID, ID: l.ID, Reason: "x", Actor: "y", At: base})
	wantErr(t, "OverrideLockout(B, A's lockout)", err, store.ErrNotFound)
	_, err = f.s.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgA.ID, ID: "lck_missing", At: base})
	wantErr(t, "OverrideLockout(missing)", err, store.ErrNotFound)
	overriddenAt := base.Add(time.Hour)
	o, err := f.s.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgA.ID, ID: l.ID, Reason: "rehired", Actor: "admin@example.com", At: overriddenAt})
	noErr(t, "OverrideLockout", err)
	want.State, want.OverriddenAt, want.OverrideReason, want.OverrideActor = store.LockoutOverridden, ptr(utc(overriddenAt)), "rehired", "admin@example.com"
	if delta := diff(want, o); delta != "" {
		t.Errorf("OverrideLockout() mismatch (-want +got):\n%s", delta)
	}
	_, err = f.s.OverrideLockout(f.ctx, store.OverrideLockoutParams{OrgID: f.orgA.ID, ID: l.ID, Reason: "again", At: overriddenAt})
	wantErr(t, "OverrideLockout(overridden)", err, store.ErrConflict)
	got, err = f.s.GetLockout(f.ctx, f.orgA.ID, l.ID)
	noErr(t, "GetLockout", err)
	if delta := diff(want, got); delta != "" {
		t.Errorf("GetLockout() after refused second override mismatch (-want +got):\n%s", delta)
	}

	// After an override, a new trigger opens a new lockout.
	next, created, err := f.s.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: ua.ID, Trigger: "okta:evt2", CreatedAt: base.Add(2 * time.Hour)})
	noErr(t, "CreateLockout(after override)", err)
	if !created || next.ID == l.ID || next.State != store.LockoutOpen {
		t.Errorf("CreateLockout(after override) = %s (%s), created %t; want a new open lockout", next.ID, next.State, created)
	}

	list, err := f.s.ListLockouts(f.ctx, f.orgA.ID)
	noErr(t, "ListLockouts(A)", err)
	if delta := diff(sortedIDs(l.ID, next.ID), ids(list, func(l store.Lockout) string { return l.ID })); delta != "" {
		t.Errorf("ListLockouts(A) ids mismatch (-want +got):\n%s", delta)
	}
	list, err = f.s.ListLockouts(f.ctx, f.orgB.ID)
	noErr(t, "ListLockouts(B)", err)
	if delta := diff([]store.Lockout{lb}, list); delta != "" {
		t.Errorf("ListLockouts(B) mismatch (-want +got):\n%s", delta)
	}
}

func testPolicy(t *testing.T, f *fixture) {
	p, err := f.s.GetPolicy(f.ctx, f.orgA.ID)
	noErr(t, "GetPolicy(none)", err)
	if p.OrgID != f.orgA.ID || p.Version != 0 || len(p.Domains) != 0 || len(p.CIDRs) != 0 {
		t.Errorf("GetPolicy(none) = %+v; want org %s, version 0, no domains or CIDRs", p, f.orgA.ID)
	}
	_, err = f.s.GetPolicy(f.ctx, "org_missing")
	wantErr(t, "GetPolicy(unknown org)", err, store.ErrNotFound)
	_, err = f.s.PutPolicy(f.ctx, store.PutPolicyParams{OrgID: "org_missing", Domains: []string{"x.example"}, UpdatedAt: base})
	wantErr(t, "PutPolicy(unknown org)", err, store.ErrNotFound)

	puts := []store.PutPolicyParams{
		{OrgID: f.orgA.ID, Domains: []string{"llm.example.com", "api.openai.com"}, CIDRs: []string{"203.0.113.0/24"}, UpdatedAt: base},
		{OrgID: f.orgA.ID, Domains: []string{"api.anthropic.com"}, UpdatedAt: base.Add(time.Hour)},
		{OrgID: f.orgA.ID, UpdatedAt: base.Add(2 * time.Hour)},
	}
	for i, put := range puts {
		got, err := f.s.PutPolicy(f.ctx, put)
		noErr(t, "PutPolicy", err)
		want := store.Policy{OrgID: f.orgA.ID, Version: uint64(i + 1), Domains: put.Domains, CIDRs: put.CIDRs, UpdatedAt: utc(put.UpdatedAt)}
		if delta := cmp.Diff(want, got, append(cmpOpts, cmpEquateEmpty)...); delta != "" {
			t.Errorf("PutPolicy(#%d) mismatch (-want +got):\n%s", i+1, delta)
		}
		got, err = f.s.GetPolicy(f.ctx, f.orgA.ID)
		noErr(t, "GetPolicy", err)
		if delta := cmp.Diff(want, got, append(cmpOpts, cmpEquateEmpty)...); delta != "" {
			t.Errorf("GetPolicy() after put #%d mismatch (-want +got):\n%s", i+1, delta)
		}
	}
	// Org B's policy is its own.
	p, err = f.s.GetPolicy(f.ctx, f.orgB.ID)
	noErr(t, "GetPolicy(B)", err)
	if p.OrgID != f.orgB.ID || p.Version != 0 {
		t.Errorf("GetPolicy(B) = %+v; want org %s, version 0", p, f.orgB.ID)
	}
	got, err := f.s.PutPolicy(f.ctx, store.PutPolicyParams{OrgID: f.orgB.ID, Domains: []string{"b.example"}, UpdatedAt: base})
	noErr(t, "PutPolicy(B)", err)
	if got.Version != 1 {
		t.Errorf("PutPolicy(B).Version = %d; want 1", got.Version)
	}
}

// cmpEquateEmpty treats nil and empty slices alike: a policy's empty lists
// may read back either way.
var cmpEquateEmpty = cmp.FilterValues(func(a, b []string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Comparer(func(a, b []string) bool { return true }))

func testPing(t *testing.T, f *fixture) {
	noErr(t, "Ping", f.s.Ping(f.ctx))
}
