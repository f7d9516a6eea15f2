package pg_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pg"
	"github.com/toktra/toktra/controlplane/store/pgtest"
	"github.com/toktra/toktra/controlplane/store/sqlq"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, dsn string) *pg.Store {
	t.Helper()
	s, err := pg.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("pg.Open() error = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return s
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	return open(t, pgtest.NewDatabase(t))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, newStore)
}

// Replicas share one database: a command inserted through one is announced
// to subscribers of another, and sequences stay contiguous across them.
func TestReplicas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)

	org, err := a.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateOrg() error = %v", err)
	}
	dev, err := a.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, Hostname: "h", Serial: "SN1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateDevice() error = %v", err)
	}
	notices, err := a.SubscribeCommands(ctx)
	if err != nil {
		t.Fatalf("SubscribeCommands() error = %v", err)
	}

	const perReplica = 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs []uint64
	)
	for _, s := range []*pg.Store{a, b, a, b} {
		wg.Go(func() {
			for range perReplica {
				c, err := s.InsertCommand(ctx, lockCommand(org.ID, dev.ID))
				if err != nil {
					t.Errorf("InsertCommand() error = %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, c.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("sequences from two replicas = %v; want 1..%d, each once", seqs, 4*perReplica)
		}
	}
	got := map[uint64]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(seqs) {
		select {
		case n := <-notices:
			if n.DeviceID != "" {
				if n.OrgID != org.ID || n.DeviceID != dev.ID {
					t.Errorf("notice = %+v; want org %s, device %s", n, org.ID, dev.ID)
				}
				got[n.Seq] = true
			}
		case <-deadline:
			t.Fatalf("replica A heard of %d of %d commands in 10s", len(got), len(seqs))
		}
	}

	// Both replicas racing to lock out one user open a single lockout.
	u, err := a.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "x@example.com", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("UpsertUser() error = %v", err)
	}
	var (
		created atomic.Int32
		ids     sync.Map
	)
	for _, s := range []*pg.Store{a, b, a, b, a, b} {
		wg.Go(func() {
			l, c, err := s.CreateLockout(ctx, store.CreateLockoutParams{OrgID: org.ID, UserID: u.ID, Trigger: "test", CreatedAt: time.Now()})
			if err != nil {
				t.Errorf("CreateLockout() error = %v", err)
				return
			}
			if c {
				created.Add(1)
			}
			ids.Store(l.ID, true)
		})
	}
	wg.Wait()
	n := 0
	ids.Range(func(any, any) bool { n++; return true })
	if created.Load() != 1 || n != 1 {
		t.Errorf("concurrent CreateLockout: %d created, %d distinct ids; want 1 and 1", created.Load(), n)
	}
}

func lockCommand(orgID, deviceID string) store.InsertCommandParams {
	return store.InsertCommandParams{
		OrgID: orgID, DeviceID: deviceID, Kind: store.CommandLock,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
		Sign: func(seq uint64) ([]byte, error) { return fmt.Appendf(nil, "signed %d", seq), nil },
	}
}

// When the LISTEN connection is killed, the listener reconnects and tells
// subscribers to reload (a notice with no DeviceID); later notices arrive.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateOrg() error = %v", err)
	}
	dev, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, Hostname: "h", Serial: "SN1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateDevice() error = %v", err)
	}
	notices, err := s.SubscribeCommands(ctx)
	if err != nil {
		t.Fatalf("SubscribeCommands() error = %v", err)
	}

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer admin.Close(context.Background())
	var killed int
	err = admin.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'LISTEN toktra_commands%'`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the listener's backend: %d terminated, error %v; want 1", killed, err)
	}

	deadline := time.After(15 * time.Second)
	for reload := false; !reload; {
		select {
		case n := <-notices:
			reload = n.DeviceID == ""
		case <-deadline:
			t.Fatal("no reload notice within 15s of the listener's connection being killed")
		}
	}
	c, err := s.InsertCommand(ctx, lockCommand(org.ID, dev.ID))
	if err != nil {
		t.Fatalf("InsertCommand() error = %v", err)
	}
	for {
		select {
		case n := <-notices:
			if n.DeviceID == dev.ID && n.Seq == c.Seq {
				return
			}
		case <-deadline:
			t.Fatal("no notice for a command inserted after the listener reconnected")
		}
	}
}

// Replicas starting together on an empty database migrate it once.
func TestConcurrentMigrations(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := pg.Open(t.Context(), dsn)
			if err != nil {
				t.Errorf("pg.Open() error = %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatalf("counting migrations: %v", err)
	}
	ms, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("schema_migrations has %d rows; want %d", n, len(ms))
	}
}

// Both dialects define the same queries and the same migration numbers.
func TestDialectsMatch(t *testing.T) {
	t.Parallel()
	names := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		q, err := sqlq.Parse(string(b))
		if err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		n := q.Names()
		slices.Sort(n)
		return n
	}
	if pgNames, liteNames := names("queries.sql"), names("../sqlite/queries.sql"); !slices.Equal(pgNames, liteNames) {
		t.Errorf("query names differ:\npg:     %q\nsqlite: %q", pgNames, liteNames)
	}
	versions := func(dir string) []string {
		ms, err := sqlq.LoadMigrations(os.DirFS(dir), "migrations")
		if err != nil {
			t.Fatalf("loading %s/migrations: %v", dir, err)
		}
		var v []string
		for _, m := range ms {
			v = append(v, fmt.Sprintf("%03d_%s", m.Version, m.Name))
		}
		return v
	}
	if pgV, liteV := versions("."), versions("../sqlite"); !slices.Equal(pgV, liteV) {
		t.Errorf("migrations differ:\npg:     %q\nsqlite: %q", pgV, liteV)
	}
}
