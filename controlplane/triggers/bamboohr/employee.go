package bamboohr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Employee is what a termination decision needs of an employee record,
// by BambooHR's API field names.
type Employee struct {
	ID string
	// WorkEmail is lower-cased; empty when BambooHR has none.
	WorkEmail string
	// Status is "Active" or "Inactive".
	Status string
	// EmploymentStatus is employmentHistoryStatus, e.g. "Terminated".
	EmploymentStatus string
	// TerminationDate is YYYY-MM-DD; empty (or 0000-00-00) when none.
	TerminationDate string
}

// FromFields reads an employee from a field-based payload's fields (by
// normalized name: API aliases and English names both work).
func FromFields(id string, fields map[string]string) Employee {
	e := Employee{ID: id, Status: fields["status"], TerminationDate: fields["terminationdate"]}
	e.EmploymentStatus = fields["employmenthistorystatus"]
	if e.EmploymentStatus == "" {
		e.EmploymentStatus = fields["employmentstatus"]
	}
	e.WorkEmail = cleanEmail(fields["workemail"])
	return e
}

// Complete reports whether the employee has what a decision needs without
// asking the API: an email and a status.
func (e Employee) Complete() bool {
	return e.WorkEmail != "" && (e.Status != "" || e.EmploymentStatus != "")
}

// Termination is a decision about an employee.
type Termination struct {
	Terminated bool
	// Date is the termination date (00:00 UTC of it); zero when unknown.
	Date time.Time
	// Reason says why, for the record.
	Reason string
}

// DueAt is when the lockout should start: the termination date's start
// when it is after now, else now (zero).
func (t Termination) DueAt(now time.Time) time.Time {
	if t.Date.After(now) {
		return t.Date
	}
	return time.Time{}
}

var dateRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})`)

// ParseDate reads a YYYY-MM-DD date (with anything after it, such as a
// time or an offset, ignored) as 00:00 UTC of that day; "" and 0000-00-00
// are no date.
func ParseDate(s string) (time.Time, bool) {
	m := dateRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || m[1] == "0000-00-00" {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02", m[1])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// Terminated decides whether the employee is terminated, as of now:
//   - status Inactive: terminated now;
//   - employment status Terminated: terminated, on the termination date
//     if there is one;
//   - a termination date: terminated on it, unless it has passed and the
//     status says Active (a rehire keeps the old date).
//
// A zero now leaves out the rehire rule (used to judge a payload alone).
func (e Employee) Terminated(now time.Time) Termination {
	date, hasDate := ParseDate(e.TerminationDate)
	switch {
	case strings.EqualFold(e.Status, "Inactive"):
		return Termination{Terminated: true, Reason: "status Inactive"}
	case strings.EqualFold(e.EmploymentStatus, "Terminated"):
		return Termination{Terminated: true, Date: date, Reason: "employment status Terminated"}
	case hasDate:
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		if !now.IsZero() && date.Before(today) && strings.EqualFold(e.Status, "Active") {
			return Termination{Reason: "termination date " + e.TerminationDate + " has passed and the status is Active"}
		}
		return Termination{Terminated: true, Date: date, Reason: "termination date " + e.TerminationDate}
	}
	return Termination{Reason: "not terminated"}
}

func cleanEmail(s string) string {
	l := strings.ToLower(strings.TrimSpace(s))
	a, err := mail.ParseAddress(l)
	if err != nil || a.Address != l || len(l) > 254 {
		return ""
	}
	return l
}

// DefaultBaseURL is BambooHR's API root.
const DefaultBaseURL = "https://api.bamboohr.com"

// Client reads employees from BambooHR's API.
type Client struct {
	// BaseURL is the API root (DefaultBaseURL; a fake's in tests).
	BaseURL string
	HTTP    *http.Client
}

// APIError is a BambooHR API call that did not answer 200.
type APIError struct {
	Status int
	// Retryable: worth trying again later (429, 5xx).
	Retryable bool
}

func (e *APIError) Error() string { return fmt.Sprintf("bamboohr api answered %d", e.Status) }

// employeeFields are the fields GetEmployee asks for.
const employeeFields = "workEmail,status,employmentHistoryStatus,terminationDate"

// GetEmployee reads an employee: GET
// /api/gateway.php/{subdomain}/v1/employees/{id}/?fields=..., with the API
// key as the basic-auth user (and any password, "x" by convention).
func (c *Client) GetEmployee(ctx context.Context, subdomain, apiKey, id string) (Employee, error) {
	u := strings.TrimRight(c.BaseURL, "/") + "/api/gateway.php/" + url.PathEscape(subdomain) + "/v1/employees/" + url.PathEscape(id) + "/?fields=" + employeeFields
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Employee{}, err
	}
	req.SetBasicAuth(apiKey, "x")
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Employee{}, fmt.Errorf("reading bamboohr employee %s: %w", id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Employee{}, fmt.Errorf("reading bamboohr employee %s: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Employee{}, fmt.Errorf("reading bamboohr employee %s: %w", id, &APIError{Status: resp.StatusCode,
			Retryable: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500})
	}
	var w map[string]json.RawMessage
	if err := json.Unmarshal(body, &w); err != nil {
		return Employee{}, fmt.Errorf("reading bamboohr employee %s: %w: %v", id, ErrMalformed, err)
	}
	fields := map[string]string{}
	for k, raw := range w {
		v, err := scalar(raw)
		if err == nil {
			fields[Normalize(k)] = v
		}
	}
	return FromFields(id, fields), nil
}
