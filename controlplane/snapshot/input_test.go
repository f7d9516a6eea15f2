package snapshot_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/tsa"
)

func TestRenderRefusesIncompleteInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*snapshot.Input)
		want   string
	}{
		{"no generated time", func(in *snapshot.Input) { in.GeneratedAt = time.Time{} }, "generated-at"},
		{"no org", func(in *snapshot.Input) { in.Org.ID = " " }, "org id"},
		{"no user id", func(in *snapshot.Input) { in.User.ID = "" }, "user id"},
		{"no email", func(in *snapshot.Input) { in.User.Email = "" }, "user email"},
		{"no lockout", func(in *snapshot.Input) { in.Lockout.ID = "" }, "lockout id"},
		{"no lockout time", func(in *snapshot.Input) { in.Lockout.CreatedAt = time.Time{} }, "lockout time"},
		{"window backwards", func(in *snapshot.Input) { in.Usage.From = in.Usage.To.Add(time.Hour) }, "usage window"},
		{"event without start", func(in *snapshot.Input) { in.Usage.Events[3].StartedAt = time.Time{} }, "usage event 3"},
		{"bad trigger evidence", func(in *snapshot.Input) { in.Lockout.Triggers[0].Evidence = json.RawMessage(`{"a":`) }, "trigger 0 evidence"},
		{"no anomalies, no reason", func(in *snapshot.Input) { in.Anomalies = nil }, "anomaly report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := fixture(20)
			tc.change(&in)
			pdf, err := snapshot.Render(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render(%s) = %d bytes, %v; want an error about %q", tc.name, len(pdf), err, tc.want)
			}
		})
	}
}

// TestRenderSparseInput renders a lockout with nothing around it: no
// events, no providers, no devices, no custody, no anomaly report, and
// checks that the document says so instead of leaving gaps.
func TestRenderSparseInput(t *testing.T) {
	t.Parallel()
	in := fixture(0)
	in.User.Name, in.User.IdPIDs = "", nil
	in.Lockout.Triggers = nil
	in.Anomalies, in.AnomaliesMissing = nil, "the usage store was unavailable"
	in.Revocations, in.Devices, in.Custody = nil, nil, snapshot.Custody{}
	got := squash(text(t, writePDF(t, render(t, in))))
	for _, want := range []string{
		"Name —",
		"Identity providers none recorded",
		"No trigger was recorded.",
		"Events 0",
		"Anomaly detection did not run: the usage store was unavailable",
		"No LLM provider was connected",
		"The person had no enrolled device",
		"No custody node was recorded before this snapshot.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pdftotext output lacks %q", want)
		}
	}
}

// TestRenderHostileText feeds text no directory should hold: characters
// outside the font and the Basic Multilingual Plane, invalid UTF-8,
// control characters, PDF syntax and very long unbroken strings.
func TestRenderHostileText(t *testing.T) {
	t.Parallel()
	in := fixture(10)
	in.User.Name = "Zoë 😀 \xff\xfe ) Tj (\x00\x07 אבג 山田"
	in.Org.Name = strings.Repeat("W", 2000)
	in.Lockout.Triggers[0].Actor = "\\) (\n\r\t"
	in.Usage.Events[0].ProcessName = "evil\u202e.exe"
	in.Usage.Events[0].Model = strings.Repeat("m", 500)
	in.Revocations[0].Resources[0].Error = strings.Repeat("x ", 3000)
	path := writePDF(t, render(t, in))
	got := text(t, path)
	for _, want := range []string{"Zoë", "\uFFFD", "山田", "U+5C71 U+7530"} {
		if !strings.Contains(got, want) {
			t.Errorf("pdftotext output lacks %q", want)
		}
	}
	info := poppler(t, "pdfinfo", path)
	if !strings.Contains(info, "Pages:") {
		t.Errorf("pdfinfo cannot read the document:\n%s", info)
	}
}

func TestSignRefuses(t *testing.T) {
	t.Parallel()
	_, ev, ts := signSetup(t)
	_, other, _ := signSetup(t)
	doc := render(t, fixture(5))
	// A TSA that throttles every request.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "slow down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	throttled, err := tsa.NewClient(tsa.ClientConfig{PrimaryURL: down.URL, Roots: ts.local.Roots(), MaxAttempts: 2, BaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ctx  func() context.Context
		doc  []byte
		s    snapshot.Signer
		want string
	}{
		{"no key", context.Background, doc, snapshot.Signer{Chain: ev.Chain(), TSA: ts.client}, "key and certificate"},
		{"no timestamp authority", context.Background, doc, snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain()}, "timestamp authority"},
		{"key of another certificate", context.Background, doc, snapshot.Signer{Key: other.Signer(), Chain: ev.Chain(), TSA: ts.client}, "does not match"},
		{"not a pdf", context.Background, []byte("%PDF-1.3\nnonsense"), snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client}, "reading pdf"},
		{"timestamp authority throttles", context.Background, doc, snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: throttled}, "2 attempts failed"},
		{"cancelled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, doc, snapshot.Signer{Key: ev.Signer(), Chain: ev.Chain(), TSA: ts.client}, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			signed, err := snapshot.Sign(tc.ctx(), tc.doc, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign(%s) = %d bytes, %v; want an error containing %q", tc.name, len(signed), err, tc.want)
			}
		})
	}
}
