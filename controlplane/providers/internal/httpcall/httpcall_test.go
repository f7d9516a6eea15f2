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
