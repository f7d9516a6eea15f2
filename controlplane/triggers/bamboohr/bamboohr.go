// Package bamboohr reads BambooHR webhooks (both the event-based and the
// legacy field-based payloads), checks their HMAC signature and
// timestamp, tells a termination from other changes, and reads an
// employee from BambooHR's API when the payload does not say enough.
package bamboohr

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Headers BambooHR sends with every webhook.
const (
	TimestampHeader = "X-BambooHR-Timestamp"
	SignatureHeader = "X-BambooHR-Signature"
)

// Errors of Parse and Verify, for the caller to map to a status.
var (
	ErrMalformed    = errors.New("malformed bamboohr webhook")
	ErrBadSignature = errors.New("bamboohr webhook signature does not match")
	ErrStale        = errors.New("bamboohr webhook timestamp is outside the replay window")
)

// Limits on a payload.
const (
	MaxEmployees   = 1000
	maxStringBytes = 2048
	maxFields      = 200
)

// Payload formats.
const (
	FormatEvent = "event"
	FormatField = "field"
)

// Change is one employee's change as a webhook reported it.
type Change struct {
	// Format is FormatEvent (employee.updated with changedFields) or
	// FormatField (the legacy employees[] with fields).
	Format     string
	EmployeeID string
	// Type is the event type (employee.updated) or the field-based action
	// (Updated).
	Type      string
	Timestamp string
	// ChangedFields are the monitored fields that changed, as sent.
	ChangedFields []string
	// Fields are the field-based payload's posted values, by normalized
	// name (see Normalize).
	Fields map[string]string
}

// EventID is what identifies the change for deduplication, together with
// the employee id: its type and timestamp.
func (c Change) EventID() string { return c.Type + "@" + c.Timestamp }

// Normalize makes BambooHR's field names comparable across its API
// aliases and English names: lower case, letters and digits only
// ("Termination Date" and "terminationDate" are both "terminationdate").
func Normalize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// terminationFields are the (normalized) fields whose change may be a
// termination: the status, the employment status (its API alias and its
// English name) and the termination date.
var terminationFields = map[string]bool{
	"status": true, "employmenthistorystatus": true, "employmentstatus": true, "terminationdate": true,
}

// MayTerminate reports whether the change touches a field a termination
// changes, so it deserves a look; other changes are acknowledged and
// dropped.
func (c Change) MayTerminate() bool {
	if c.Format == FormatEvent && c.Type != "employee.updated" {
		return false
	}
	if c.Format == FormatField && !strings.EqualFold(c.Type, "Updated") {
		return false
	}
	for _, f := range c.ChangedFields {
		if terminationFields[Normalize(f)] {
			return true
		}
	}
	return c.Format == FormatField && FromFields(c.EmployeeID, c.Fields).Terminated(time.Time{}).Terminated
}

type wireEvent struct {
	Type      *string `json:"type"`
	Timestamp *string `json:"timestamp"`
	Data      *struct {
		CompanyID     json.RawMessage `json:"companyId"`
		EmployeeID    json.RawMessage `json:"employeeId"`
		ChangedFields []string        `json:"changedFields"`
	} `json:"data"`
	Employees []*wireEmployee `json:"employees"`
}

type wireEmployee struct {
	ID            json.RawMessage            `json:"id"`
	Action        *string                    `json:"action"`
	Timestamp     *string                    `json:"timestamp"`
	ChangedFields []string                   `json:"changedFields"`
	Fields        map[string]json.RawMessage `json:"fields"`
}

