package pg_test

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pgtest"
)

// seedTriggers puts a row in each trigger table (migration 009) for the
// org; its webhook's hook id is "hk_" + name.
func seedTriggers(t *testing.T, s store.Store, orgID, name, userID, lockoutID string, now time.Time) {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seeding %s: %s: %v", name, what, err)
		}
	}
	for _, kind := range []string{"okta", "workday"} {
		hook := ""
		if kind == "okta" {
			hook = "hk_" + name
		}
		_, err := s.PutTriggerIntegration(ctx, store.PutTriggerIntegrationParams{OrgID: orgID, Kind: kind, HookID: hook,
			Settings: json.RawMessage(`{}`), SealedSecrets: []byte("sealed"), At: now})
		must("PutTriggerIntegration", err)
	}
	sum := sha256.Sum256([]byte(name))
	must("RecordTriggerDelivery", s.RecordTriggerDelivery(ctx, store.RecordTriggerDeliveryParams{OrgID: orgID, Source: "okta",
		DeliveryID: "evt-" + name, PayloadSHA256: sum[:], Events: 1, Accepted: 1, ReceivedAt: now}))
	e, _, err := s.AddTriggerEvent(ctx, store.AddTriggerEventParams{OrgID: orgID, Source: "okta", DeliveryID: "evt-" + name,
		Subject: "00u" + name, VendorEventID: "uuid-" + name, EventType: "user.lifecycle.deactivate", PayloadSHA256: sum[:],
		State: store.TriggerPending, ReceivedAt: now})
	must("AddTriggerEvent", err)
	_, err = s.UpdateTriggerEvent(ctx, store.UpdateTriggerEventParams{OrgID: orgID, ID: e.ID, State: store.TriggerProcessed,
		UserID: userID, LockoutID: lockoutID, At: now})
	must("UpdateTriggerEvent", err)
	must("PutTriggerIdentity", s.PutTriggerIdentity(ctx, store.PutTriggerIdentityParams{OrgID: orgID, Source: "okta",
		ExternalID: "00u" + name, UserID: userID, At: now}))
	_, err = s.PutTriggerPoll(ctx, store.PutTriggerPollParams{OrgID: orgID, Source: "workday", Interval: time.Hour, NextRunAt: now, At: now})
	must("PutTriggerPoll", err)
}

// The trigger definer functions (migration 009) cross orgs with exactly
// what their lookups need, and their settings forged by the app open
// nothing.
func TestRLSTriggerDefiners(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"SuperuserOwner", func(t *testing.T) string { return pgtest.NewDatabase(t) }},
		{"NonSuperuserOwner", nonSuperuserOwnerDSN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn := tc.dsn(t)
			s := open(t, dsn)
			a, b := seed(t, s, "a"), seed(t, s, "b")
			app := connectAsApp(t, dsn)
			err := inOrg(ctx, app, b.org.ID, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, "SELECT * FROM trigger_hook_org($1)", "hk_a")
				if err != nil {
					return err
				}
				var cols []string
				for _, f := range rows.FieldDescriptions() {
					cols = append(cols, f.Name)
				}
				got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
					var v [2]string
					return v, r.Scan(&v[0], &v[1])
				})
				if err != nil {
					return err
				}
				if !slices.Equal(cols, []string{"org_id", "kind"}) || len(got) != 1 || got[0] != [2]string{a.org.ID, "okta"} {
					t.Errorf("trigger_hook_org(hk_a) = %q %q; want only org A's okta, as org_id and kind", cols, got)
				}
				var n int
				for _, hook := range []string{"hk_nope", ""} {
					if err := tx.QueryRow(ctx, "SELECT count(*) FROM trigger_hook_org($1)", hook).Scan(&n); err != nil {
						return err
					}
					if n != 0 {
						t.Errorf("trigger_hook_org(%q) = %d rows; want 0", hook, n)
					}
				}
				rows, err = tx.Query(ctx, "SELECT * FROM trigger_poll_schedules()")
				if err != nil {
					return err
				}
				cols = cols[:0]
				for _, f := range rows.FieldDescriptions() {
					cols = append(cols, f.Name)
				}
				rows.Close()
				if !slices.Equal(cols, []string{"org_id", "source", "next_run_at"}) {
					t.Errorf("trigger_poll_schedules() columns = %q; want org_id, source, next_run_at", cols)
				}
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM trigger_poll_schedules()").Scan(&n); err != nil {
					return err
				}
				if n != 2 {
					t.Errorf("trigger_poll_schedules() = %d rows; want both orgs'", n)
				}
				for _, set := range [][2]string{{"toktra.trigger_hook_id", "hk_a"}, {"toktra.definer", "trigger_poll_schedules"}} {
					if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", set[0], set[1]); err != nil {
						return err
					}
				}
				for _, table := range []string{"trigger_integrations", "trigger_polls"} {
					if n := countRows(t, tx, table, "org_id = $1", a.org.ID); n != 0 {
						t.Errorf("with the definers' settings forged, org B sees %d of A's %s; want 0", n, table)
					}
				}
				var orgSetting, hookSetting string
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM trigger_hook_org($1)", "hk_b").Scan(&n); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, "SELECT current_setting('toktra.org_id'), current_setting('toktra.trigger_hook_id')").Scan(&orgSetting, &hookSetting); err != nil {
					return err
				}
				if orgSetting != b.org.ID || hookSetting != "hk_a" {
					t.Errorf("after trigger_hook_org, settings = %q, %q; want the caller's %q, %q", orgSetting, hookSetting, b.org.ID, "hk_a")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Through the store.
			for _, sd := range []seeded{a, b} {
				hook := "hk_" + map[string]string{a.org.ID: "a", b.org.ID: "b"}[sd.org.ID]
				if in, err := s.GetTriggerIntegrationByHook(ctx, hook); err != nil || in.OrgID != sd.org.ID {
					t.Errorf("GetTriggerIntegrationByHook(%s) = %+v, %v; want org %s's", hook, in, err, sd.org.ID)
				}
			}
			if sc, err := s.ListTriggerPollSchedules(ctx); err != nil || len(sc) != 2 {
				t.Errorf("ListTriggerPollSchedules = %+v, %v; want both orgs'", sc, err)
			}
		})
	}
}
