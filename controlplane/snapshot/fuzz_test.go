package snapshot_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toktra/toktra/controlplane/snapshot"
)

// FuzzParseEventList checks that the event list parser never panics and
// that whatever it accepts encodes back to a list it reads the same.
func FuzzParseEventList(f *testing.F) {
	f.Add(snapshot.EncodeEventList(fixture(3).Usage.Events))
	f.Add([]byte(`{"started_at":"2026-11-20T16:42:07.123456789Z","source":"device","remote_port":443}` + "\n"))
	f.Add([]byte(`{"started_at":"2026-11-20T16:42:07Z","ended_at":"bad","source":"device"}`))
	f.Add([]byte(`{"started_at":"2026-11-20T16:42:07Z","unknown":1}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := snapshot.ParseEventList(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := snapshot.ParseEventList(bytes.NewReader(snapshot.EncodeEventList(events)))
		if err != nil {
			t.Fatalf("ParseEventList(EncodeEventList(parsed)) = %v", err)
		}
		if diff := cmp.Diff(events, again, cmpTimes, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("re-encoded list differs (-first +second):\n%s", diff)
		}
	})
}

// FuzzRender renders arbitrary text in every kind of field: Render must
// either refuse the input with an error or produce a PDF, never panic, and
// render the same bytes twice.
func FuzzRender(f *testing.F) {
	f.Add("Ана Ђорђевић", "株式会社", "okta", `{"a":1}`, "gpt-4.1", "curl")
	f.Add("😀\xff", "", "\x00", `[]`, "", "\u202e")
	f.Add("", "W", ") Tj (", `"\u0000"`, "\t\r\n", "a b c")
	base := fixture(3)
	f.Fuzz(func(t *testing.T, name, org, source, evidence, model, process string) {
		in := base
		in.User.Name, in.Org.Name = name, org
		in.Lockout.Triggers = []snapshot.Trigger{{Source: source, Actor: name, At: lockedAt, Evidence: json.RawMessage(evidence)}}
		in.Usage.Events = append([]snapshot.UsageEvent(nil), base.Usage.Events...)
		in.Usage.Events[0].Model, in.Usage.Events[0].ProcessName = model, process
		in.Devices = []snapshot.DeviceLock{{DeviceID: source, Hostname: org, Missing: process}}
		first, err := snapshot.Render(in)
		if err != nil {
			if in.Validate() == nil {
				t.Fatalf("Render() = %v for input that validates", err)
			}
			return
		}
		second, err := snapshot.Render(in)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("second Render() = %v, equal=%v; want the same bytes", err, bytes.Equal(first, second))
		}
	})
}
