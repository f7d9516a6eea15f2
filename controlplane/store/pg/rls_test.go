package pg_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pgtest"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

// appRole is the role the store's queries run as (migration 004).
const appRole = "toktra_app"

// notOrgOwned are the public tables that hold no org's rows and so need no
// policy. Every other table must be org-owned and isolated: a new table
// either gets a policy or is listed here, deliberately.
func notOrgOwned(table string) bool {
	return table == "schema_migrations" || strings.HasPrefix(table, "river_")
}

// The conformance suite, with the schema owned by a role that is not a
// superuser (as on RDS): FORCEd RLS then binds the owner too, so the
// cross-org lookups work only through their definer functions' policies.
// (TestConformance runs it with a superuser owner.)
func TestConformanceNonSuperuserOwner(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store { return open(t, nonSuperuserOwnerDSN(t)) })
}

// nonSuperuserOwnerDSN returns a DSN for a new database owned by a new
// login role with only CREATEROLE, as a managed Postgres's master user.
// The roles stay in the throwaway cluster.
func nonSuperuserOwnerDSN(t *testing.T) string {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	admin := connect(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	role := "toktra_owner_" + strings.TrimPrefix(u.Path, "/")
	for _, stmt := range []string{
		"CREATE ROLE " + pgx.Identifier{role}.Sanitize() + " LOGIN CREATEROLE",
		"ALTER DATABASE " + pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize() + " OWNER TO " + pgx.Identifier{role}.Sanitize(),
	} {
		if _, err := admin.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	u.User = url.User(role)
	return u.String()
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// connectAsApp is a raw connection with the store's privileges and none of
// its discipline: whatever it runs, only RLS stands in the way.
func connectAsApp(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c := connect(t, dsn)
	if _, err := c.Exec(t.Context(), "SET ROLE "+appRole); err != nil {
		t.Fatalf("SET ROLE %s: %v", appRole, err)
	}
	return c
}

// seeded is an org with a row in every org-owned table.
type seeded struct {
	org       store.Org
	keyHash   []byte
	enrHash   []byte
	scimHash  []byte
	deviceID  string
	lockoutID string
}

// seed creates an org and puts a row in every org-owned table through the
// store. TestRLSRefusesOtherOrgs fails if a table is left empty, so a new
// table must be seeded here too.
func seed(t *testing.T, s store.Store, name string) seeded {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seeding %s: %s: %v", name, what, err)
		}
	}
	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: name, CreatedAt: now})
	must("CreateOrg", err)
	sd := seeded{org: org}
	kh := sha256.Sum256([]byte(name + " api key"))
	sd.keyHash = kh[:]
	_, err = s.CreateAPIKey(ctx, store.CreateAPIKeyParams{OrgID: org.ID, Name: "k", Scope: store.ScopeAdmin, Hash: sd.keyHash, CreatedAt: now})
	must("CreateAPIKey", err)
	eh := sha256.Sum256([]byte(name + " enrollment secret"))
	sd.enrHash = eh[:]
	_, err = s.CreateEnrollmentSecret(ctx, store.CreateEnrollmentSecretParams{OrgID: org.ID, Name: "e", Hash: sd.enrHash, CreatedAt: now})
	must("CreateEnrollmentSecret", err)
	u, err := s.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "u@" + name + ".example", Name: "U", CreatedAt: now})
	must("UpsertUser", err)
	d, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, UserID: u.ID, Hostname: "h", Serial: "SN-" + name, CreatedAt: now})
	must("CreateDevice", err)
	sd.deviceID = d.ID
	l, _, err := s.CreateLockout(ctx, store.CreateLockoutParams{OrgID: org.ID, UserID: u.ID, Trigger: "test", CreatedAt: now})
	must("CreateLockout", err)
	sd.lockoutID = l.ID
	_, err = s.InsertCommand(ctx, store.InsertCommandParams{OrgID: org.ID, DeviceID: d.ID, LockoutID: l.ID, Kind: store.CommandLock, CreatedAt: now,
		Sign: func(seq uint64) ([]byte, error) { return fmt.Appendf(nil, "signed %d", seq), nil }})
	must("InsertCommand", err)
	_, err = s.PutPolicy(ctx, store.PutPolicyParams{OrgID: org.ID, Domains: []string{"api.openai.com"}, UpdatedAt: now})
	must("PutPolicy", err)
	must("InitLockoutSteps", s.InitLockoutSteps(ctx, store.InitLockoutStepsParams{OrgID: org.ID, LockoutID: l.ID, Steps: []string{"revoke", "lock"}, At: now}))
	_, err = s.PutProviderRevocation(ctx, store.PutProviderRevocationParams{OrgID: org.ID, LockoutID: l.ID, Provider: "openai", State: store.RevocationPending, At: now})
	must("PutProviderRevocation", err)
	_, err = s.PutUsageCapture(ctx, store.PutUsageCaptureParams{OrgID: org.ID, LockoutID: l.ID, Provider: "openai", State: store.CapturePending,
		WindowFrom: now.Add(-14 * 24 * time.Hour), WindowTo: now, At: now})
	must("PutUsageCapture", err)
	must("AddLockoutTrigger", s.AddLockoutTrigger(ctx, store.AddLockoutTriggerParams{OrgID: org.ID, LockoutID: l.ID, Source: "test", At: now}))
	_, err = s.PutProviderConnection(ctx, store.PutProviderConnectionParams{OrgID: org.ID, Provider: "openai", SealedKey: []byte("sealed"), At: now})
	must("PutProviderConnection", err)
	_, err = s.AppendAudit(ctx, store.AppendAuditParams{OrgID: org.ID, At: now, Actor: "test", Action: "test.seed", Target: store.AuditTarget{Type: "orgs", ID: org.ID}})
	must("AppendAudit", err)
	_, err = s.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{OrgID: org.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 1, At: now,
		Events: []store.UsageEvent{{Provider: "openai", Domain: "api.openai.com", StartedAt: now, EndedAt: now, BytesSent: 1}}})
	must("AppendDeviceUsage", err)
	must("UpsertProviderUsage", s.UpsertProviderUsage(ctx, store.UpsertProviderUsageParams{OrgID: org.ID, Provider: "openai",
		Events: []store.UsageEvent{{UserID: u.ID, Model: "gpt-4o", StartedAt: now, EndedAt: now, InputTokens: 1, Key: "seed"}}}))
	_, err = s.PutUsageCursor(ctx, store.PutUsageCursorParams{OrgID: org.ID, Provider: "openai", Through: now, At: now})
	must("PutUsageCursor", err)
	_, _, err = s.PutSnapshot(ctx, store.PutSnapshotParams{OrgID: org.ID, LockoutID: l.ID, ID: store.NewID("snap"), PDF: []byte("%PDF"),
		SHA256: make([]byte, 32), TimestampToken: []byte("tst"), At: now})
	must("PutSnapshot", err)
	seedTriggers(t, s, org.ID, name, u.ID, l.ID, now)
	sh := sha256.Sum256([]byte(name + " scim token"))
	sd.scimHash = sh[:]
	_, err = s.PutSCIMToken(ctx, store.PutSCIMTokenParams{OrgID: org.ID, Hash: sd.scimHash, CreatedAt: now})
	must("PutSCIMToken", err)
	su, err := s.CreateSCIMUser(ctx, store.CreateSCIMUserParams{OrgID: org.ID, UserID: u.ID, UserName: u.Email, Emails: []string{u.Email}, Active: true, At: now})
	must("CreateSCIMUser", err)
	_, err = s.CreateSCIMGroup(ctx, store.CreateSCIMGroupParams{OrgID: org.ID, DisplayName: "g", Members: []string{su.ID}, At: now})
	must("CreateSCIMGroup", err)
	n, _, err := s.AppendCustodyNode(ctx, store.AppendCustodyNodeParams{OrgID: org.ID, LockoutID: l.ID, Kind: "lockout",
		Hash: hashOf(name + " node"), PayloadHash: hashOf(name + " payload"), At: now})
	must("AppendCustodyNode", err)
	_, _, err = s.PutCustodyToken(ctx, store.PutCustodyTokenParams{OrgID: org.ID, NodeHash: n.Hash, Token: []byte("token"), GenTime: now, StampedAt: now})
	must("PutCustodyToken", err)
	_, _, err = s.AddCustodyCheckpoint(ctx, store.AddCustodyCheckpointParams{OrgID: org.ID, Size: 1, RootHash: hashOf(name + " root"), Note: []byte("note"), Token: []byte("token"), CreatedAt: now})
	must("AddCustodyCheckpoint", err)
	return sd
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// orgTable is a public table and the column naming its org.
type orgTable struct{ name, orgCol string }

