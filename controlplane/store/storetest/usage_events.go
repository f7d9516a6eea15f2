package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toktra/toktra/controlplane/store"
)

// usageTests are the UsageStore's cases, run by Exercise.
var usageTests = []struct {
	name string
	run  func(t *testing.T, f *fixture)
}{
	{"UsageDeviceBatchOnce", testUsageDeviceBatchOnce},
	{"UsageDeviceBatchInTx", testUsageDeviceBatchInTx},
	{"UsageProviderUpsert", testUsageProviderUpsert},
	{"UsageScanOrder", testUsageScanOrder},
	{"UsageSummaries", testUsageSummaries},
	{"UsageDays", testUsageDays},
	{"UsageCursors", testUsageCursors},
	{"UsageRetention", testUsageRetention},
	{"UsageSources", testUsageSources},
}

// day0 is a UTC midnight, so tests can place events on days exactly.
var day0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// scanAll collects the user's events in [from, to).
func (f *fixture) scanAll(t *testing.T, orgID, userID string, from, to time.Time) []store.UsageEvent {
	t.Helper()
	var out []store.UsageEvent
	err := f.s.ScanUserUsage(f.ctx, store.ScanUserUsageParams{OrgID: orgID, UserID: userID, From: from, To: to},
		func(e store.UsageEvent) error {
			out = append(out, e)
			return nil
		})
	if err != nil {
		t.Fatalf("ScanUserUsage(%s, %s) error = %v", orgID, userID, err)
	}
	return out
}

func (f *fixture) appendBatch(t *testing.T, p store.AppendDeviceUsageParams) bool {
	t.Helper()
	applied, err := f.s.AppendDeviceUsage(f.ctx, p)
	if err != nil {
		t.Fatalf("AppendDeviceUsage(seq %d) error = %v", p.BatchSeq, err)
	}
	return applied
}

// deviceEvent is a connection of a device, with every field set.
func deviceEvent(at time.Time, sent int64) store.UsageEvent {
	return store.UsageEvent{
		Provider: "openai", Domain: "api.openai.com", RemoteAddr: "2001:db8::1", RemotePort: 443,
		Protocol: "tcp", StartedAt: at, EndedAt: at.Add(1500 * time.Millisecond), BytesSent: sent,
		BytesReceived: 2 * sent, Requests: 1, ProcessName: "python3", ProcessPath: "/usr/bin/python3",
		PID: 4242, UID: 1000,
	}
}

