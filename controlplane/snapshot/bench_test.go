package snapshot_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/snapshot"
)

// BenchmarkRender renders snapshots of 10k and 100k events (100k is the
// pipeline's target window) and reports the size of the PDF.
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n)+"_events", func(b *testing.B) {
			in := fixture(n)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				pdf, err := snapshot.Render(in)
				if err != nil {
					b.Fatal(err)
				}
				size = len(pdf)
			}
			b.ReportMetric(float64(size)/1e6, "MB/pdf")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/render")
		})
	}
}

// BenchmarkSign signs rendered 10k- and 100k-event snapshots with the
// evidence key and a timestamp from the local TSA over loopback HTTP.
func BenchmarkSign(b *testing.B) {
	_, ev, ts := signSetup(b)
	s := snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client}
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n)+"_events", func(b *testing.B) {
			doc, err := snapshot.Render(fixture(n))
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for b.Loop() {
				if _, err := snapshot.Sign(context.Background(), doc, s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/sign")
		})
	}
}
