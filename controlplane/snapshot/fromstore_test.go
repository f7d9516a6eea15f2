package snapshot_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
)

func TestRevocationFromRecord(t *testing.T) {
	t.Parallel()
	at := lockedAt.Add(time.Second)
	conf, _ := json.Marshal(providers.Revocation{Provider: "openai", Email: "a@example.com", UserFound: true, Actions: []providers.Action{
		{Kind: providers.KindAPIKey, Resource: "key_1", Scope: "proj_1", Outcome: providers.OutcomeRevoked, RequestID: "req_1", Status: 200, At: at},
		{Kind: providers.KindOrgMembership, Resource: "user-1", Outcome: providers.OutcomeFailed, Status: 500, At: at, Error: "server error"},
	}})
	notFound, _ := json.Marshal(providers.Revocation{Provider: "anthropic", UserFound: false})
	for _, tc := range []struct {
		name        string
		rec         store.ProviderRevocation
		resources   int
		userFound   bool
		wantMissing string
	}{
		{"confirmed", store.ProviderRevocation{Provider: "openai", State: store.RevocationConfirmed, Attempts: 1, Confirmation: conf}, 2, true, ""},
		{"no such user", store.ProviderRevocation{Provider: "anthropic", State: store.RevocationConfirmed, Attempts: 1, Confirmation: notFound}, 0, false, "no member with this email"},
		{"gave up", store.ProviderRevocation{Provider: "openai", State: store.RevocationUnconfirmed, Attempts: 8, Confirmation: conf, LastError: "500"}, 2, true, "gave up after 8 attempts"},
		{"still pending", store.ProviderRevocation{Provider: "openai", State: store.RevocationPending, Attempts: 2}, 0, false, "still retrying"},
	} {
		got, err := snapshot.RevocationFromRecord(tc.rec)
		if err != nil {
			t.Fatalf("RevocationFromRecord(%s) = %v", tc.name, err)
		}
		if len(got.Resources) != tc.resources || got.UserFound != tc.userFound || !strings.Contains(got.Missing, tc.wantMissing) || (tc.wantMissing == "" && got.Missing != "") {
			t.Errorf("RevocationFromRecord(%s) = %d resources, found %v, missing %q; want %d, %v, %q",
				tc.name, len(got.Resources), got.UserFound, got.Missing, tc.resources, tc.userFound, tc.wantMissing)
		}
	}
	got, _ := snapshot.RevocationFromRecord(store.ProviderRevocation{Provider: "openai", State: store.RevocationConfirmed, Confirmation: conf})
	want := snapshot.RevokedResource{Kind: "api_key", Resource: "key_1", Scope: "proj_1", Outcome: "revoked", RequestID: "req_1", Status: 200, At: at}
	if diff := cmp.Diff(want, got.Resources[0]); diff != "" {
		t.Errorf("RevocationFromRecord resource (-want +got):\n%s", diff)
	}
	if _, err := snapshot.RevocationFromRecord(store.ProviderRevocation{Provider: "openai", Confirmation: json.RawMessage(`{"actions":7}`)}); err == nil {
		t.Error("RevocationFromRecord(bad confirmation) = nil error; want one")
	}
}

func TestDeviceLocksFromRecords(t *testing.T) {
	t.Parallel()
	seen := lockedAt.Add(-48 * time.Hour)
	acked, delivered, revoked := lockedAt.Add(2*time.Second), lockedAt.Add(time.Second), lockedAt.Add(-time.Hour)
	devices := []store.Device{
		{ID: "dev_a", Hostname: "a", OS: "linux"},
		{ID: "dev_b", Hostname: "b", OS: "darwin", LastSeenAt: &seen},
		{ID: "dev_c", Hostname: "c"},
		{ID: "dev_d", Hostname: "d", RevokedAt: &revoked},
	}
	cmds := []store.Command{
		{DeviceID: "dev_a", Seq: 4, Kind: store.CommandLock, State: store.CommandRejected, Reason: "expired", AckedAt: &acked, CreatedAt: lockedAt},
		{DeviceID: "dev_a", Seq: 5, Kind: store.CommandLock, State: store.CommandApplied, AckedAt: &acked, CreatedAt: lockedAt},
		{DeviceID: "dev_a", Seq: 6, Kind: store.CommandUnlock, State: store.CommandPending, CreatedAt: lockedAt},
		{DeviceID: "dev_b", Seq: 9, Kind: store.CommandLock, State: store.CommandPending, CreatedAt: lockedAt},
		{DeviceID: "dev_c", Seq: 2, Kind: store.CommandLock, State: store.CommandDelivered, DeliveredAt: &delivered, CreatedAt: lockedAt},
		{DeviceID: "dev_gone", Seq: 1, Kind: store.CommandLock, State: store.CommandApplied, AckedAt: &acked, CreatedAt: lockedAt},
	}
	got := snapshot.DeviceLocksFromRecords(devices, cmds)
	want := []struct {
		id, status, missing string
		seq                 uint64
	}{
		{"dev_a", "applied", "", 5},
		{"dev_b", "pending", "last seen 2026-11-18 16:42:07 UTC", 9},
		{"dev_c", "delivered", "not acknowledged", 2},
		{"dev_d", "", "no lock command was issued to this device; it was revoked", 0},
		{"dev_gone", "applied", "", 1},
	}
	if len(got) != len(want) {
		t.Fatalf("DeviceLocksFromRecords = %d entries; want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.DeviceID != w.id || g.Status != w.status || g.Seq != w.seq || !strings.Contains(g.Missing, w.missing) || (w.missing == "" && g.Missing != "") {
			t.Errorf("DeviceLocksFromRecords[%d] = %s %q seq %d missing %q; want %s %q seq %d missing %q",
				i, g.DeviceID, g.Status, g.Seq, g.Missing, w.id, w.status, w.seq, w.missing)
		}
	}
	if !got[0].AckedAt.Equal(acked) {
		t.Errorf("DeviceLocksFromRecords[0].AckedAt = %v; want %v", got[0].AckedAt, acked)
	}
}
