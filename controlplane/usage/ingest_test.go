package usage_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/anthropic"
	"github.com/toktra/toktra/controlplane/providers/openai"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeanthropic"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeapi"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/usage"
	"github.com/toktra/toktra/internal/clock"
)

// t0 is the hour the tests' clocks start at.
var t0 = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

type fixture struct {
	st     store.Store
	org    store.Org
	alice  store.User
	clk    *clock.Fake
	sleeps []time.Duration
	mu     sync.Mutex
}

func setup(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, clk: clock.NewFake(t0)}
	if f.org, err = st.CreateOrg(t.Context(), store.CreateOrgParams{Name: "acme", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = st.UpsertUser(t.Context(), store.UpsertUserParams{OrgID: f.org.ID, Email: "alice@acme.example", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	return f
}

// ingester reads provider through a connector on baseURL.
func (f *fixture) ingester(t *testing.T, provider, baseURL, key string) *usage.Ingester {
	t.Helper()
	if _, err := f.st.PutProviderConnection(t.Context(), store.PutProviderConnectionParams{OrgID: f.org.ID, Provider: provider,
		SealedKey: []byte("sealed"), At: t0}); err != nil {
		t.Fatal(err)
	}
	opts := providers.Options{BaseURL: baseURL, PageSize: 2, Clock: f.clk, MaxInPlaceWait: -1}
	in, err := usage.NewIngester(usage.IngestConfig{
		Store: f.st, Clock: f.clk, Attempts: 3, RetryWait: time.Second,
		Open: func(_ context.Context, c store.ProviderConnection) (providers.OrgUsageReader, error) {
			if c.Provider == "openai" {
				return openai.New(key, opts)
			}
			return anthropic.New(key, opts)
		},
		Sleep: func(_ context.Context, d time.Duration) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sleeps = append(f.sleeps, d)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// rows returns the org's provider rows from t0-8d to t0+1d, by user
// ("" for unattributed ones, read per user id given).
func (f *fixture) rows(t *testing.T, userID string) []store.UsageEvent {
	t.Helper()
	var out []store.UsageEvent
	err := f.st.ScanUserUsage(t.Context(), store.ScanUserUsageParams{OrgID: f.org.ID, UserID: userID, From: t0.Add(-8 * 24 * time.Hour), To: t0.Add(24 * time.Hour)},
		func(e store.UsageEvent) error { out = append(out, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tokens(evs []store.UsageEvent) (in, out int64) {
	for _, e := range evs {
		in += e.InputTokens
		out += e.OutputTokens
	}
	return in, out
}

func TestIngestOpenAI(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fake := fakeopenai.New("sk-admin-test")
	t.Cleanup(fake.Close)
	fake.MaxPage = 2 // buckets per page: the hours paginate
	fake.AddUser(fakeopenai.User{ID: "user-alice", Email: "Alice@Acme.example", Role: "reader"})
	fake.AddUser(fakeopenai.User{ID: "user-bob", Email: "bob@acme.example", Role: "reader"})
	fake.AddUser(fakeopenai.User{ID: "user-carol", Email: "carol@acme.example", Role: "owner"})
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour).Add(10 * time.Minute) }
	fake.AddUsage(
		fakeopenai.Usage{Day: h(-5), UserID: "user-alice", APIKeyID: "key-a", ProjectID: "proj", Model: "gpt-4o", InputTokens: 100, OutputTokens: 10, Requests: 2},
		fakeopenai.Usage{Day: h(-5), UserID: "user-alice", APIKeyID: "key-a", ProjectID: "proj", Model: "gpt-4o-mini", InputTokens: 5, OutputTokens: 1, Requests: 1},
		fakeopenai.Usage{Day: h(-2), UserID: "user-alice", APIKeyID: "key-a", ProjectID: "proj", Model: "gpt-4o", InputTokens: 200, OutputTokens: 20, Requests: 3},
		fakeopenai.Usage{Day: h(-3), UserID: "user-bob", APIKeyID: "key-b", ProjectID: "proj", Model: "gpt-4o", InputTokens: 7, OutputTokens: 7, Requests: 1},
		// A deleted member's rows have lost their user id.
		fakeopenai.Usage{Day: h(-1), UserID: "", APIKeyID: "key-x", ProjectID: "proj", Model: "o3", InputTokens: 50, OutputTokens: 5, Requests: 1},
	)
	in := f.ingester(t, "openai", fake.URL(), "sk-admin-test")
	res, err := in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "openai"})
	if err != nil {
		t.Fatalf("IngestSource() error = %v", err)
	}
	if res.Rows != 5 || res.Unattributed != 2 || !res.To.Equal(t0) || !res.From.Equal(t0.Add(-usage.DefaultFirstLookback)) {
		t.Errorf("IngestSource() = %+v; want 5 rows, 2 unattributed (bob is no store user; the deleted member), 7 days to %v", res, t0)
	}
	var pages int
	for _, c := range fake.Calls() {
		if c.Path == "/v1/organization/usage/completions" {
			pages++
		}
	}
	if want := 7 * 24 / 2; pages != want {
		t.Errorf("usage pages read = %d; want %d (168 hour buckets, 2 a page)", pages, want)
	}
	got := f.rows(t, f.alice.ID)
	if in, out := tokens(got); len(got) != 3 || in != 305 || out != 31 {
		t.Fatalf("alice's rows = %+v; want 3 rows, 305 in, 31 out", got)
	}
	r := got[0]
	if r.Source != store.UsageSourceProvider || r.Provider != "openai" || r.ProviderUserID != "user-alice" || r.APIKeyID != "key-a" ||
		!r.StartedAt.Equal(t0.Add(-5*time.Hour)) || !r.EndedAt.Equal(t0.Add(-4*time.Hour)) || r.Requests == 0 || r.Key == "" {
		t.Errorf("alice's first row = %+v; want an attributed hour bucket of openai", r)
	}
	cur, err := f.st.GetUsageCursor(t.Context(), f.org.ID, "openai")
	if err != nil || !cur.Through.Equal(t0) {
		t.Errorf("cursor = %+v, %v; want through %v", cur, err, t0)
	}

	// An hour later: alice's usage two hours ago settled higher, and a new
	// hour came. The overlap re-reads it and replaces the row.
	fake.AddUsage(
		fakeopenai.Usage{Day: h(-2), UserID: "user-alice", APIKeyID: "key-a", ProjectID: "proj", Model: "gpt-4o", InputTokens: 1000, OutputTokens: 100, Requests: 1},
		fakeopenai.Usage{Day: h(0), UserID: "user-alice", APIKeyID: "key-a", ProjectID: "proj", Model: "gpt-4o", InputTokens: 1, OutputTokens: 1, Requests: 1},
	)
	f.clk.Advance(time.Hour)
	res, err = in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "openai"})
	if err != nil {
		t.Fatalf("second IngestSource() error = %v", err)
	}
	if !res.From.Equal(t0.Add(-3*time.Hour)) || !res.To.Equal(t0.Add(time.Hour)) {
		t.Errorf("second read = %v to %v; want the 3 overlap hours before the cursor to now", res.From, res.To)
	}
	got = f.rows(t, f.alice.ID)
	if in, out := tokens(got); len(got) != 4 || in != 1306 || out != 132 {
		t.Errorf("alice's rows after the overlapping read = %d rows, %d in, %d out; want 4, 1306, 132 (replaced, not added)", len(got), in, out)
	}
	// Running the same hour again changes nothing.
	if _, err := in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "openai"}); err != nil {
		t.Fatal(err)
	}
	if again := f.rows(t, f.alice.ID); len(again) != len(got) {
		t.Errorf("a repeated run stored %d rows; want %d", len(again), len(got))
	}

	// bob becomes a store user: the next read of his hour attributes it.
	bob, err := f.st.UpsertUser(t.Context(), store.UpsertUserParams{OrgID: f.org.ID, Email: "bob@acme.example", CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.rows(t, bob.ID)) != 0 {
		t.Fatal("bob has rows before being read again")
	}
}

// A rate limit is waited out (its Retry-After) and retried within the run;
// a rejected key fails without moving the cursor.
func TestIngestRetries(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fake := fakeopenai.New("sk-admin-test")
	t.Cleanup(fake.Close)
	fake.AddUser(fakeopenai.User{ID: "user-alice", Email: "alice@acme.example", Role: "reader"})
	fake.AddUsage(fakeopenai.Usage{Day: t0.Add(-time.Hour), UserID: "user-alice", APIKeyID: "k", Model: "gpt-4o", InputTokens: 9, Requests: 1})
	fake.Inject(fakeapi.Fault{PathPrefix: "/v1/organization/usage", Status: 429, RetryAfter: "30", Times: 2})
	in := f.ingester(t, "openai", fake.URL(), "sk-admin-test")
	res, err := in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "openai"})
	if err != nil || res.Attempts != 3 || res.Rows != 1 {
		t.Fatalf("IngestSource() with two 429s = %+v, %v; want 1 row on the 3rd attempt", res, err)
	}
	if want := []time.Duration{30 * time.Second, 30 * time.Second}; !slices.Equal(f.sleeps, want) {
		t.Errorf("waits = %v; want %v (Retry-After)", f.sleeps, want)
	}

	// Three 429s exhaust the attempts; nothing moves.
	f.clk.Advance(2 * time.Hour)
	fake.Inject(fakeapi.Fault{PathPrefix: "/v1/organization/usage", Status: 429, Times: 3})
	if _, err := in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "openai"}); !errors.Is(err, providers.ErrRateLimited) {
		t.Errorf("IngestSource() with three 429s error = %v; want the rate limit", err)
	}
	if cur, _ := f.st.GetUsageCursor(t.Context(), f.org.ID, "openai"); !cur.Through.Equal(t0) {
		t.Errorf("cursor after a failed run = %v; want it left at %v", cur.Through, t0)
	}

	// A wrong key is permanent: one attempt, no wait.
	bad := setup(t)
	wrong := bad.ingester(t, "openai", fake.URL(), "sk-wrong")
	if _, err := wrong.IngestSource(t.Context(), store.UsageSource{OrgID: bad.org.ID, Provider: "openai"}); !errors.Is(err, providers.ErrUnauthorized) {
		t.Errorf("IngestSource(wrong key) error = %v; want unauthorized", err)
	}
	if len(bad.sleeps) != 0 {
		t.Errorf("waits on a rejected key = %v; want none", bad.sleeps)
	}
	if _, err := bad.st.GetUsageCursor(t.Context(), bad.org.ID, "openai"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cursor after a rejected key: %v; want none", err)
	}
}

