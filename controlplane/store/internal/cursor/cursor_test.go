package cursor

import (
	"errors"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		at time.Time
		id string
	}{
		{time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC), "lck_0123abcd"},
		{time.Unix(0, 0).UTC(), "x:y"},
		{time.Date(1960, 1, 1, 0, 0, 0, 1000, time.UTC), "lck_neg"},
	}
	for _, tt := range tests {
		c := Encode(tt.at, tt.id)
		at, id, err := Decode(c)
		if err != nil || !at.Equal(tt.at) || at.Location() != time.UTC || id != tt.id {
			t.Errorf("Decode(Encode(%v, %q)) = %v, %q, %v; want %v, %q, nil", tt.at, tt.id, at, id, err, tt.at, tt.id)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"!!!", Encode(time.Time{}, "")[:4], "bm9jb2xvbg", "YWJjOmxjaw"} {
		if _, _, err := Decode(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%q) error = %v; want ErrInvalid", c, err)
		}
	}
}
