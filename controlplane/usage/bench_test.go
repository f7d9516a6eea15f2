package usage_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pg"
	"github.com/toktra/toktra/controlplane/store/pgtest"
	"github.com/toktra/toktra/controlplane/usage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Scale of BenchmarkReport: the user's window and baseline events, and the
// org's peers with their events each.
const (
	benchWindowEvents   = 100_000
	benchBaselineEvents = 30_000
	benchPeers          = 50
	benchPeerEvents     = 2_000
)

// BenchmarkReport measures the anomaly report of one user with 100k events
// in the 14-day window, on Postgres: loading them (and the org's peer
// aggregates) and detecting ("load+detect", what Service.Report does), and
// detecting alone on the loaded history ("detect").
func BenchmarkReport(b *testing.B) {
	ctx := b.Context()
	st, err := pg.Open(ctx, pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	end := time.Date(2026, 5, 4, 17, 0, 0, 0, time.UTC)
	org, err := st.CreateOrg(ctx, store.CreateOrgParams{Name: "bench", CreatedAt: end})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	models := []string{"gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4"}
	// events spreads n events over [from, to) in working hours, a fifth of
	// them provider-like (tokens, model), the rest device connections.
	events := func(n int, from, to time.Time) []store.UsageEvent {
		evs := make([]store.UsageEvent, n)
		span := to.Sub(from)
		for i := range evs {
			at := from.Add(time.Duration(rng.Int64N(int64(span))))
			at = time.Date(at.Year(), at.Month(), at.Day(), 8+rng.IntN(10), rng.IntN(60), rng.IntN(60), 0, time.UTC)
			if !at.Before(to) {
				at = at.Add(-24 * time.Hour)
			}
			e := store.UsageEvent{Provider: "openai", Domain: "api.openai.com", RemoteAddr: "162.159.140.245", RemotePort: 443, Protocol: "tcp",
				StartedAt: at, EndedAt: at.Add(time.Second), BytesSent: 2000 + rng.Int64N(20000), BytesReceived: 10000 + rng.Int64N(50000),
				Requests: 1, ProcessName: "python3", ProcessPath: "/usr/bin/python3", PID: 100, UID: 1000}
			if i%5 == 0 {
				e.Model, e.InputTokens, e.OutputTokens = models[rng.IntN(len(models))], 500+rng.Int64N(5000), 100+rng.Int64N(1000)
			}
			evs[i] = e
		}
		return evs
	}
	put := func(userID, serial string, evs []store.UsageEvent) {
		d, err := st.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, UserID: userID, Serial: serial, CreatedAt: end})
		if err != nil {
			b.Fatal(err)
		}
		for i, seq := 0, uint64(1); i < len(evs); i, seq = i+5000, seq+1 {
			if _, err := st.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{OrgID: org.ID, DeviceID: d.ID, UserID: userID, BatchSeq: seq,
				Events: evs[i:min(i+5000, len(evs))], At: end}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The detector's window is whole local days: the 13 before end's and
	// end's own.
	winFrom := end.Truncate(24 * time.Hour).Add(-13 * 24 * time.Hour)
	baseFrom := winFrom.Add(-anomaly.DefaultBaseline)
	user, err := st.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "subject@bench.example", CreatedAt: end})
	if err != nil {
		b.Fatal(err)
	}
	put(user.ID, "SN-subject", append(events(benchWindowEvents, winFrom, end), events(benchBaselineEvents, baseFrom, winFrom)...))
	for p := range benchPeers {
		u, err := st.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: fmt.Sprintf("peer%d@bench.example", p), CreatedAt: end})
		if err != nil {
			b.Fatal(err)
		}
		put(u.ID, fmt.Sprint("SN-", p), events(benchPeerEvents, baseFrom, end))
	}
	if _, err := st.Pool().Exec(ctx, "ANALYZE"); err != nil {
		b.Logf("ANALYZE: %v", err)
	}
	svc := usage.NewService(st)

	b.Run("load+detect", func(b *testing.B) {
		var rep usage.Report
		for b.Loop() {
			rep, err = svc.Report(ctx, org.ID, user.ID, end, 0)
			if err != nil {
				b.Fatal(err)
			}
		}
		if rep.Events != benchWindowEvents+benchBaselineEvents || rep.Anomalies.WindowEvents < benchWindowEvents*9/10 {
			b.Fatalf("events read = %d, in the window %d; want %d, about %d", rep.Events, rep.Anomalies.WindowEvents,
				benchWindowEvents+benchBaselineEvents, benchWindowEvents)
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/report")
		b.ReportMetric(float64(rep.Anomalies.WindowEvents), "window-events")
	})
	b.Run("detect", func(b *testing.B) {
		h, err := svc.History(ctx, org.ID, user.ID, end, anomaly.DefaultWindow)
		if err != nil {
			b.Fatal(err)
		}
		var rep anomaly.Report
		for b.Loop() {
			rep = anomaly.Detect(h, end, anomaly.Options{})
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/detect")
		b.ReportMetric(float64(rep.WindowEvents), "window-events")
	})
}