func TestIngestAnthropic(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fake := fakeanthropic.New("sk-ant-admin01-test")
	t.Cleanup(fake.Close)
	fake.MaxPage = 5
	fake.AddUser(fakeanthropic.User{ID: "u-alice", Email: "ALICE@acme.example", Role: "developer"})
	fake.AddUser(fakeanthropic.User{ID: "u-dave", Email: "dave@acme.example", Role: "developer"})
	fake.AddKey(fakeanthropic.Key{ID: "k-alice", Workspace: "ws1", CreatedBy: "u-alice", Status: "active"})
	fake.AddKey(fakeanthropic.Key{ID: "k-alice-old", CreatedBy: "u-alice", Status: "archived"})
	fake.AddKey(fakeanthropic.Key{ID: "k-dave", CreatedBy: "u-dave", Status: "active"})
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour).Add(5 * time.Minute) }
	fake.AddUsage(
		fakeanthropic.Usage{Day: h(-30), APIKeyID: "k-alice", Workspace: "ws1", Model: "claude-sonnet-4", UncachedInputTokens: 100, CacheReadTokens: 50, CacheWrite5mTokens: 10, OutputTokens: 40},
		fakeanthropic.Usage{Day: h(-2), APIKeyID: "k-alice-old", Model: "claude-opus-4", UncachedInputTokens: 1, OutputTokens: 2},
		fakeanthropic.Usage{Day: h(-2), APIKeyID: "k-dave", Model: "claude-sonnet-4", UncachedInputTokens: 9, OutputTokens: 9},
		// A key the listing does not know (deleted since), and the Workbench (no key).
		fakeanthropic.Usage{Day: h(-3), APIKeyID: "k-gone", Model: "claude-sonnet-4", UncachedInputTokens: 3, OutputTokens: 3},
		fakeanthropic.Usage{Day: h(-3), APIKeyID: "", Model: "claude-sonnet-4", UncachedInputTokens: 4, OutputTokens: 4},
	)
	in := f.ingester(t, "anthropic", fake.URL(), "sk-ant-admin01-test")
	res, err := in.IngestSource(t.Context(), store.UsageSource{OrgID: f.org.ID, Provider: "anthropic"})
	if err != nil {
		t.Fatalf("IngestSource() error = %v", err)
	}
	if res.Rows != 5 || res.Unattributed != 3 {
		t.Errorf("IngestSource() = %+v; want 5 rows, 3 unattributed (dave is no store user, an unknown key, no key)", res)
	}
	got := f.rows(t, f.alice.ID)
	if len(got) != 2 {
		t.Fatalf("alice's rows = %+v; want her two keys' hours", got)
	}
	if r := got[0]; r.InputTokens != 160 || r.OutputTokens != 40 || r.APIKeyID != "k-alice" || r.ProviderUserID != "u-alice" || r.Model != "claude-sonnet-4" {
		t.Errorf("alice's first row = %+v; want 160 input tokens (uncached+read+written), 40 out, via k-alice", r)
	}
	if got[1].APIKeyID != "k-alice-old" {
		t.Errorf("alice's second row key = %q; want the archived key she created", got[1].APIKeyID)
	}
	days, err := f.st.ListUsageDays(t.Context(), store.ListUsageDaysParams{OrgID: f.org.ID, From: t0.Add(-8 * 24 * time.Hour), To: t0})
	if err != nil || len(days) != 2 {
		t.Errorf("ListUsageDays = %+v, %v; want alice's two days only", days, err)
	}
}

