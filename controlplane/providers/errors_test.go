package providers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
)

func TestRetryable(t *testing.T) {
	t.Parallel()
	perr := func(status int) error {
		return &providers.Error{Provider: "openai", Op: "x", Status: status, Temporary: providers.RetryableStatus(status)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", perr(429), true},
		{"500", perr(500), true},
		{"529", perr(529), true},
		{"409", perr(409), true},
		{"400", perr(400), false},
		{"401", perr(401), false},
		{"403", perr(403), false},
		{"404", perr(404), false},
		{"network", &providers.Error{Provider: "openai", Op: "x", Temporary: true, Err: errors.New("connection refused")}, true},
		{"wrapped 503", fmt.Errorf("revoking: %w", perr(503)), true},
		{"permanent over 503", providers.Permanent(perr(503)), false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), true},
		{"net.Error", &net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{"unknown", errors.New("something"), false},
	}
	for _, tt := range tests {
		if got := providers.Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%s: %v) = %v; want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestErrorSentinels(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("step: %w", &providers.Error{Provider: "anthropic", Op: "listing users", Status: 401, Type: "authentication_error", Message: "invalid x-api-key", RequestID: "req_1"})
	for _, target := range []error{providers.ErrPermanent, providers.ErrUnauthorized} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false; want true", err, target)
		}
	}
	if errors.Is(err, providers.ErrRetryable) || errors.Is(err, providers.ErrRateLimited) {
		t.Errorf("401 matches ErrRetryable or ErrRateLimited")
	}
	want := "step: anthropic: listing users: 401 Unauthorized authentication_error: invalid x-api-key (request req_1)"
	if err.Error() != want {
		t.Errorf("Error() = %q; want %q", err.Error(), want)
	}
	if !errors.Is(providers.Permanent(errors.New("x")), providers.ErrPermanent) || providers.Permanent(nil) != nil {
		t.Errorf("Permanent does not mark errors or does not keep nil")
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("x: %w", &providers.Error{Status: 429, Temporary: true, RetryAfter: 7 * time.Second})
	if d, ok := providers.RetryAfter(err); !ok || d != 7*time.Second {
		t.Errorf("RetryAfter = %v, %v; want 7s, true", d, ok)
	}
	if d, ok := providers.RetryAfter(&providers.Error{Status: 503, Temporary: true}); ok {
		t.Errorf("RetryAfter(no header) = %v, true; want false", d)
	}
	if _, ok := providers.RetryAfter(errors.New("x")); ok {
		t.Errorf("RetryAfter(plain error) = true; want false")
	}
}
