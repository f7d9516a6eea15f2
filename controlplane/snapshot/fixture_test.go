package snapshot_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
	"github.com/toktra/toktra/controlplane/snapshot"
)

// lockedAt is when the fixture's lockout happened.
var lockedAt = time.Date(2026, 11, 20, 16, 42, 7, 123456000, time.UTC)

// fixture builds a realistic snapshot input with n usage events in the
// window: a user with names in several scripts, a quiet baseline and a
// spike of tokens and one large upload in the window (so the anomaly
// detector, run for real, finds something), two providers (one
// confirmed, one not) and three devices (applied, rejected, offline).
func fixture(n int) snapshot.Input {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	from := lockedAt.Add(-anomaly.DefaultWindow)
	baselineFrom := from.Add(-anomaly.DefaultBaseline)
	models := []struct{ provider, model, domain string }{
		{"openai", "gpt-4.1", "api.openai.com"},
		{"anthropic", "claude-sonnet-4", "api.anthropic.com"},
	}
	var history []anomaly.Event
	// Baseline: a few events a working day.
	for d := baselineFrom; d.Before(from); d = d.Add(24 * time.Hour) {
		if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for range 3 {
			m := models[rng.IntN(len(models))]
			history = append(history, anomaly.Event{
				At:     d.Add(time.Duration(9+rng.IntN(8)) * time.Hour),
				Source: anomaly.SourceProvider, Provider: m.provider, Model: m.model,
				InputTokens: int64(2000 + rng.IntN(2000)), OutputTokens: int64(500 + rng.IntN(500)),
			})
		}
	}
	window := lockedAt.Sub(from)
	events := make([]snapshot.UsageEvent, n)
	for i := range events {
		m := models[(i/2)%len(models)]
		start := from.Add(time.Duration(int64(window) / int64(n) * int64(i)))
		e := snapshot.UsageEvent{
			StartedAt: start, EndedAt: start.Add(time.Duration(1+rng.IntN(30)) * time.Second),
			Provider: m.provider, Model: m.model,
		}
		if i%2 == 0 {
			e.Source = "device"
			e.DeviceID = fmt.Sprintf("dev_%02d", i%3)
			e.Domain = m.domain
			e.RemoteAddr = "2606:4700::6810:" + fmt.Sprintf("%x", i%256)
			e.RemotePort = 443
			e.Protocol = "tcp"
			e.BytesSent = int64(1000 + rng.IntN(20000))
			e.BytesReceived = int64(1000 + rng.IntN(50000))
			e.ProcessName = "Cursor Helper (Renderer)"
			e.ProcessPath = "/Applications/Cursor.app/Contents/Frameworks/Cursor Helper (Renderer).app"
		} else {
			e.Source = "provider"
			e.InputTokens = int64(20000 + rng.IntN(20000))
			e.OutputTokens = int64(4000 + rng.IntN(4000))
			e.Requests = int64(1 + rng.IntN(20))
			e.APIKeyID = "key_" + fmt.Sprint(i%4)
			e.ProviderUserID = "user-abc"
		}
		events[i] = e
	}
	if n > 10 {
		// One large upload the evening before the lockout.
		events[n-4].BytesSent = 480_000_000
		events[n-4].ProcessName = "curl"
	}
	for _, e := range events {
		history = append(history, anomaly.Event{
			At: e.StartedAt, Source: e.Source, Provider: e.Provider, Model: e.Model, Domain: e.Domain,
			InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, BytesSent: e.BytesSent,
			BytesReceived: e.BytesReceived, Process: e.ProcessName,
		})
	}
	report := anomaly.Detect(anomaly.History{User: "usr_1", Events: history, Location: time.UTC}, lockedAt, anomaly.Options{})

	hash := func(s string) string {
		const hex = "0123456789abcdef"
		b := make([]byte, 64)
		for i := range b {
			b[i] = hex[(int(s[i%len(s)])+i*7)%16]
		}
		return string(b)
	}
	return snapshot.Input{
		GeneratedAt: lockedAt.Add(95 * time.Second),
		Org:         snapshot.Org{ID: "org_7f3a", Name: "株式会社テスト Østfold Ltd"},
		User: snapshot.User{
			ID: "usr_1", Name: "Ана Ђорђевић-Σωκράτης", Email: "ana.djordjevic@example.com",
			IdPIDs: []snapshot.IdPID{{System: "okta", ID: "00u1abcd2EFGH3ijk4x7"}, {System: "scim", ID: "2819c223-7f76-453a-919d-413861904646"}},
		},
		Lockout: snapshot.Lockout{
			ID: "lo_9c1e5b", CreatedAt: lockedAt, State: "open",
			Triggers: []snapshot.Trigger{
				{Source: "okta", Actor: "hr-admin@example.com", At: lockedAt,
					Evidence: json.RawMessage(`{"eventType":"user.lifecycle.deactivate","uuid":"1f5c0e2a-6c1d-11ef-9a3b-0242ac120002","payload_sha256":"` + hash("okta") + `"}`)},
				{Source: "api:key_admin", At: lockedAt.Add(3 * time.Second)},
			},
		},
		Usage: snapshot.Usage{
			From: from, To: lockedAt, Events: events,
			Sources: []string{"device telemetry from 3 devices", "openai usage API, captured before revocation", "anthropic usage API, captured before revocation"},
		},
		Anomalies: &report,
		Revocations: []snapshot.Revocation{
			{Provider: "openai", State: "confirmed", Attempts: 1, UserFound: true, UpdatedAt: lockedAt.Add(2 * time.Second),
				Resources: []snapshot.RevokedResource{
					{Kind: "api_key", Resource: "key_abc123", Scope: "proj_x1", Outcome: "revoked", RequestID: "req_7d1f0c9e", Status: 200, At: lockedAt.Add(time.Second)},
					{Kind: "org_membership", Resource: "user-abc", Outcome: "revoked", RequestID: "req_8e2a1d0f", Status: 200, At: lockedAt.Add(2 * time.Second)},
				}},
			{Provider: "anthropic", State: "unconfirmed", Attempts: 8, UserFound: true, UpdatedAt: lockedAt.Add(10 * time.Minute),
				Error: "anthropic: 529 overloaded", Missing: "the provider was overloaded for every one of 8 attempts",
				Resources: []snapshot.RevokedResource{
					{Kind: "api_key", Resource: "apikey_01Rj2N8SVvo6BePZj99NhmiT", Scope: "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ", Outcome: "failed", Status: 529, RequestID: "req_018EeWyXxfu5pfWkrYcMdjWG", At: lockedAt.Add(10 * time.Minute), Error: "overloaded"},
				}},
		},
		Devices: []snapshot.DeviceLock{
			{DeviceID: "dev_00", Hostname: "ana-mbp", OS: "darwin", Seq: 7, Status: "applied", IssuedAt: lockedAt.Add(time.Second), AckedAt: lockedAt.Add(1400 * time.Millisecond)},
			{DeviceID: "dev_01", Hostname: "ana-linux", OS: "linux", Seq: 3, Status: "rejected", IssuedAt: lockedAt.Add(time.Second), AckedAt: lockedAt.Add(2 * time.Second), Reason: "expired", Detail: "command expired 2026-11-20T16:40:00Z"},
			{DeviceID: "dev_02", Hostname: "ana-win", OS: "windows", Seq: 12, Status: "pending", IssuedAt: lockedAt.Add(time.Second), Missing: "offline since 2026-11-18 09:12:00 UTC"},
		},
		Custody: snapshot.Custody{
			TSAs: []snapshot.TSA{{Name: "Toktra local TSA", URL: "http://127.0.0.1/tsa", Subject: "CN=Toktra TSA", Issuer: "CN=Toktra Device CA 1234", Serial: "5f3a", Fingerprint: hash("tsa")}},
			Nodes: []snapshot.CustodyNode{
				{Hash: hash("lockout"), Kind: "lockout", PayloadHash: hash("lockout-payload"), At: lockedAt, TimestampedAt: lockedAt.Add(200 * time.Millisecond), TSA: "Toktra local TSA", TokenSerial: "1001"},
				{Hash: hash("confirmation"), Kind: "revocation_confirmation", Parents: []string{hash("lockout")}, PayloadHash: hash("conf-payload"), At: lockedAt.Add(2 * time.Second), TimestampedAt: lockedAt.Add(2200 * time.Millisecond), TSA: "Toktra local TSA", TokenSerial: "1002"},
				{Hash: hash("ack"), Kind: "device_ack", Parents: []string{hash("lockout"), hash("confirmation")}, PayloadHash: hash("ack-payload"), At: lockedAt.Add(1400 * time.Millisecond)},
			},
		},
	}
}
