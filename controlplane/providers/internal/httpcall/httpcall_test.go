package httpcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/internal/clock"
)

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		header map[string]string
		want   time.Duration
	}{
		{map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{}, 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != tt.want {
			t.Errorf("retryAfter(%v) = %v; want %v", tt.header, got, tt.want)
		}
	}
}

func TestEvidence(t *testing.T) {
	t.Parallel()
	if got := Evidence([]byte("{ \"id\": \"x\",\n \"deleted\": true }")); string(got) != `{"id":"x","deleted":true}` {
		t.Errorf("Evidence(json) = %s; want compacted JSON", got)
	}
	if got := Evidence(nil); got != nil {
		t.Errorf("Evidence(nil) = %s; want nil", got)
	}
	big := bytes.Repeat([]byte("a"), providers.MaxEvidenceBytes+10)
	var w struct {
		Truncated bool   `json:"truncated"`
		Bytes     int    `json:"bytes"`
		Text      string `json:"text"`
	}
	if err := json.Unmarshal(Evidence(big), &w); err != nil || !w.Truncated || w.Bytes != len(big) || len(w.Text) != providers.MaxEvidenceBytes {
		t.Errorf("Evidence(big) = truncated %v, bytes %d, text %d (%v); want truncated to %d", w.Truncated, w.Bytes, len(w.Text), err, providers.MaxEvidenceBytes)
	}
	if err := json.Unmarshal(Evidence([]byte("<html>bad gateway</html>")), &w); err != nil || w.Truncated || w.Text != "<html>bad gateway</html>" {
		t.Errorf("Evidence(html) = %+v (%v); want the text kept as JSON", w, err)
	}
}

// TestDoRedactsTheSecret covers a provider echoing the admin key back.
func TestDoRedactsTheSecret(t *testing.T) {
	t.Parallel()
	const secret = "sk-admin-SECRET123456"
	c := &Caller{Provider: "openai", RequestIDHeader: "X-Request-Id", Secret: secret,
		Opts: providers.Options{Clock: clock.NewFake(time.Unix(0, 0))}.WithDefaults("http://unused")}
	body := `{"error":{"message":"bad key ` + secret + `","type":"invalid_request_error"}}`
	a, err := c.Revoke(context.Background(), providers.Action{Kind: providers.KindAPIKey, Resource: "k"}, "deleting k",
		func(mw Middleware) error {
			req, _ := http.NewRequest(http.MethodDelete, "http://x/k", nil)
			resp, err := mw(req, func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 401, Header: http.Header{"X-Request-Id": {"req_9"}}, Body: io.NopCloser(strings.NewReader(body))}, nil
			})
			if err != nil {
				return err
			}
			resp.Body.Close()
			return errors.New("sdk: 401 for " + secret)
		})
	if !errors.Is(err, providers.ErrUnauthorized) || a.Outcome != providers.OutcomeFailed || a.RequestID != "req_9" {
		t.Fatalf("Revoke = %+v, %v; want failed unauthorized with request id", a, err)
	}
	for name, s := range map[string]string{"error": err.Error(), "action error": a.Error, "response": string(a.Response)} {
		if strings.Contains(s, secret) {
			t.Errorf("%s %q contains the secret", name, s)
		}
	}
}

// TestReadRecordsEveryAttempt covers a usage capture's evidence: the 429
// waited out in place and its retry are both kept, the secret nowhere.
func TestReadRecordsEveryAttempt(t *testing.T) {
	t.Parallel()
	const secret = "sk-admin-SECRET123456"
	now := time.Unix(1800000000, 0).UTC()
	c := &Caller{Provider: "openai", RequestIDHeader: "X-Request-Id", Secret: secret,
		Opts: providers.Options{Clock: clock.NewFake(now), Wait: func(context.Context, time.Duration) error { return nil }}.WithDefaults("http://unused")}
	answers := []struct {
		status int
		body   string
		header http.Header
	}{
		{429, `{"error":{"message":"slow down","type":"requests"}}`, http.Header{"X-Request-Id": {"req_1"}, "Retry-After": {"1"}}},
		{200, `{"object":"page","echo":"` + secret + `"}`, http.Header{"X-Request-Id": {"req_2"}}},
	}
	i := 0
	var out struct {
		Object string `json:"object"`
	}
	tr := &Trail{}
	_, err := c.Read(context.Background(), tr, true, "reading usage", func(mw Middleware) error {
		a := answers[i]
		i++
		return GetJSON(context.Background(), &http.Client{Transport: roundTrip(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: a.status, Header: a.header, Body: io.NopCloser(strings.NewReader(a.body))}, nil
		})}, "http://x/v1/usage?q=1", http.Header{"Authorization": {"Bearer " + secret}}, &out)(mw)
	})
	if err != nil || out.Object != "page" {
		t.Fatalf("Read = %v, decoded %+v; want nil and the page", err, out)
	}
	if len(tr.Calls) != 2 {
		t.Fatalf("Read recorded %d calls; want 2", len(tr.Calls))
	}
	first, second := tr.Calls[0], tr.Calls[1]
	if first.Status != 429 || first.RequestID != "req_1" || first.Error == "" || first.Method != "GET" || first.Path != "/v1/usage?q=1" || !first.At.Equal(now) {
		t.Errorf("first call = %+v; want the 429 with its request id, error, method, path and time", first)
	}
	if second.Status != 200 || second.RequestID != "req_2" || second.Error != "" || strings.Contains(string(second.Response), secret) {
		t.Errorf("second call = %+v; want the 200 with the secret redacted", second)
	}

	// Without keepBody, nothing of the body is kept; a 200 that does not
	// decode is a permanent "unreadable response".
	tr = &Trail{}
	_, err = c.Read(context.Background(), tr, false, "listing users", GetJSON(context.Background(),
		&http.Client{Transport: roundTrip(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("<html>"))}, nil
		})}, "http://x/v1/users", nil, &out))
	if err == nil || providers.Retryable(err) || len(tr.Calls) != 1 || tr.Calls[0].Response != nil {
		t.Errorf("Read(bad JSON) = %v, calls %+v; want a permanent error and one call without body", err, tr.Calls)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