func TestIngestAllAndRetention(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fake := fakeopenai.New("sk-admin-test")
	t.Cleanup(fake.Close)
	fake.AddUser(fakeopenai.User{ID: "user-alice", Email: "alice@acme.example", Role: "reader"})
	fake.AddUsage(fakeopenai.Usage{Day: t0.Add(-time.Hour), UserID: "user-alice", Model: "gpt-4o", InputTokens: 9, Requests: 1})
	in := f.ingester(t, "openai", fake.URL(), "sk-admin-test")
	// A second org whose provider rejects the key does not stop the first.
	other, err := f.st.CreateOrg(t.Context(), store.CreateOrgParams{Name: "other", CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.PutProviderConnection(t.Context(), store.PutProviderConnectionParams{OrgID: other.ID, Provider: "anthropic", SealedKey: []byte("x"), At: t0}); err != nil {
		t.Fatal(err)
	}
	err = in.IngestAll(t.Context())
	if err == nil {
		t.Error("IngestAll() error = nil; want the other org's failure reported")
	}
	if got := f.rows(t, f.alice.ID); len(got) != 1 {
		t.Errorf("alice's rows after IngestAll = %d; want 1", len(got))
	}

	// Retention: nothing is old yet; 400 days later everything is.
	if n, err := in.ApplyRetention(t.Context()); err != nil || n != 0 {
		t.Errorf("ApplyRetention() now = %d, %v; want 0", n, err)
	}
	f.clk.Advance(usage.DefaultRetention)
	if n, err := in.ApplyRetention(t.Context()); err != nil || n != 1 {
		t.Errorf("ApplyRetention() after the retention = %d, %v; want 1", n, err)
	}
}

func TestNewIngesterRefusesBadConfig(t *testing.T) {
	t.Parallel()
	f := setup(t)
	open := func(context.Context, store.ProviderConnection) (providers.OrgUsageReader, error) { return nil, errors.New("no") }
	for _, cfg := range []usage.IngestConfig{
		{Open: open},
		{Store: f.st},
		{Store: f.st, Open: open, Retention: 30 * 24 * time.Hour},
		{Store: f.st, Open: open, Interval: time.Second},
		{Store: f.st, Open: open, Overlap: -1},
	} {
		if _, err := usage.NewIngester(cfg); err == nil {
			t.Errorf("NewIngester(%+v) error = nil; want refused", cfg)
		}
	}
}