// testUsageDeviceBatchOnce: a batch is stored once, however often it is
// re-sent, and only a higher sequence is applied after it; every field
// reads back; the device must be the org's.
func testUsageDeviceBatchOnce(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "dev@a.example")
	other := f.user(t, f.orgA.ID, "other@a.example")
	d := f.device(t, f.orgA.ID, u.ID, "SN-U1")
	e1 := deviceEvent(base, 100)
	e2 := deviceEvent(base.Add(time.Minute), 200)
	e2.UserID = other.ID // attributed to someone else by the agent (e.g. a second login)
	batch := store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 1,
		Events: []store.UsageEvent{e1, e2}, At: base}

	if !f.appendBatch(t, batch) {
		t.Fatal("AppendDeviceUsage(seq 1) applied = false; want true")
	}
	for range 2 {
		if f.appendBatch(t, batch) {
			t.Error("AppendDeviceUsage(seq 1 again) applied = true; want false (a re-send)")
		}
	}
	got := f.scanAll(t, f.orgA.ID, u.ID, base.Add(-time.Hour), base.Add(time.Hour))
	want := e1
	want.OrgID, want.UserID, want.DeviceID, want.Source = f.orgA.ID, u.ID, d.ID, store.UsageSourceDevice
	want.StartedAt, want.EndedAt = want.StartedAt.UTC().Truncate(time.Microsecond), want.EndedAt.UTC().Truncate(time.Microsecond)
	if diff := cmp.Diff([]store.UsageEvent{want}, got); diff != "" {
		t.Errorf("ScanUserUsage after a batch sent three times (-want +got):\n%s", diff)
	}
	if got := f.scanAll(t, f.orgA.ID, other.ID, base.Add(-time.Hour), base.Add(time.Hour)); len(got) != 1 || got[0].BytesSent != 200 || got[0].DeviceID != d.ID {
		t.Errorf("events of the event's own user = %+v; want the one it was attributed to", got)
	}

	// Higher sequences apply, lower and equal ones never again.
	for _, tc := range []struct {
		seq  uint64
		want bool
	}{{3, true}, {2, false}, {3, false}, {4, true}} {
		b := batch
		b.BatchSeq, b.Events = tc.seq, []store.UsageEvent{deviceEvent(base.Add(time.Duration(tc.seq)*time.Hour), 1)}
		if got := f.appendBatch(t, b); got != tc.want {
			t.Errorf("AppendDeviceUsage(seq %d) applied = %t; want %t", tc.seq, got, tc.want)
		}
	}
	if n := len(f.scanAll(t, f.orgA.ID, u.ID, base.Add(-time.Hour), base.Add(24*time.Hour))); n != 3 {
		t.Errorf("events after seqs 1,3,2,3,4 = %d; want 3 (1, 3 and 4)", n)
	}
	// An empty batch still moves the sequence.
	if !f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 5, At: base}) {
		t.Error("AppendDeviceUsage(empty, seq 5) applied = false; want true")
	}
	if f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 5, Events: []store.UsageEvent{e1}, At: base}) {
		t.Error("AppendDeviceUsage(seq 5 again) applied = true; want false")
	}

	// A device with no batch yet starts from anything, 0 included.
	d2 := f.device(t, f.orgA.ID, u.ID, "SN-U2")
	if !f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d2.ID, UserID: u.ID, BatchSeq: 0, Events: []store.UsageEvent{e1}, At: base}) {
		t.Error("AppendDeviceUsage(new device, seq 0) applied = false; want true")
	}

	// Org B cannot append to A's device, nor see A's events.
	_, err := f.s.AppendDeviceUsage(f.ctx, store.AppendDeviceUsageParams{OrgID: f.orgB.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 99,
		Events: []store.UsageEvent{e1}, At: base})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AppendDeviceUsage(org B, A's device) error = %v; want ErrNotFound", err)
	}
	if got := f.scanAll(t, f.orgB.ID, u.ID, base.Add(-time.Hour), base.Add(24*time.Hour)); len(got) != 0 {
		t.Errorf("ScanUserUsage(org B, A's user) = %d events; want none", len(got))
	}
	if !f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 6, At: base}) {
		t.Error("AppendDeviceUsage(seq 6) after org B's attempt with 99 = false; want true (B's attempt left A's device alone)")
	}
}

// testUsageDeviceBatchInTx: a batch appended in a transaction that fails
// leaves nothing, its sequence included, so the re-send is applied.
func testUsageDeviceBatchInTx(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "tx@a.example")
	d := f.device(t, f.orgA.ID, u.ID, "SN-TX")
	batch := store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 7,
		Events: []store.UsageEvent{deviceEvent(base, 10), deviceEvent(base.Add(time.Second), 20)}, At: base}
	boom := errors.New("boom")
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		if applied, err := st.AppendDeviceUsage(f.ctx, batch); err != nil || !applied {
			t.Errorf("AppendDeviceUsage in InTx = %t, %v; want applied", applied, err)
		}
		if n := 0; st.ScanUserUsage(f.ctx, store.ScanUserUsageParams{OrgID: f.orgA.ID, UserID: u.ID, From: base.Add(-time.Hour), To: base.Add(time.Hour)},
			func(store.UsageEvent) error { n++; return nil }) != nil || n != 2 {
			t.Errorf("inside InTx, ScanUserUsage sees %d events; want the 2 appended", n)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx error = %v; want boom", err)
	}
	if got := f.scanAll(t, f.orgA.ID, u.ID, base.Add(-time.Hour), base.Add(time.Hour)); len(got) != 0 {
		t.Errorf("after a rolled-back InTx, %d events stored; want 0", len(got))
	}
	if !f.appendBatch(t, batch) {
		t.Error("AppendDeviceUsage after the rollback applied = false; want true (the sequence rolled back too)")
	}
	// Two batches in one transaction that commits.
	err = f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		for seq := uint64(8); seq <= 9; seq++ {
			b := batch
			b.BatchSeq = seq
			if _, err := st.AppendDeviceUsage(f.ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InTx(two batches) error = %v", err)
	}
	if got := f.scanAll(t, f.orgA.ID, u.ID, base.Add(-time.Hour), base.Add(time.Hour)); len(got) != 6 {
		t.Errorf("after three batches of 2, %d events stored; want 6", len(got))
	}
}

