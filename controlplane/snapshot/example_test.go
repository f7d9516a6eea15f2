package snapshot_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/snapshot"
)

// Render a snapshot; the pipeline then signs it with snapshot.Sign and
// records snapshot.SHA256 of the signed bytes.
func ExampleRender() {
	at := time.Date(2026, 11, 20, 16, 42, 7, 0, time.UTC)
	pdf, err := snapshot.Render(snapshot.Input{
		GeneratedAt: at.Add(time.Minute),
		Org:         snapshot.Org{ID: "org_1", Name: "Example Corp"},
		User:        snapshot.User{ID: "usr_1", Name: "Ana Example", Email: "ana@example.com"},
		Lockout: snapshot.Lockout{ID: "lo_1", CreatedAt: at, State: "open",
			Triggers: []snapshot.Trigger{{Source: "api:key_1", At: at}}},
		Usage: snapshot.Usage{From: at.Add(-14 * 24 * time.Hour), To: at, Events: []snapshot.UsageEvent{
			{StartedAt: at.Add(-time.Hour), Source: "provider", Provider: "openai", Model: "gpt-4.1", InputTokens: 1200, OutputTokens: 300},
		}},
		AnomaliesMissing: "detection disabled for this org",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(bytes.HasPrefix(pdf, []byte("%PDF-")))
	// Output: true
}
