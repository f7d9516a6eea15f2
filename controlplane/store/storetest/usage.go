package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// testUsageCaptures: a capture is replaced in place (keeping when it was
// first made), listed by provider, and invisible to another org.
func testUsageCaptures(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "cap@a.example")
	l := f.lockout(t, f.orgA.ID, u.ID)
	from, to := base.Add(-14*24*time.Hour), base
	put := func(provider string, state store.CaptureState, at time.Time, capture string) store.UsageCapture {
		t.Helper()
		c, err := f.s.PutUsageCapture(f.ctx, store.PutUsageCaptureParams{
			OrgID: f.orgA.ID, LockoutID: l.ID, Provider: provider, State: state, Attempts: 1,
			WindowFrom: from, WindowTo: to, Capture: json.RawMessage(capture), At: at,
		})
		if err != nil {
			t.Fatalf("PutUsageCapture(%s) error = %v", provider, err)
		}
		return c
	}
	put("openai", store.CapturePending, base, "")
	c := put("openai", store.CaptureCaptured, base.Add(time.Minute), `{"buckets":[{"model":"gpt-x","input_tokens":12}]}`)
	if c.State != store.CaptureCaptured || !c.CreatedAt.Equal(base.Truncate(time.Microsecond)) || !c.UpdatedAt.Equal(base.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("PutUsageCapture replace = %+v; want captured, created kept, updated moved", c)
	}
	if !c.WindowFrom.Equal(from.Truncate(time.Microsecond)) || !c.WindowTo.Equal(to.Truncate(time.Microsecond)) {
		t.Errorf("window = %v..%v; want %v..%v", c.WindowFrom, c.WindowTo, from, to)
	}
	var got map[string]any
	if err := json.Unmarshal(c.Capture, &got); err != nil || got["buckets"] == nil {
		t.Errorf("capture = %s (%v); want the JSON back", c.Capture, err)
	}
	put("anthropic", store.CaptureFailed, base, "")
	list, err := f.s.ListUsageCaptures(f.ctx, f.orgA.ID, l.ID)
	if err != nil || len(list) != 2 || list[0].Provider != "anthropic" || list[1].Provider != "openai" {
		t.Fatalf("ListUsageCaptures = %+v, %v; want anthropic then openai", list, err)
	}
	if list, err := f.s.ListUsageCaptures(f.ctx, f.orgB.ID, l.ID); err != nil || len(list) != 0 {
		t.Errorf("ListUsageCaptures(org B) = %+v, %v; want none", list, err)
	}
	_, err = f.s.PutUsageCapture(f.ctx, store.PutUsageCaptureParams{OrgID: f.orgB.ID, LockoutID: l.ID, Provider: "openai",
		State: store.CaptureCaptured, WindowFrom: from, WindowTo: to, At: base})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutUsageCapture(org B, A's lockout) error = %v; want ErrNotFound", err)
	}
}