// orgTables lists the public tables that hold orgs' rows: orgs (keyed by
// id) and every table with an org_id column.
func orgTables(t *testing.T, c *pgx.Conn) []orgTable {
	t.Helper()
	rows, err := c.Query(t.Context(), `
		SELECT c.relname,
			CASE WHEN c.relname = 'orgs' THEN 'id' ELSE 'org_id' END
		FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
			AND (c.relname = 'orgs' OR EXISTS (
				SELECT 1 FROM pg_attribute a
				WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped))
		ORDER BY c.relname`)
	if err != nil {
		t.Fatalf("listing org tables: %v", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orgTable, error) {
		var ot orgTable
		err := r.Scan(&ot.name, &ot.orgCol)
		return ot, err
	})
	if err != nil {
		t.Fatalf("listing org tables: %v", err)
	}
	if len(ts) < 13 {
		t.Fatalf("found %d org tables; want at least the 13 of migrations 001-003", len(ts))
	}
	return ts
}

// inOrg runs fn in a transaction scoped to orgID ("" sets nothing) and
// rolls it back, so a probe that RLS failed to stop changes nothing.
func inOrg(ctx context.Context, c *pgx.Conn, orgID string, fn func(tx pgx.Tx) error) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if orgID != "" {
		if _, err := tx.Exec(ctx, "SELECT set_config('toktra.org_id', $1, true)", orgID); err != nil {
			return err
		}
	}
	return fn(tx)
}

