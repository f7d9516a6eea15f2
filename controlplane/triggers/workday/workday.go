// Package workday reads terminations from a Workday custom report served
// as JSON by Reports-as-a-Service (RaaS), authenticating with an
// integration system user's password or an OAuth refresh token.
//
// The report is the common minimal integration: a custom report of
// terminations, shared with the integration system user, with two prompts
// whose web service aliases are From_Moment and To_Moment (the window of
// completed termination events to return). Each Report_Entry has these
// fields (by their XML aliases):
//
//	Worker_ID               required  the worker's Employee ID
//	Termination_Date        required  YYYY-MM-DD (an offset after it is ignored)
//	Event_ID                optional  the termination event's reference id;
//	                                  deduplicates with Worker_ID (default:
//	                                  "termination:" + Termination_Date)
//	Email_Address           optional  the work email (also Work_Email, Email)
//	Event_Completed_Moment  optional  ISO 8601; entries completed before the
//	                                  window are dropped
//	Rescinded               optional  1/true: the termination was rescinded
//
// Values may be JSON strings, numbers or booleans.
package workday

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on a report.
const (
	MaxEntries     = 100_000
	MaxReportBytes = 32 << 20
	maxStringBytes = 2048
)

// ErrMalformed means the report is not a RaaS JSON report of the expected
// fields.
var ErrMalformed = errors.New("malformed workday report")

// Entry is one termination in the report.
type Entry struct {
	WorkerID        string
	Email           string
	TerminationDate string
	EventID         string
	// Completed is when the termination event completed; zero if absent.
	Completed time.Time
	Rescinded bool
}

// fieldAliases maps each Entry field to the report field names accepted.
var fieldAliases = map[string][]string{
	"worker":    {"Worker_ID", "Employee_ID", "WorkerID"},
	"email":     {"Email_Address", "Work_Email", "Email"},
	"date":      {"Termination_Date", "TerminationDate"},
	"event":     {"Event_ID", "EventID"},
	"completed": {"Event_Completed_Moment", "Completed_Moment"},
	"rescinded": {"Rescinded", "Is_Rescinded"},
}

