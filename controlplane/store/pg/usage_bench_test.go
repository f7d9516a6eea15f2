package pg_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pg"
	"github.com/toktra/toktra/controlplane/store/pgtest"
)

// benchBatch is the size of an agent batch in BenchmarkAppendDeviceUsage.
const benchBatch = 1000

// BenchmarkAppendDeviceUsage measures ingestion of agent batches into
// Postgres (COPY through the staging table, RLS in force), on a table that
// already holds preload events, by one device at a time and by several at
// once. It reports events/s.
func BenchmarkAppendDeviceUsage(b *testing.B) {
	for _, preload := range []int{0, 1_000_000} {
		for _, devices := range []int{1, 4} {
			b.Run(fmt.Sprintf("preload=%d/devices=%d", preload, devices), func(b *testing.B) {
				benchAppend(b, preload, devices)
			})
		}
	}
}

func benchAppend(b *testing.B, preload, devices int) {
	ctx := b.Context()
	s, err := pg.Open(ctx, pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: "bench", CreatedAt: now})
	if err != nil {
		b.Fatal(err)
	}
	type dev struct{ id, user string }
	var devs []dev
	for i := range devices {
		u, err := s.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: fmt.Sprintf("u%d@bench.example", i), CreatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		d, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, UserID: u.ID, Serial: fmt.Sprint("SN", i), CreatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		devs = append(devs, dev{d.ID, u.ID})
	}
	events := func(start time.Time) []store.UsageEvent {
		evs := make([]store.UsageEvent, benchBatch)
		for i := range evs {
			at := start.Add(time.Duration(i) * time.Second)
			evs[i] = store.UsageEvent{Provider: "openai", Domain: "api.openai.com", RemoteAddr: "162.159.140.245", RemotePort: 443,
				Protocol: "tcp", StartedAt: at, EndedAt: at.Add(2 * time.Second), BytesSent: int64(1000 + i), BytesReceived: int64(5000 + i),
				Requests: 1, ProcessName: "python3", ProcessPath: "/usr/bin/python3", PID: 4242, UID: 1000}
		}
		return evs
	}
	var seq atomic.Uint64
	// Months of data before the measured batches: a bigger index to update.
	for i := 0; i < preload/benchBatch; i++ {
		d := devs[i%len(devs)]
		if _, err := s.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{OrgID: org.ID, DeviceID: d.id, UserID: d.user,
			BatchSeq: seq.Add(1), Events: events(now.Add(-time.Duration(i) * time.Hour)), At: now}); err != nil {
			b.Fatal(err)
		}
	}
	batch := events(now)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w, d := range devs {
		// Worker w sends batches w, w+devices, ... of the b.N.
		wg.Go(func() {
			for i := w; i < b.N; i += len(devs) {
				if _, err := s.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{OrgID: org.ID, DeviceID: d.id, UserID: d.user,
					BatchSeq: seq.Add(1), Events: batch, At: now}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "events/s")
}