// providerRow is an hourly provider bucket of a user's model.
func providerRow(user, key string, hour int, in, out int64) store.UsageEvent {
	at := day0.Add(time.Duration(hour) * time.Hour)
	return store.UsageEvent{UserID: user, Provider: "openai", Model: "gpt-4o", StartedAt: at, EndedAt: at.Add(time.Hour),
		InputTokens: in, OutputTokens: out, Requests: 3, APIKeyID: "key_1", ProviderUserID: "user-abc", Key: key}
}

// testUsageProviderUpsert: a row with the same org, provider and key
// replaces the stored one; other orgs and providers keep their own.
func testUsageProviderUpsert(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "prov@a.example")
	ub := f.user(t, f.orgB.ID, "prov@b.example")
	upsert := func(orgID, provider string, rows ...store.UsageEvent) {
		t.Helper()
		if err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: orgID, Provider: provider, Events: rows}); err != nil {
			t.Fatalf("UpsertProviderUsage(%s, %s) error = %v", orgID, provider, err)
		}
	}
	upsert(f.orgA.ID, "openai", providerRow(u.ID, "k1", 0, 10, 1), providerRow(u.ID, "k2", 1, 20, 2))
	upsert(f.orgB.ID, "openai", providerRow(ub.ID, "k1", 0, 1000, 1000))
	// The poll overlaps: k2 again with its final numbers, k3 new.
	upsert(f.orgA.ID, "openai", providerRow(u.ID, "k2", 1, 25, 5), providerRow(u.ID, "k3", 2, 30, 3))
	// The same key at another provider is another row.
	anth := providerRow(u.ID, "k1", 3, 7, 7)
	anth.Provider = "anthropic" // ignored: the params name the provider
	upsert(f.orgA.ID, "anthropic", anth)

	got := f.scanAll(t, f.orgA.ID, u.ID, day0, day0.Add(24*time.Hour))
	var keys []string
	var in int64
	for _, e := range got {
		keys = append(keys, e.Provider+"/"+e.Key)
		in += e.InputTokens
		if e.Source != store.UsageSourceProvider {
			t.Errorf("provider row source = %q; want provider", e.Source)
		}
	}
	if want := []string{"openai/k1", "openai/k2", "openai/k3", "anthropic/k1"}; !cmp.Equal(keys, want) {
		t.Errorf("rows = %q; want %q", keys, want)
	}
	if in != 10+25+30+7 {
		t.Errorf("input tokens = %d; want %d (k2 replaced, not added)", in, 10+25+30+7)
	}
	want := providerRow(u.ID, "k2", 1, 25, 5)
	want.OrgID, want.Source = f.orgA.ID, store.UsageSourceProvider
	if len(got) == 4 {
		if diff := cmp.Diff(want, got[1]); diff != "" {
			t.Errorf("replaced row (-want +got):\n%s", diff)
		}
	}
	if got := f.scanAll(t, f.orgB.ID, ub.ID, day0, day0.Add(24*time.Hour)); len(got) != 1 || got[0].InputTokens != 1000 {
		t.Errorf("org B's rows = %+v; want its own k1 untouched", got)
	}

	// A row without a key would escape the dedupe: refused, nothing kept.
	bad := providerRow(u.ID, "", 5, 1, 1)
	err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: f.orgA.ID, Provider: "openai",
		Events: []store.UsageEvent{providerRow(u.ID, "k9", 5, 1, 1), bad}})
	if err == nil {
		t.Error("UpsertProviderUsage(row without key) error = nil; want an error")
	}
	if got := f.scanAll(t, f.orgA.ID, u.ID, day0, day0.Add(24*time.Hour)); len(got) != 4 {
		t.Errorf("after a refused upsert, %d rows; want the 4 before", len(got))
	}
	// Unattributed rows are kept, under no user.
	upsert(f.orgA.ID, "openai", providerRow("", "k-unknown", 4, 5, 5))
	sums, err := f.s.ListUsageDays(f.ctx, store.ListUsageDaysParams{OrgID: f.orgA.ID, From: day0, To: day0.Add(24 * time.Hour)})
	if err != nil || len(sums) != 1 || sums[0].UserID != u.ID {
		t.Errorf("ListUsageDays with an unattributed row = %+v, %v; want only the user's day", sums, err)
	}
}