func isInsufficientPrivilege(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

func countRows(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table, where string, args ...any) int {
	t.Helper()
	var n int
	query := "SELECT count(*) FROM " + pgx.Identifier{table}.Sanitize()
	if where != "" {
		query += " WHERE " + where
	}
	if err := q.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Connected as the app role with org B set, nothing of org A's can be read,
// changed, removed or added, in any org-owned table; with no org set,
// nothing at all is visible or insertable.
func TestRLSRefusesOtherOrgs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	a, b := seed(t, s, "a"), seed(t, s, "b")
	owner := connect(t, dsn) // a superuser: sees through RLS, to check the probes
	app := connectAsApp(t, dsn)

	for _, ot := range orgTables(t, owner) {
		t.Run(ot.name, func(t *testing.T) {
			table, col := pgx.Identifier{ot.name}.Sanitize(), pgx.Identifier{ot.orgCol}.Sanitize()
			isA := col + " = $1"
			before := countRows(t, owner, ot.name, isA, a.org.ID)
			if before == 0 {
				t.Fatalf("org A has no rows in %s: seed it (func seed)", ot.name)
			}
			var canUpdate, canDelete bool
			err := owner.QueryRow(ctx, "SELECT has_table_privilege($1, $2, 'UPDATE'), has_table_privilege($1, $2, 'DELETE')",
				appRole, ot.name).Scan(&canUpdate, &canDelete)
			if err != nil {
				t.Fatal(err)
			}

			err = inOrg(ctx, app, b.org.ID, func(tx pgx.Tx) error {
				if n := countRows(t, tx, ot.name, isA, a.org.ID); n != 0 {
					t.Errorf("org B sees %d of org A's rows; want 0", n)
				}
				if n, want := countRows(t, tx, ot.name, ""), countRows(t, owner, ot.name, isA, b.org.ID); n != want {
					t.Errorf("org B sees %d rows unfiltered; want its own %d", n, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			// UPDATE and DELETE of A's rows match nothing, or are refused
			// outright where the app has no such privilege at all.
			for _, p := range []struct {
				stmt    string
				granted bool
			}{
				{"UPDATE " + table + " SET " + col + " = " + col + " WHERE " + isA, canUpdate},
				{"DELETE FROM " + table + " WHERE " + isA, canDelete},
			} {
				err := inOrg(ctx, app, b.org.ID, func(tx pgx.Tx) error {
					tag, err := tx.Exec(ctx, p.stmt, a.org.ID)
					if err == nil && tag.RowsAffected() != 0 {
						t.Errorf("as org B, %q affected %d rows; want 0", p.stmt, tag.RowsAffected())
					}
					return err
				})
				switch {
				case p.granted && err != nil:
					t.Errorf("as org B, %q error = %v; want no rows affected", p.stmt, err)
				case !p.granted && !isInsufficientPrivilege(err):
					t.Errorf("as org B, %q error = %v; want permission denied", p.stmt, err)
				}
			}

			// Moving one of B's own rows into A is refused.
			move := "UPDATE " + table + " SET " + col + " = $1 WHERE " + col + " = $2"
			err = inOrg(ctx, app, b.org.ID, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, move, a.org.ID, b.org.ID)
				return err
			})
			if !isInsufficientPrivilege(err) {
				t.Errorf("as org B, %q error = %v; want refused (42501)", move, err)
			}

			// Inserting a copy of one of A's rows (valid in every other
			// respect until its keys collide, which is checked after the
			// policy) is refused by the policy, with org B set or none.
			copyName := "a_row_" + ot.name
			if _, err := owner.Exec(ctx, "DROP TABLE IF EXISTS "+copyName); err != nil {
				t.Fatal(err)
			}
			if _, err := owner.Exec(ctx, "CREATE TABLE "+copyName+" AS SELECT * FROM "+table+" WHERE "+isA+" LIMIT 1", a.org.ID); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { owner.Exec(context.Background(), "DROP TABLE "+copyName) })
			if _, err := owner.Exec(ctx, "GRANT SELECT ON "+copyName+" TO "+appRole); err != nil {
				t.Fatal(err)
			}
			for _, org := range []string{b.org.ID, ""} {
				err := inOrg(ctx, app, org, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO "+table+" SELECT * FROM "+copyName)
					return err
				})
				if !isInsufficientPrivilege(err) || !strings.Contains(err.Error(), "row-level security") {
					t.Errorf("inserting an org A row with org %q set: error = %v; want the row-level security policy's refusal", org, err)
				}
			}

			// No org set: nothing visible, before and after a transaction
			// that set one (the setting then reads '', not NULL).
			for i := range 2 {
				if n := countRows(t, app, ot.name, ""); n != 0 {
					t.Errorf("with no org set (pass %d), the app role sees %d rows; want 0", i, n)
				}
				if err := inOrg(ctx, app, b.org.ID, func(pgx.Tx) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}

			if after := countRows(t, owner, ot.name, isA, a.org.ID); after != before {
				t.Errorf("org A's rows: %d before the probes, %d after", before, after)
			}
		})
	}
}

// A query that forgets its org filter, run on the store's own connections,
// sees only the org its transaction is scoped to; unscoped, nothing.
func TestRLSBacksUpAForgottenFilter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, pgtest.NewDatabase(t))
	a, b := seed(t, s, "a"), seed(t, s, "b")
	if _, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: b.org.ID, Hostname: "h2", Serial: "SN-b2", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	var user string
	if err := s.Pool().QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != appRole {
		t.Fatalf("the store's pool runs as %q (error %v); want %s", user, err, appRole)
	}
	if n := countRows(t, s.Pool(), "devices", ""); n != 0 {
		t.Errorf("unscoped, the store's pool sees %d devices; want 0", n)
	}

	// Scoped by hand, as a store method scopes its transaction.
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('toktra.org_id', $1, true)", b.org.ID); err != nil {
			return err
		}
		if n := countRows(t, tx, "devices", ""); n != 2 {
			t.Errorf("scoped to org B, SELECT count(*) FROM devices = %d; want B's 2 (of 3)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Inside InTx, where a job queue shares the transaction: each store
	// call scopes it to its org, so raw SQL after it sees that org only.
	err = s.InTx(ctx, func(st store.Store, txAny any) error {
		tx := txAny.(pgx.Tx)
		for _, want := range []struct {
			org     string
			devices int
		}{{b.org.ID, 2}, {a.org.ID, 1}, {b.org.ID, 2}} {
			if _, err := st.ListDevices(ctx, store.ListDevicesParams{OrgID: want.org}); err != nil {
				return err
			}
			if n := countRows(t, tx, "devices", ""); n != want.devices {
				t.Errorf("inside InTx after a call for org %s, SELECT count(*) FROM devices = %d; want %d", want.org, n, want.devices)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The scope ends with the transaction: the pooled connection forgets it.
	for range 4 {
		if n := countRows(t, s.Pool(), "devices", ""); n != 0 {
			t.Errorf("after scoped transactions, the pool sees %d devices unscoped; want 0", n)
		}
	}
}

// The cross-org lookups return exactly what they promise and open nothing
// else: not to the app role calling them, nor to one imitating them.
func TestRLSDefinerFunctions(t *testing.T) {
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
				// By A's hash, A's key: knowing the hash is knowing the secret.
				var ids []string
				rows, err := tx.Query(ctx, "SELECT org_id FROM api_key_by_hash($1)", a.keyHash)
				if err != nil {
					return err
				}
				if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				if !slices.Equal(ids, []string{a.org.ID}) {
					t.Errorf("api_key_by_hash(A's hash) orgs = %q; want [%s]", ids, a.org.ID)
				}
				rows, err = tx.Query(ctx, "SELECT org_id FROM enrollment_secret_by_hash($1)", a.enrHash)
				if err != nil {
					return err
				}
				if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				if !slices.Equal(ids, []string{a.org.ID}) {
					t.Errorf("enrollment_secret_by_hash(A's hash) orgs = %q; want [%s]", ids, a.org.ID)
				}
				rows, err = tx.Query(ctx, "SELECT org_id FROM scim_token_by_hash($1)", a.scimHash)
				if err != nil {
					return err
				}
				if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				if !slices.Equal(ids, []string{a.org.ID}) {
					t.Errorf("scim_token_by_hash(A's hash) orgs = %q; want [%s]", ids, a.org.ID)
				}
				var n int
				for _, q := range []string{
					"SELECT count(*) FROM api_key_by_hash($1)",
					"SELECT count(*) FROM enrollment_secret_by_hash($1)",
					"SELECT count(*) FROM scim_token_by_hash($1)",
				} {
					if err := tx.QueryRow(ctx, q, []byte("no such hash")).Scan(&n); err != nil {
						return err
					}
					if n != 0 {
						t.Errorf("%s with an unknown hash = %d; want 0", q, n)
					}
				}

				// Counts of every org, and nothing but counts.
				rows, err = tx.Query(ctx, "SELECT * FROM count_commands_by_state()")
				if err != nil {
					return err
				}
				var cols []string
				for _, f := range rows.FieldDescriptions() {
					cols = append(cols, f.Name)
				}
				rows.Close()
				if !slices.Equal(cols, []string{"state", "n"}) {
					t.Errorf("count_commands_by_state() columns = %q; want [state n]", cols)
				}
				if err := tx.QueryRow(ctx, "SELECT sum(n) FROM count_commands_by_state()").Scan(&n); err != nil {
					return err
				}
				if n != 2 {
					t.Errorf("count_commands_by_state() totals %d; want both orgs' 2 commands", n)
				}

				// The settings the functions' policies look at, set by the
				// app itself, open nothing: those policies are the owner's.
				for _, set := range [][2]string{
					{"toktra.api_key_hash", hex.EncodeToString(a.keyHash)},
					{"toktra.enrollment_secret_hash", hex.EncodeToString(a.enrHash)},
					{"toktra.definer", "count_commands_by_state"},
					{"toktra.scim_token_hash", hex.EncodeToString(a.scimHash)},
				} {
					if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", set[0], set[1]); err != nil {
						return err
					}
				}
				for _, table := range []string{"api_keys", "enrollment_secrets", "commands", "scim_tokens"} {
					if n := countRows(t, tx, table, "org_id = $1", a.org.ID); n != 0 {
						t.Errorf("with the definers' settings forged, org B sees %d of A's %s; want 0", n, table)
					}
				}
				// And a call leaves the caller's settings as they were.
				var orgSetting, hashSetting string
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM api_key_by_hash($1)", b.keyHash).Scan(&n); err != nil {
					return err
				}
				err = tx.QueryRow(ctx, "SELECT current_setting('toktra.org_id'), current_setting('toktra.api_key_hash')").Scan(&orgSetting, &hashSetting)
				if err != nil {
					return err
				}
				if orgSetting != b.org.ID || hashSetting != hex.EncodeToString(a.keyHash) {
					t.Errorf("after api_key_by_hash, settings = %q, %q; want the caller's %q, %q", orgSetting, hashSetting, b.org.ID, hex.EncodeToString(a.keyHash))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			// The owner's own sessions are bound by the policies too (FORCE):
			// unscoped, a non-superuser owner sees nothing.
			if tc.name == "NonSuperuserOwner" {
				owner := connect(t, dsn)
				for _, table := range []string{"orgs", "api_keys", "commands", "audit_log"} {
					if n := countRows(t, owner, table, ""); n != 0 {
						t.Errorf("the owner, unscoped, sees %d rows of %s; want 0 (FORCE ROW LEVEL SECURITY)", n, table)
					}
				}
			}

			// Through the store: lookups by hash find either org's rows.
			for _, sd := range []seeded{a, b} {
				if k, err := s.GetAPIKeyByHash(ctx, sd.keyHash); err != nil || k.OrgID != sd.org.ID {
					t.Errorf("GetAPIKeyByHash = %+v, %v; want org %s's key", k, err, sd.org.ID)
				}
				if e, err := s.GetEnrollmentSecretByHash(ctx, sd.enrHash); err != nil || e.OrgID != sd.org.ID {
					t.Errorf("GetEnrollmentSecretByHash = %+v, %v; want org %s's secret", e, err, sd.org.ID)
				}
				if tok, err := s.GetSCIMTokenByHash(ctx, sd.scimHash); err != nil || tok.OrgID != sd.org.ID {
					t.Errorf("GetSCIMTokenByHash = %+v, %v; want org %s's token", tok, err, sd.org.ID)
				}
			}
		})
	}
}

// The catalog says what the migrations promise: the app role owns nothing
// and may do nothing beyond its grants; every org-owned table has RLS
// enabled, forced, and the org policy; every other table is one known to
// hold no org's rows. A table added later fails here until it is one or
// the other.
func TestRLSCatalog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	open(t, dsn)
	c := connect(t, dsn)

	rows, err := c.Query(ctx, `
		SELECT n.nspname || '.' || c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relowner = $1::regrole
		UNION ALL
		SELECT 'function ' || p.oid::regprocedure::text, 'f'
		FROM pg_proc p WHERE p.proowner = $1::regrole`, appRole)
	if err != nil {
		t.Fatal(err)
	}
	owned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 0 {
		t.Errorf("%s owns %q; want nothing", appRole, owned)
	}
	var super, bypass bool
	if err := c.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", appRole).Scan(&super, &bypass); err != nil {
		t.Fatal(err)
	}
	if super || bypass {
		t.Errorf("%s: superuser %t, bypassrls %t; want neither", appRole, super, bypass)
	}

	type table struct {
		name, owner            string
		rls, force, hasOrgID   bool
		policy, using, checked string
	}
	rows, err = c.Query(ctx, `
		SELECT t.tablename, t.tableowner, c.relrowsecurity, c.relforcerowsecurity,
			EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped),
			COALESCE(p.policyname, ''), COALESCE(p.qual, ''), COALESCE(p.with_check, '')
		FROM pg_tables t
		JOIN pg_class c ON c.oid = (quote_ident(t.schemaname) || '.' || quote_ident(t.tablename))::regclass
		LEFT JOIN pg_policies p ON p.schemaname = t.schemaname AND p.tablename = t.tablename
			AND p.policyname = 'org_isolation' AND p.roles = '{public}' AND p.cmd = 'ALL'
		WHERE t.schemaname = 'public'
		ORDER BY t.tablename`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var tb table
		err := r.Scan(&tb.name, &tb.owner, &tb.rls, &tb.force, &tb.hasOrgID, &tb.policy, &tb.using, &tb.checked)
		return tb, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var river int
	for _, tb := range tables {
		if tb.owner == appRole {
			t.Errorf("table %s is owned by %s; want the schema owner", tb.name, appRole)
		}
		if strings.HasPrefix(tb.name, "river_") {
			river++
		}
		col := "org_id"
		switch {
		case tb.name == "orgs":
			col = "id"
		case !tb.hasOrgID:
			if !notOrgOwned(tb.name) {
				t.Errorf("table %s has no org_id and is not listed as holding no org's rows: give it org_id and a policy, or add it to notOrgOwned", tb.name)
			}
			continue
		}
		want := "(" + col + " = toktra_org_id())"
		if !tb.rls || !tb.force || tb.policy == "" || tb.using != want || tb.checked != want {
			t.Errorf("table %s: rls %t, forced %t, org_isolation USING %q WITH CHECK %q; want RLS enabled and forced, and both %q",
				tb.name, tb.rls, tb.force, tb.using, tb.checked, want)
		}
	}
	if river == 0 {
		t.Error("no river_* tables: pg.Open did not migrate the job queue")
	}

	// Privileges: never UPDATE or DELETE on the audit log, never
	// TRUNCATE, REFERENCES or TRIGGER anywhere; River's tables in full.
	var bad []string
	rows, err = c.Query(ctx, `
		SELECT t.tablename || ':' || p.priv
		FROM pg_tables t, unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER', 'UPDATE', 'DELETE']) p(priv)
		WHERE t.schemaname = 'public' AND has_table_privilege($1, quote_ident(t.tablename), p.priv)
			AND (p.priv NOT IN ('UPDATE', 'DELETE') OR t.tablename = 'audit_log')`, appRole)
	if err != nil {
		t.Fatal(err)
	}
	if bad, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if len(bad) != 0 {
		t.Errorf("%s holds %q; want none of these", appRole, bad)
	}
	rows, err = c.Query(ctx, `
		SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'river\_%'
			AND CASE c.relkind
				WHEN 'S' THEN NOT has_sequence_privilege($1, c.oid, 'USAGE')
				WHEN 'r' THEN NOT has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
				ELSE false END`, appRole)
	if err != nil {
		t.Fatal(err)
	}
	if bad, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if len(bad) != 0 {
		t.Errorf("%s lacks privileges River needs on %q", appRole, bad)
	}

	// The definer functions: definer rights, a pinned search path, and
	// executable by the app only.
	rows, err = c.Query(ctx, `
		SELECT p.proname || ': ' || CASE
			WHEN NOT p.prosecdef THEN 'not SECURITY DEFINER'
			WHEN NOT 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig) THEN 'search_path not pinned'
			WHEN EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0) THEN 'executable by PUBLIC'
			WHEN NOT has_function_privilege($1, p.oid, 'EXECUTE') THEN 'not executable by the app'
			ELSE 'ok' END
		FROM pg_proc p
		WHERE p.pronamespace = 'public'::regnamespace
			AND p.proname IN ('api_key_by_hash', 'enrollment_secret_by_hash', 'count_commands_by_state',
				'delete_usage_before', 'usage_sources', 'trigger_hook_org', 'trigger_poll_schedules', 'scim_token_by_hash')
		ORDER BY 1`, appRole)
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"api_key_by_hash: ok", "count_commands_by_state: ok", "delete_usage_before: ok",
		"enrollment_secret_by_hash: ok", "scim_token_by_hash: ok", "trigger_hook_org: ok", "trigger_poll_schedules: ok", "usage_sources: ok"}
	if !slices.Equal(funcs, want) {
		t.Errorf("definer functions = %q; want %q", funcs, want)
	}
	// Any other SECURITY DEFINER function must be reviewed and listed above.
	var definers int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prosecdef").Scan(&definers); err != nil {
		t.Fatal(err)
	}
	if definers != len(want) {
		t.Errorf("public has %d SECURITY DEFINER functions; want the %d reviewed ones", definers, len(want))
	}
}