// Parse reads a webhook body in either format.
func Parse(body []byte) ([]Change, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	var out []Change
	switch {
	case w.Data != nil && w.Employees == nil:
		c := Change{Format: FormatEvent, Type: str(w.Type), Timestamp: str(w.Timestamp), ChangedFields: w.Data.ChangedFields}
		var err error
		if c.EmployeeID, err = id(w.Data.EmployeeID); err != nil {
			return nil, fmt.Errorf("%w: data.employeeId: %v", ErrMalformed, err)
		}
		if c.Type == "" || c.Timestamp == "" {
			return nil, fmt.Errorf("%w: type and timestamp are required", ErrMalformed)
		}
		out = append(out, c)
	case w.Employees != nil && w.Data == nil:
		if len(w.Employees) > MaxEmployees {
			return nil, fmt.Errorf("%w: %d employees; at most %d", ErrMalformed, len(w.Employees), MaxEmployees)
		}
		for i, e := range w.Employees {
			if e == nil {
				return nil, fmt.Errorf("%w: employees[%d] is null", ErrMalformed, i)
			}
			c := Change{Format: FormatField, Type: str(e.Action), Timestamp: str(e.Timestamp), ChangedFields: e.ChangedFields}
			var err error
			if c.EmployeeID, err = id(e.ID); err != nil {
				return nil, fmt.Errorf("%w: employees[%d].id: %v", ErrMalformed, i, err)
			}
			if c.Type == "" || c.Timestamp == "" {
				return nil, fmt.Errorf("%w: employees[%d]: action and timestamp are required", ErrMalformed, i)
			}
			if len(e.Fields) > maxFields {
				return nil, fmt.Errorf("%w: employees[%d]: more than %d fields", ErrMalformed, i, maxFields)
			}
			c.Fields = map[string]string{}
			for k, raw := range e.Fields {
				v, err := scalar(raw)
				if err != nil {
					return nil, fmt.Errorf("%w: employees[%d].fields: %v", ErrMalformed, i, err)
				}
				c.Fields[Normalize(k)] = v
			}
			out = append(out, c)
		}
	default:
		return nil, fmt.Errorf("%w: neither an event-based (data) nor a field-based (employees) payload", ErrMalformed)
	}
	for _, c := range out {
		if len(c.ChangedFields) > maxFields {
			return nil, fmt.Errorf("%w: more than %d changed fields", ErrMalformed, maxFields)
		}
		for _, s := range append([]string{c.EmployeeID, c.Type, c.Timestamp}, c.ChangedFields...) {
			if len(s) > maxStringBytes {
				return nil, fmt.Errorf("%w: a field is longer than %d bytes", ErrMalformed, maxStringBytes)
			}
		}
		for _, v := range c.Fields {
			if len(v) > maxStringBytes {
				return nil, fmt.Errorf("%w: a field is longer than %d bytes", ErrMalformed, maxStringBytes)
			}
		}
	}
	return out, nil
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// id reads an employee id, sent as a string or a number.
func id(raw json.RawMessage) (string, error) {
	v, err := scalar(raw)
	if err != nil {
		return "", err
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("required")
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return "", errors.New("not a number")
		}
	}
	return v, nil
}

// scalar reads a JSON string, number, boolean or null as text.
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

// Sign returns the signature BambooHR sends: hex HMAC-SHA256 of the raw
// body followed by the timestamp header's value.
func Sign(secret string, body []byte, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	m.Write([]byte(timestamp))
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a webhook's signature, then that its timestamp is within
// window of now. The timestamp is ISO 8601 (as BambooHR's payloads write
// it, e.g. 2026-01-31T18:42:00+0000) or Unix seconds.
func Verify(body []byte, timestamp, signature, secret string, now time.Time, window time.Duration) error {
	if timestamp == "" || signature == "" {
		return fmt.Errorf("%w: %s and %s are required", ErrBadSignature, TimestampHeader, SignatureHeader)
	}
	got, err := hex.DecodeString(strings.TrimSpace(signature))
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: not a hex SHA-256", ErrBadSignature)
	}
	want, _ := hex.DecodeString(Sign(secret, body, timestamp))
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	at, err := ParseTime(timestamp)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStale, err)
	}
	if d := now.Sub(at); d > window || d < -window {
		return fmt.Errorf("%w: sent %s from now; the window is %s", ErrStale, d.Round(time.Second), window)
	}
	return nil
}

// ParseTime reads a BambooHR timestamp.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is neither ISO 8601 nor Unix seconds", clip(s))
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