// testUsageScanOrder: the scan returns [From, To) in time order whatever
// the order of arrival, and stops at fn's error.
func testUsageScanOrder(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "scan@a.example")
	d := f.device(t, f.orgA.ID, u.ID, "SN-SCAN")
	offsets := []int{50, 10, 40, 0, 30, 20, 60}
	var evs []store.UsageEvent
	for _, m := range offsets {
		evs = append(evs, deviceEvent(day0.Add(time.Duration(m)*time.Minute), int64(m)))
	}
	f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 1, Events: evs[:4], At: day0})
	f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 2, Events: evs[4:], At: day0})
	f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: f.orgA.ID, Provider: "openai",
		Events: []store.UsageEvent{{UserID: u.ID, Model: "m", StartedAt: day0.Add(25 * time.Minute), EndedAt: day0.Add(85 * time.Minute), Key: "b"}}})

	got := f.scanAll(t, f.orgA.ID, u.ID, day0.Add(10*time.Minute), day0.Add(60*time.Minute))
	var mins []int
	for _, e := range got {
		mins = append(mins, int(e.StartedAt.Sub(day0)/time.Minute))
	}
	if want := []int{10, 20, 25, 30, 40, 50}; !cmp.Equal(mins, want) {
		t.Errorf("ScanUserUsage([10m, 60m)) start minutes = %v; want %v", mins, want)
	}

	stop := errors.New("enough")
	n := 0
	err := f.s.ScanUserUsage(f.ctx, store.ScanUserUsageParams{OrgID: f.orgA.ID, UserID: u.ID, From: day0, To: day0.Add(time.Hour)},
		func(store.UsageEvent) error {
			n++
			if n == 2 {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("ScanUserUsage with fn failing at the 2nd = %v after %d calls; want %v after 2", err, n, stop)
	}
}

// testUsageSummaries: totals by UTC day, source, provider and model.
func testUsageSummaries(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "sum@a.example")
	d := f.device(t, f.orgA.ID, u.ID, "SN-SUM")
	dev := func(at time.Time, provider string, sent int64) store.UsageEvent {
		e := deviceEvent(at, sent)
		e.Provider = provider
		return e
	}
	f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 1, At: day0, Events: []store.UsageEvent{
		dev(day0.Add(time.Hour), "openai", 100),
		dev(day0.Add(23*time.Hour+59*time.Minute), "openai", 50),
		dev(day0.Add(24*time.Hour), "openai", 7), // the next UTC day
		dev(day0.Add(2*time.Hour), "anthropic", 9),
	}})
	rows := []store.UsageEvent{providerRow(u.ID, "a", 3, 10, 1), providerRow(u.ID, "b", 4, 20, 2)}
	other := providerRow(u.ID, "c", 5, 40, 4)
	other.Model = "gpt-4o-mini"
	rows = append(rows, other)
	if err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: f.orgA.ID, Provider: "openai", Events: rows}); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.SummarizeUserUsage(f.ctx, store.SummarizeUserUsageParams{OrgID: f.orgA.ID, UserID: u.ID, From: day0, To: day0.Add(48 * time.Hour)})
	if err != nil {
		t.Fatalf("SummarizeUserUsage error = %v", err)
	}
	day1 := day0.Add(24 * time.Hour)
	want := []store.UsageSummary{
		{Day: day0, Source: "device", Provider: "anthropic", Events: 1, Requests: 1, BytesSent: 9, BytesReceived: 18},
		{Day: day0, Source: "device", Provider: "openai", Events: 2, Requests: 2, BytesSent: 150, BytesReceived: 300},
		{Day: day0, Source: "provider", Provider: "openai", Model: "gpt-4o", Events: 2, Requests: 6, InputTokens: 30, OutputTokens: 3},
		{Day: day0, Source: "provider", Provider: "openai", Model: "gpt-4o-mini", Events: 1, Requests: 3, InputTokens: 40, OutputTokens: 4},
		{Day: day1, Source: "device", Provider: "openai", Events: 1, Requests: 1, BytesSent: 7, BytesReceived: 14},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SummarizeUserUsage (-want +got):\n%s", diff)
	}
	got, err = f.s.SummarizeUserUsage(f.ctx, store.SummarizeUserUsageParams{OrgID: f.orgB.ID, UserID: u.ID, From: day0, To: day0.Add(48 * time.Hour)})
	if err != nil || len(got) != 0 {
		t.Errorf("SummarizeUserUsage(org B, A's user) = %+v, %v; want none", got, err)
	}
}

