package bamboohr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The payloads as BambooHR's documentation shows them.
const (
	eventPayload = `{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"12345","employeeId":"67890","changedFields":["employmentHistoryStatus","terminationDate"]}}`
	fieldPayload = `{"employees":[{"action":"Updated","changedFields":["Employment Status","Termination Date"],"fields":{"Employment Status":"Terminated","Termination Date":"2026-02-14","Work Email":"Bryony@A.example","Status":"Active"},"id":"12345","timestamp":"2026-01-31T18:42:00+0000"},{"action":"Updated","changedFields":["First Name"],"fields":{"First Name":"Bryony"},"id":"12346","timestamp":"2026-01-31T18:42:00+0000"}]}`
)

func TestParseBothFormats(t *testing.T) {
	t.Parallel()
	cs, err := Parse([]byte(eventPayload))
	if err != nil || len(cs) != 1 {
		t.Fatalf("Parse(event) = %+v, %v; want one change", cs, err)
	}
	if c := cs[0]; c.Format != FormatEvent || c.EmployeeID != "67890" || c.EventID() != "employee.updated@2026-01-31T18:42:00+0000" || !c.MayTerminate() {
		t.Errorf("Parse(event) = %+v; want employee 67890, a possible termination", c)
	}
	cs, err = Parse([]byte(fieldPayload))
	if err != nil || len(cs) != 2 {
		t.Fatalf("Parse(field) = %+v, %v; want two changes", cs, err)
	}
	if c := cs[0]; c.Format != FormatField || c.EmployeeID != "12345" || !c.MayTerminate() || c.Fields["workemail"] != "Bryony@A.example" {
		t.Errorf("Parse(field)[0] = %+v; want employee 12345 with fields by normalized name", c)
	}
	if cs[1].MayTerminate() {
		t.Errorf("a first-name change MayTerminate() = true; want false")
	}
	e := FromFields(cs[0].EmployeeID, cs[0].Fields)
	if e.WorkEmail != "bryony@a.example" || e.EmploymentStatus != "Terminated" {
		t.Errorf("FromFields = %+v; want the lower-cased email and the status", e)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not JSON":        `{"type":`,
		"both formats":    `{"type":"employee.updated","timestamp":"t","data":{"employeeId":"1"},"employees":[]}`,
		"neither":         `{"hello":1}`,
		"no employee id":  `{"type":"employee.updated","timestamp":"t","data":{"companyId":"1"}}`,
		"bad employee id": `{"type":"employee.updated","timestamp":"t","data":{"employeeId":"1; DROP"}}`,
		"no timestamp":    `{"type":"employee.updated","data":{"employeeId":"1"}}`,
		"null employee":   `{"employees":[null]}`,
		"field object":    `{"employees":[{"id":"1","action":"Updated","timestamp":"t","fields":{"a":{"b":1}}}]}`,
		"trailing":        eventPayload + `x`,
		"long":            `{"type":"` + strings.Repeat("x", 3000) + `","timestamp":"t","data":{"employeeId":"1"}}`,
	} {
		if _, err := Parse([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%s) error = %v; want ErrMalformed", name, err)
		}
	}
	// A numeric id is fine.
	if cs, err := Parse([]byte(`{"type":"employee.updated","timestamp":"t","data":{"employeeId":67890}}`)); err != nil || cs[0].EmployeeID != "67890" {
		t.Errorf("Parse(numeric id) = %+v, %v; want 67890", cs, err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(eventPayload)
	now, _ := time.Parse(time.RFC3339, "2026-01-31T18:43:00Z")
	ts := "2026-01-31T18:42:00+0000"
	sig := Sign("key", body, ts)
	tests := []struct {
		name, ts, sig, secret string
		body                  []byte
		at                    time.Time
		want                  error
	}{
		{"good", ts, sig, "key", body, now, nil},
		{"good, unix seconds", "1769885000", Sign("key", body, "1769885000"), "key", body, time.Unix(1769885000, 0), nil},
		{"upper-case hex", ts, strings.ToUpper(sig), "key", body, now, nil},
		{"forged", ts, Sign("other", body, ts), "key", body, now, ErrBadSignature},
		{"body changed", ts, sig, "key", []byte(fieldPayload), now, ErrBadSignature},
		{"timestamp changed", "2026-01-31T18:42:01+0000", sig, "key", body, now, ErrBadSignature},
		{"no signature", ts, "", "key", body, now, ErrBadSignature},
		{"no timestamp", "", sig, "key", body, now, ErrBadSignature},
		{"not hex", ts, "zz", "key", body, now, ErrBadSignature},
		{"stale", ts, sig, "key", body, now.Add(10 * time.Minute), ErrStale},
		{"future", ts, sig, "key", body, now.Add(-10 * time.Minute), ErrStale},
		{"unreadable time", "yesterday", Sign("key", body, "yesterday"), "key", body, now, ErrStale},
	}
	for _, tt := range tests {
		err := Verify(tt.body, tt.ts, tt.sig, tt.secret, tt.at, 5*time.Minute)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("Verify(%s) error = %v; want %v", tt.name, err, tt.want)
		}
	}
}

func TestTerminated(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)
	day := func(s string) time.Time { d, _ := ParseDate(s); return d }
	tests := []struct {
		name     string
		e        Employee
		want     bool
		wantDue  time.Time
		wantDate time.Time
	}{
		{"inactive", Employee{Status: "Inactive"}, true, time.Time{}, time.Time{}},
		{"terminated, past date", Employee{Status: "Active", EmploymentStatus: "Terminated", TerminationDate: "2026-03-01"}, true, time.Time{}, day("2026-03-01")},
		{"terminated, future date", Employee{Status: "Active", EmploymentStatus: "Terminated", TerminationDate: "2026-04-01"}, true, day("2026-04-01"), day("2026-04-01")},
		{"future date only", Employee{Status: "Active", TerminationDate: "2026-04-01"}, true, day("2026-04-01"), day("2026-04-01")},
		{"today", Employee{Status: "Active", TerminationDate: "2026-03-10"}, true, time.Time{}, day("2026-03-10")},
		{"rehired (old date, active)", Employee{Status: "Active", EmploymentStatus: "Full-Time", TerminationDate: "2025-01-01"}, false, time.Time{}, time.Time{}},
		{"zero date", Employee{Status: "Active", TerminationDate: "0000-00-00"}, false, time.Time{}, time.Time{}},
		{"active", Employee{Status: "Active", EmploymentStatus: "Full-Time"}, false, time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		got := tt.e.Terminated(now)
		if got.Terminated != tt.want || !got.DueAt(now).Equal(tt.wantDue) || !got.Date.Equal(tt.wantDate) || got.Reason == "" {
			t.Errorf("Terminated(%s) = %+v, due %v; want %v, due %v", tt.name, got, got.DueAt(now), tt.want, tt.wantDue)
		}
	}
}

// TestGetEmployee reads an employee from a server answering as BambooHR's
// "Get Employee" does: JSON with the fields asked for, basic auth with
// the API key.
func TestGetEmployee(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, ok := r.BasicAuth()
		switch {
		case !ok || user != "api-key":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/api/gateway.php/acme/v1/employees/42/" && r.URL.Query().Get("fields") == employeeFields && r.Header.Get("Accept") == "application/json":
			json.NewEncoder(w).Encode(map[string]any{"id": "42", "workEmail": "Dee@A.example", "status": "Inactive", "employmentHistoryStatus": "Terminated", "terminationDate": "2026-03-01"})
		case strings.HasSuffix(r.URL.Path, "/500/"):
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	c := &Client{BaseURL: srv.URL, HTTP: srv.Client()}
	e, err := c.GetEmployee(context.Background(), "acme", "api-key", "42")
	if err != nil || e.WorkEmail != "dee@a.example" || e.Status != "Inactive" || e.TerminationDate != "2026-03-01" {
		t.Errorf("GetEmployee = %+v, %v; want dee, inactive", e, err)
	}
	for _, tc := range []struct {
		key, id   string
		status    int
		retryable bool
	}{{"wrong", "42", 401, false}, {"api-key", "7", 404, false}, {"api-key", "500", 503, true}} {
		_, err := c.GetEmployee(context.Background(), "acme", tc.key, tc.id)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Retryable != tc.retryable {
			t.Errorf("GetEmployee(%s, %s) error = %v; want status %d retryable %v", tc.key, tc.id, err, tc.status, tc.retryable)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(eventPayload))
	f.Add([]byte(fieldPayload))
	f.Fuzz(func(t *testing.T, body []byte) {
		cs, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		for _, c := range cs {
			if c.EmployeeID == "" || c.Type == "" || c.Timestamp == "" {
				t.Fatalf("Parse accepted %+v", c)
			}
			for _, r := range c.EmployeeID {
				if r < '0' || r > '9' {
					t.Fatalf("employee id %q is not numeric", c.EmployeeID)
				}
			}
			c.MayTerminate()
			FromFields(c.EmployeeID, c.Fields).Terminated(time.Now())
		}
	})
}

func FuzzVerify(f *testing.F) {
	body := []byte(eventPayload)
	f.Add(body, "2026-01-31T18:42:00+0000", Sign("key", body, "2026-01-31T18:42:00+0000"))
	f.Add([]byte("x"), "1769885000", "00")
	now, _ := time.Parse(time.RFC3339, "2026-01-31T18:43:00Z")
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		if Verify(body, ts, sig, "key", now, 5*time.Minute) == nil && !strings.EqualFold(strings.TrimSpace(sig), Sign("key", body, ts)) {
			t.Fatalf("Verify accepted signature %q for %q at %q", sig, body, ts)
		}
	})
}