// ParseReport reads a RaaS JSON report ({"Report_Entry": [...]}).
func ParseReport(body []byte) ([]Entry, error) {
	var w struct {
		Entries []map[string]json.RawMessage `json:"Report_Entry"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if w.Entries == nil {
		// An empty report is {"Report_Entry": []}; a missing key is not one.
		var probe map[string]json.RawMessage
		if json.Unmarshal(body, &probe) != nil || probe["Report_Entry"] == nil {
			return nil, fmt.Errorf("%w: Report_Entry is required", ErrMalformed)
		}
	}
	if len(w.Entries) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries; at most %d", ErrMalformed, len(w.Entries), MaxEntries)
	}
	out := make([]Entry, 0, len(w.Entries))
	for i, raw := range w.Entries {
		get := func(field string) (string, error) {
			for _, name := range fieldAliases[field] {
				if v, ok := raw[name]; ok {
					s, err := scalar(v)
					if err != nil {
						return "", fmt.Errorf("%s: %v", name, err)
					}
					if len(s) > maxStringBytes {
						return "", fmt.Errorf("%s: longer than %d bytes", name, maxStringBytes)
					}
					return strings.TrimSpace(s), nil
				}
			}
			return "", nil
		}
		var (
			e      Entry
			errs   []error
			values = map[string]string{}
		)
		for field := range fieldAliases {
			v, err := get(field)
			if err != nil {
				errs = append(errs, err)
			}
			values[field] = v
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("%w: Report_Entry[%d]: %v", ErrMalformed, i, err)
		}
		e.WorkerID, e.TerminationDate, e.EventID = values["worker"], values["date"], values["event"]
		e.Email = cleanEmail(values["email"])
		if e.WorkerID == "" {
			return nil, fmt.Errorf("%w: Report_Entry[%d]: Worker_ID is required", ErrMalformed, i)
		}
		if _, err := time.Parse("2006-01-02", dateOnly(e.TerminationDate)); err != nil {
			return nil, fmt.Errorf("%w: Report_Entry[%d]: Termination_Date must be YYYY-MM-DD", ErrMalformed, i)
		}
		if e.EventID == "" {
			e.EventID = "termination:" + dateOnly(e.TerminationDate)
		}
		if c := values["completed"]; c != "" {
			t, err := time.Parse(time.RFC3339Nano, c)
			if err != nil {
				if t, err = time.Parse("2006-01-02T15:04:05.000-07:00", c); err != nil {
					return nil, fmt.Errorf("%w: Report_Entry[%d]: Event_Completed_Moment must be ISO 8601", ErrMalformed, i)
				}
			}
			e.Completed = t
		}
		switch strings.ToLower(values["rescinded"]) {
		case "1", "true", "yes":
			e.Rescinded = true
		}
		out = append(out, e)
	}
	return out, nil
}

func dateOnly(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

// Date is the entry's termination date, 00:00 UTC.
func (e Entry) Date() time.Time {
	t, _ := time.Parse("2006-01-02", dateOnly(e.TerminationDate))
	return t
}

func scalar(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return strconv.FormatBool(b), nil
	}
	return "", errors.New("not a string, number or boolean")
}

func cleanEmail(s string) string {
	l := strings.ToLower(strings.TrimSpace(s))
	a, err := mail.ParseAddress(l)
	if err != nil || a.Address != l || len(l) > 254 {
		return ""
	}
	return l
}

// Auth is how the report is fetched: Username and Password (HTTP basic,
// an integration system user), or an OAuth refresh token exchanged at
// TokenURL with the API client's id and secret.
type Auth struct {
	Username, Password string

	TokenURL, ClientID, ClientSecret, RefreshToken string
}

// OAuth reports whether the refresh-token grant is used.
func (a Auth) OAuth() bool { return a.RefreshToken != "" }

// Client fetches the report.
type Client struct {
	HTTP *http.Client
}

// FetchError is a call to Workday that did not answer 200.
type FetchError struct {
	What   string
	Status int
}

func (e *FetchError) Error() string { return fmt.Sprintf("workday %s answered %d", e.What, e.Status) }

// Fetch reads the report for the window [from, to): the report URL with
// format=json and the From_Moment and To_Moment prompts added.
func (c *Client) Fetch(ctx context.Context, reportURL string, auth Auth, from, to time.Time) ([]Entry, error) {
	u, err := url.Parse(reportURL)
	if err != nil {
		return nil, fmt.Errorf("report url: %w", err)
	}
	q := u.Query()
	q.Set("format", "json")
	q.Set("From_Moment", from.UTC().Format(time.RFC3339))
	q.Set("To_Moment", to.UTC().Format(time.RFC3339))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if auth.OAuth() {
		token, err := c.accessToken(ctx, auth)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	} else {
		req.SetBasicAuth(auth.Username, auth.Password)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the workday report: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the workday report: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &FetchError{What: "report", Status: resp.StatusCode}
	}
	if len(body) > MaxReportBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxReportBytes)
	}
	entries, err := ParseReport(body)
	if err != nil {
		return nil, err
	}
	// Drop what completed before the window (when the report says).
	kept := entries[:0]
	for _, e := range entries {
		if e.Completed.IsZero() || !e.Completed.Before(from) {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// accessToken exchanges the refresh token for an access token
// (grant_type=refresh_token, the client authenticated with HTTP basic).
func (c *Client) accessToken(ctx context.Context, a Auth) (string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(a.ClientID), url.QueryEscape(a.ClientSecret))
	resp, err := c.http().Do(req)
	if err != nil {
		return "", fmt.Errorf("getting a workday access token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("getting a workday access token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", &FetchError{What: "token endpoint", Status: resp.StatusCode}
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", errors.New("workday token endpoint: no access_token in the answer")
	}
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		return "", fmt.Errorf("workday token endpoint: token type %q is not bearer", tok.TokenType)
	}
	return tok.AccessToken, nil
}