// The audit log refuses UPDATE and DELETE to the app role by privilege,
// before its triggers (which refuse everyone; see TestAuditAppendOnly).
func TestRLSAuditAppendOnlyForApp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	a := seed(t, s, "a")
	app := connectAsApp(t, dsn)
	for _, stmt := range []string{
		"UPDATE audit_log SET actor = 'forged'",
		"DELETE FROM audit_log",
		"TRUNCATE audit_log",
	} {
		err := inOrg(ctx, app, a.org.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, stmt)
			return err
		})
		if !isInsufficientPrivilege(err) {
			t.Errorf("as the app role in org A, %q error = %v; want permission denied", stmt, err)
		}
	}
	page, err := s.ListAudit(ctx, store.ListAuditParams{OrgID: a.org.ID})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Actor != "test" {
		t.Errorf("audit log after refused changes = %+v, %v; want the one seeded entry", page.Entries, err)
	}
}

// River runs as the app role on the store's pool: its migrator there finds
// nothing to do (pg.Open migrated as the owner), as the server's start-up
// call expects, and the app may use every table River made.
func TestJobQueueMigratedForApp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, pgtest.NewDatabase(t))
	m, err := rivermigrate.New(riverpgxv5.New(s.Pool()), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		t.Fatalf("River's Migrate as %s error = %v; want nothing to do", appRole, err)
	}
	if len(res.Versions) != 0 {
		t.Errorf("River's Migrate as %s applied %d versions; want 0 (pg.Open applied them)", appRole, len(res.Versions))
	}
	v, err := m.Validate(ctx, nil)
	if err != nil || !v.OK {
		t.Errorf("River's Validate = %+v, %v; want OK", v, err)
	}
	// A job inserted and claimed as the app role, as River's client does.
	err = pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state)
			VALUES ('{}', 'probe', 1, 'probe', 'available') RETURNING id`).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE river_job SET state = 'running' WHERE id = (
			SELECT id FROM river_job WHERE id = $1 FOR UPDATE SKIP LOCKED)`, id)
		return err
	})
	if err != nil {
		t.Errorf("using river_job as %s: %v", appRole, err)
	}
}

