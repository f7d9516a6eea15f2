package objectstore

import (
	"testing"
	"time"
)

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Period
		wantErr bool
	}{
		{"7y", Period{Years: 7}, false},
		{"30d", Period{Days: 30}, false},
		{"1y30d", Period{Years: 1, Days: 30}, false},
		{" 10y ", Period{Years: 10}, false},
		{"100y", Period{Years: 100}, false},
		{"101y", Period{}, true},
		{"0y", Period{}, true},
		{"0d", Period{}, true},
		{"", Period{}, true},
		{"y", Period{}, true},
		{"7", Period{}, true},
		{"7h", Period{}, true},
		{"-7y", Period{}, true},
		{"7y7y", Period{}, true},
		{"30d1y", Period{}, true},
		{"99999999999999999999y", Period{}, true},
		{"7y ", Period{Years: 7}, false},
		{"7 y", Period{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePeriod(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePeriod(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			back, err := ParsePeriod(got.String())
			if err != nil || back != got {
				t.Errorf("ParsePeriod(%q.String() = %q) = %v, %v; want %v", tt.in, got.String(), back, err, got)
			}
		}
	}
}

func TestRetainUntil(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 2, 29, 12, 0, 0, 500, time.FixedZone("x", 3600))
	tests := []struct {
		name         string
		store, orgMn Period
		want         time.Time
	}{
		// Seven calendar years from a leap day: 2031 has no 29 February.
		{"default", DefaultRetention, Period{}, time.Date(2031, 3, 1, 11, 0, 1, 0, time.UTC)},
		{"org longer", DefaultRetention, Period{Years: 10}, time.Date(2034, 3, 1, 11, 0, 1, 0, time.UTC)},
		{"org shorter", DefaultRetention, Period{Days: 30}, time.Date(2031, 3, 1, 11, 0, 1, 0, time.UTC)},
		{"days", Period{Days: 1}, Period{}, time.Date(2024, 3, 1, 11, 0, 1, 0, time.UTC)},
	}
	for _, tt := range tests {
		if got := RetainUntil(now, tt.store, tt.orgMn); !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("%s: RetainUntil(%v, %v, %v) = %v; want %v", tt.name, now, tt.store, tt.orgMn, got, tt.want)
		}
	}
	// Never shorter than 7×365 days plus the leap days in between.
	if got := RetainUntil(now, DefaultRetention, Period{}); got.Sub(now) < 7*365*24*time.Hour+24*time.Hour {
		t.Errorf("RetainUntil(%v, 7y) = %v; want at least 7×365 days and a leap day later", now, got)
	}
}