// testUsageDays: per user and UTC day, tokens, models, providers and the
// bytes-sent figures, for attributed events of the org only.
func testUsageDays(t *testing.T, f *fixture) {
	u1 := f.user(t, f.orgA.ID, "d1@a.example")
	u2 := f.user(t, f.orgA.ID, "d2@a.example")
	ub := f.user(t, f.orgB.ID, "d@b.example")
	d1 := f.device(t, f.orgA.ID, u1.ID, "SN-D1")
	db := f.device(t, f.orgB.ID, ub.ID, "SN-DB")
	f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgA.ID, DeviceID: d1.ID, UserID: u1.ID, BatchSeq: 1, At: day0, Events: []store.UsageEvent{
		deviceEvent(day0.Add(time.Hour), 100), deviceEvent(day0.Add(2*time.Hour), 301), deviceEvent(day0.Add(3*time.Hour), 0),
	}})
	f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: f.orgB.ID, DeviceID: db.ID, UserID: ub.ID, BatchSeq: 1, At: day0, Events: []store.UsageEvent{deviceEvent(day0.Add(time.Hour), 5)}})
	a := providerRow(u1.ID, "a", 4, 10, 5)
	b := providerRow(u1.ID, "b", 5, 1, 1)
	b.Model = "gpt-4.1"
	c := providerRow(u2.ID, "c", 30, 100, 0) // the next day
	if err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: f.orgA.ID, Provider: "openai", Events: []store.UsageEvent{a, b, c}}); err != nil {
		t.Fatal(err)
	}
	an := providerRow(u1.ID, "x", 6, 2, 2)
	an.Model = "claude-sonnet-4"
	if err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: f.orgA.ID, Provider: "anthropic", Events: []store.UsageEvent{an}}); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.ListUsageDays(f.ctx, store.ListUsageDaysParams{OrgID: f.orgA.ID, From: day0, To: day0.Add(72 * time.Hour)})
	if err != nil {
		t.Fatalf("ListUsageDays error = %v", err)
	}
	want := []store.UsageDay{
		{UserID: u1.ID, Day: day0, Events: 6, Tokens: 15 + 2 + 4, Models: []string{"claude-sonnet-4", "gpt-4.1", "gpt-4o"},
			Providers: []string{"anthropic", "openai"}, MinBytesSent: 100, MaxBytesSent: 301, MeanBytesSent: 200},
		{UserID: u2.ID, Day: day0.Add(24 * time.Hour), Events: 1, Tokens: 100, Models: []string{"gpt-4o"}, Providers: []string{"openai"}},
	}
	if u2.ID < u1.ID {
		want[0], want[1] = want[1], want[0]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListUsageDays (-want +got):\n%s", diff)
	}
}