// Roles are cluster-wide: databases migrating at once race to create the
// app role. The migration's creation block, run by several sessions whose
// transactions overlap, succeeds in every one of them.
func TestAppRoleCreationRace(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("migrations/004_rls.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)DO \$\$\s*BEGIN\s*CREATE ROLE toktra_app.*?\$\$;`).Find(b)
	if block == nil {
		t.Fatal("no CREATE ROLE toktra_app block in migrations/004_rls.up.sql")
	}
	dsn := pgtest.NewDatabase(t)
	role := fmt.Sprintf("toktra_race_%d", time.Now().UnixNano())
	stmt := strings.ReplaceAll(string(block), "toktra_app", role)

	const sessions = 6
	conns := make([]*pgx.Conn, sessions)
	for i := range conns {
		conns[i] = connect(t, dsn)
	}
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		failed atomic.Int32
	)
	for _, c := range conns {
		wg.Go(func() {
			<-start
			// Holding the transaction open after creating makes the others'
			// creations wait on it, then find the role taken.
			err := pgx.BeginFunc(t.Context(), c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(t.Context(), stmt); err != nil {
					return err
				}
				_, err := tx.Exec(t.Context(), "SELECT pg_sleep(0.2)")
				return err
			})
			if err != nil {
				failed.Add(1)
				t.Errorf("creating the role concurrently: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if _, err := conns[0].Exec(t.Context(), "DROP ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Errorf("dropping %s: %v", role, err)
	}
}
