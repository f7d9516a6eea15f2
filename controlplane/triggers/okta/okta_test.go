package okta

import (
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseDocumentedDelivery(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("testdata/deactivate.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(body)
	if err != nil {
		t.Fatalf("Parse(documented delivery) error = %v", err)
	}
	if d.EventID != "b8a6a3b5-4c4f-4b0c-9b1e-2f3c1e4d5a60" || len(d.Events) != 2 || !strings.HasPrefix(d.Source, "https://acme.okta.com/") {
		t.Errorf("Parse = %+v; want the envelope and its 2 events", d)
	}
	deacts := d.Deactivations()
	if len(deacts) != 1 || deacts[0].User.ID != "00ufh433fil4JtjEw4x7" || deacts[0].Email != "alice@a.example" || deacts[0].Event.UUID != "1f6ab7c2-7e1d-11ee-9b2e-8b1f4c2e0a11" {
		t.Errorf("Deactivations() = %+v; want alice's, lower-cased", deacts)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
	}{
		{"not JSON", `{"eventId":`},
		{"array", `[]`},
		{"null", `null`},
		{"no eventId", `{"data":{"events":[]}}`},
		{"no events", `{"eventId":"e1","data":{}}`},
		{"wrong envelope type", `{"eventType":"com.okta.other","eventId":"e1","data":{"events":[]}}`},
		{"event without uuid", `{"eventId":"e1","data":{"events":[{"eventType":"user.lifecycle.deactivate"}]}}`},
		{"null event", `{"eventId":"e1","data":{"events":[null]}}`},
		{"trailing data", `{"eventId":"e1","data":{"events":[]}} {}`},
		{"wrong type", `{"eventId":5,"data":{"events":[]}}`},
		{"long field", `{"eventId":"` + strings.Repeat("x", 3000) + `","data":{"events":[]}}`},
	}
	for _, tt := range tests {
		if _, err := Parse([]byte(tt.body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%s) error = %v; want ErrMalformed", tt.name, err)
		}
	}
}

func TestDeactivationsSkips(t *testing.T) {
	t.Parallel()
	body := `{"eventId":"e1","data":{"events":[
		{"uuid":"u1","eventType":"user.lifecycle.deactivate","outcome":{"result":"FAILURE"},"target":[{"id":"00u1","type":"User","alternateId":"a@x.example"}]},
		{"uuid":"u2","eventType":"user.lifecycle.deactivate","target":[{"id":"00g1","type":"UserGroup"},{"type":"User","alternateId":"noid@x.example"}]},
		{"uuid":"u3","eventType":"user.lifecycle.deactivate","outcome":{"result":"SUCCESS"},"target":[{"id":"00u3","type":"User","alternateId":"not-an-email"}]}
	]}}`
	d, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := d.Deactivations()
	if len(got) != 1 || got[0].User.ID != "00u3" || got[0].Email != "" {
		t.Errorf("Deactivations() = %+v; want only 00u3's, with no email (its login is not one)", got)
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header, secret string
		want           bool
	}{
		{"tko_secret", "tko_secret", true},
		{"tko_secreT", "tko_secret", false},
		{"", "tko_secret", false},
		{"", "", false},
		{"Bearer tko_secret", "tko_secret", false},
	}
	for _, tt := range tests {
		if got := CheckAuthorization(tt.header, tt.secret); got != tt.want {
			t.Errorf("CheckAuthorization(%q, %q) = %v; want %v", tt.header, tt.secret, got, tt.want)
		}
	}
}

func TestSignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"eventId":"e1"}`)
	good := Sign("s3cret", now, body)
	tests := []struct {
		name, header, secret string
		body                 []byte
		at                   time.Time
		want                 error
	}{
		{"good", good, "s3cret", body, now, nil},
		{"good, a minute later", good, "s3cret", body, now.Add(time.Minute), nil},
		{"wrong secret", good, "other", body, now, ErrBadSignature},
		{"changed body", good, "s3cret", []byte(`{"eventId":"e2"}`), now, ErrBadSignature},
		{"stale", good, "s3cret", body, now.Add(6 * time.Minute), ErrStale},
		{"from the future", good, "s3cret", body, now.Add(-6 * time.Minute), ErrStale},
		{"garbage", "sha256=abc", "s3cret", body, now, ErrBadSignature},
		{"no v1", "t=1800000000", "s3cret", body, now, ErrBadSignature},
		{"short v1", "t=1800000000,v1=abcd", "s3cret", body, now, ErrBadSignature},
		{"two v1, one good", strings.Replace(good, ",v1=", ",v1="+strings.Repeat("0", 64)+",v1=", 1), "s3cret", body, now, nil},
	}
	for _, tt := range tests {
		err := VerifySignature(tt.header, tt.secret, tt.body, tt.at, 5*time.Minute)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("VerifySignature(%s) error = %v; want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	if body, err := os.ReadFile("testdata/deactivate.json"); err == nil {
		f.Add(body)
	}
	f.Add([]byte(`{"eventId":"e1","data":{"events":[{"uuid":"u","eventType":"user.lifecycle.deactivate","target":[{"id":"00u","type":"User","alternateId":"a@b.c"}]}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if d.EventID == "" {
			t.Fatal("Parse accepted a delivery without eventId")
		}
		for _, x := range d.Deactivations() {
			if x.User.ID == "" || x.User.Type != "User" || x.Event.UUID == "" || x.Event.EventType != EventDeactivate {
				t.Fatalf("Deactivations() gave %+v", x)
			}
			if x.Email != "" && x.Email != strings.ToLower(x.Email) {
				t.Fatalf("email %q not lower-cased", x.Email)
			}
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(Sign("k", now, []byte("body")), []byte("body"))
	f.Add("t=1,v1=00", []byte(""))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if err := VerifySignature(header, "k", body, now, 5*time.Minute); err != nil {
			return
		}
		// Accepted: the header must carry the MAC of its own t and body.
		var ts string
		for _, part := range strings.Split(header, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
				ts = v
			}
		}
		if !strings.Contains(strings.ToLower(header), hex.EncodeToString(mac("k", ts, body))) {
			t.Fatalf("VerifySignature accepted %q for body %q", header, body)
		}
	})
}