// testUsageCursors: none before the first put; replaced in place; per org.
func testUsageCursors(t *testing.T, f *fixture) {
	if _, err := f.s.GetUsageCursor(f.ctx, f.orgA.ID, "openai"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUsageCursor before any put error = %v; want ErrNotFound", err)
	}
	for i, through := range []time.Time{day0, day0.Add(3 * time.Hour)} {
		at := base.Add(time.Duration(i) * time.Minute)
		c, err := f.s.PutUsageCursor(f.ctx, store.PutUsageCursorParams{OrgID: f.orgA.ID, Provider: "openai", Through: through, At: at})
		want := store.UsageCursor{OrgID: f.orgA.ID, Provider: "openai", Through: through, UpdatedAt: at.UTC().Truncate(time.Microsecond)}
		if err != nil || !cmp.Equal(c, want) {
			t.Errorf("PutUsageCursor(%v) = %+v, %v; want %+v", through, c, err, want)
		}
		if got, err := f.s.GetUsageCursor(f.ctx, f.orgA.ID, "openai"); err != nil || !cmp.Equal(got, want) {
			t.Errorf("GetUsageCursor = %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := f.s.GetUsageCursor(f.ctx, f.orgB.ID, "openai"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUsageCursor(org B) error = %v; want ErrNotFound", err)
	}
	if _, err := f.s.PutUsageCursor(f.ctx, store.PutUsageCursorParams{OrgID: "org_nope", Provider: "openai", Through: day0, At: base}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutUsageCursor(unknown org) error = %v; want ErrNotFound", err)
	}
}

// testUsageRetention: events before the cutoff go, in every org, at most
// limit per call; later ones stay.
func testUsageRetention(t *testing.T, f *fixture) {
	type party struct {
		org  store.Org
		user store.User
	}
	var ps []party
	for i, org := range []store.Org{f.orgA, f.orgB} {
		u := f.user(t, org.ID, fmt.Sprintf("ret%d@x.example", i))
		d := f.device(t, org.ID, u.ID, fmt.Sprintf("SN-RET%d", i))
		var evs []store.UsageEvent
		for day := range 10 {
			evs = append(evs, deviceEvent(day0.Add(time.Duration(day)*24*time.Hour), 1))
		}
		f.appendBatch(t, store.AppendDeviceUsageParams{OrgID: org.ID, DeviceID: d.ID, UserID: u.ID, BatchSeq: 1, Events: evs, At: day0})
		if err := f.s.UpsertProviderUsage(f.ctx, store.UpsertProviderUsageParams{OrgID: org.ID, Provider: "openai",
			Events: []store.UsageEvent{providerRow(u.ID, "old", 1, 1, 1), providerRow(u.ID, "new", 24*8, 1, 1)}}); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, party{org, u})
	}
	cutoff := day0.Add(4 * 24 * time.Hour) // days 0-3 go: 4 device + 1 provider event per org
	if _, err := f.s.DeleteUsageBefore(f.ctx, cutoff, 0); err == nil {
		t.Error("DeleteUsageBefore(limit 0) error = nil; want an error")
	}
	var total int64
	for range 10 {
		n, err := f.s.DeleteUsageBefore(f.ctx, cutoff, 3)
		if err != nil {
			t.Fatalf("DeleteUsageBefore error = %v", err)
		}
		if n > 3 {
			t.Errorf("DeleteUsageBefore(limit 3) = %d; want at most 3", n)
		}
		total += n
		if n < 3 {
			break
		}
	}
	if total != 10 {
		t.Errorf("DeleteUsageBefore removed %d in all; want 10 (5 per org)", total)
	}
	for _, p := range ps {
		got := f.scanAll(t, p.org.ID, p.user.ID, day0.Add(-time.Hour), day0.Add(30*24*time.Hour))
		if len(got) != 7 || got[0].StartedAt.Before(cutoff) {
			t.Errorf("org %s after retention: %d events from %v; want 7 from %v", p.org.Name, len(got), got[0].StartedAt, cutoff)
		}
	}
}

// testUsageSources: every org's connected providers, and nothing else.
func testUsageSources(t *testing.T, f *fixture) {
	if got, err := f.s.ListUsageSources(f.ctx); err != nil || len(got) != 0 {
		t.Errorf("ListUsageSources with no connections = %+v, %v; want none", got, err)
	}
	for _, c := range []store.UsageSource{{OrgID: f.orgB.ID, Provider: "openai"}, {OrgID: f.orgA.ID, Provider: "openai"}, {OrgID: f.orgA.ID, Provider: "anthropic"}} {
		_, err := f.s.PutProviderConnection(f.ctx, store.PutProviderConnectionParams{OrgID: c.OrgID, Provider: c.Provider,
			SealedKey: []byte("sealed"), KeyHint: "…abcd", At: base, ValidatedAt: base})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.s.ListUsageSources(f.ctx)
	want := []store.UsageSource{{OrgID: f.orgA.ID, Provider: "anthropic"}, {OrgID: f.orgA.ID, Provider: "openai"}, {OrgID: f.orgB.ID, Provider: "openai"}}
	if f.orgB.ID < f.orgA.ID {
		want = []store.UsageSource{{OrgID: f.orgB.ID, Provider: "openai"}, {OrgID: f.orgA.ID, Provider: "anthropic"}, {OrgID: f.orgA.ID, Provider: "openai"}}
	}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("ListUsageSources = %+v, %v; want %+v", got, err, want)
	}
}
