package providers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
)

func TestUsageDays(t *testing.T) {
	t.Parallel()
	d := func(day, h int) time.Time { return time.Date(2026, 11, day, h, 0, 0, 0, time.UTC) }
	paris := time.FixedZone("CET", 3600)
	tests := []struct {
		from, to, start, end time.Time
	}{
		{d(9, 9), d(23, 9), d(9, 0), d(24, 0)},
		{d(9, 0), d(23, 0), d(9, 0), d(23, 0)},
		{d(9, 0), d(9, 1), d(9, 0), d(10, 0)},
		// 00:30 in Paris is still the 8th in UTC.
		{time.Date(2026, 11, 9, 0, 30, 0, 0, paris), d(10, 0), d(8, 0), d(10, 0)},
	}
	for _, tt := range tests {
		start, end := providers.UsageDays(tt.from, tt.to)
		if !start.Equal(tt.start) || !end.Equal(tt.end) || start.Location() != time.UTC {
			t.Errorf("UsageDays(%v, %v) = %v, %v; want %v, %v in UTC", tt.from, tt.to, start, end, tt.start, tt.end)
		}
	}
}

func TestSortUsageBuckets(t *testing.T) {
	t.Parallel()
	d1, d2 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	b := []providers.UsageBucket{
		{Start: d2, Model: "a", APIKeyID: "k1"},
		{Start: d1, Model: "b", APIKeyID: "k1"},
		{Start: d1, Model: "a", APIKeyID: "k2", ProjectOrWorkspace: "p2"},
		{Start: d1, Model: "a", APIKeyID: "k2", ProjectOrWorkspace: "p1"},
		{Start: d1, Model: "a", APIKeyID: "k1"},
	}
	providers.SortUsageBuckets(b)
	want := []string{"1/a/k1/", "1/a/k2/p1", "1/a/k2/p2", "1/b/k1/", "2/a/k1/"}
	for i, x := range b {
		if got := fmt.Sprintf("%d/%s/%s/%s", x.Start.Day(), x.Model, x.APIKeyID, x.ProjectOrWorkspace); got != want[i] {
			t.Errorf("SortUsageBuckets: [%d] = %s; want %s", i, got, want[i])
		}
	}
}
