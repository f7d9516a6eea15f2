package providers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Sentinels that a connector's errors match with errors.Is. Every *Error
// matches exactly one of ErrRetryable and ErrPermanent.
var (
	// ErrRetryable marks a failure worth retrying later: 408, 409, 429,
	// 5xx (including Anthropic's 529), or no response at all.
	ErrRetryable = errors.New("retryable provider failure")
	// ErrPermanent marks a failure that a retry will not fix: a rejected
	// admin key (401, 403), a bad request (400), or a caller's verdict
	// (see Permanent).
	ErrPermanent = errors.New("permanent provider failure")
	// ErrUnauthorized marks a 401 or 403: the admin key is wrong, revoked
	// or lacks the admin scope.
	ErrUnauthorized = errors.New("provider rejected the admin key")
	// ErrRateLimited marks a 429.
	ErrRateLimited = errors.New("provider rate limit")
)

// Error is a failed call to a provider's API.
type Error struct {
	// Provider is the connector's Name.
	Provider string
	// Op says what was being done, lowercase ("deleting project api key
	// key_1 in proj_1").
	Op string
	// Status is the HTTP status; 0 when no response arrived.
	Status int
	// RequestID is the provider's request id header, when a response
	// arrived.
	RequestID string
	// Type and Message are from the provider's error envelope
	// {"error":{"type","message"}}, with the admin key redacted.
	Type, Message string
	// RetryAfter is the provider's Retry-After (or retry-after-ms); 0 when
	// it sent none.
	RetryAfter time.Duration
	// Temporary says whether a later retry may succeed.
	Temporary bool
	// Err is the transport failure behind a Status 0 error, if any.
	Err error
}

// Error describes the failure without the admin key.
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s: ", e.Provider, e.Op)
	if e.Status == 0 {
		if e.Err != nil {
			return msg + e.Err.Error()
		}
		return msg + "no response"
	}
	msg += fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	if e.Type != "" {
		msg += " " + e.Type
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// Unwrap exposes the sentinels that classify e, and the transport error.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 3)
	if e.Temporary {
		errs = append(errs, ErrRetryable)
	} else {
		errs = append(errs, ErrPermanent)
	}
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		errs = append(errs, ErrUnauthorized)
	case http.StatusTooManyRequests:
		errs = append(errs, ErrRateLimited)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// RetryableStatus reports whether a response with this HTTP status is
// worth retrying later.
func RetryableStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status == http.StatusTooManyRequests:
		return true
	case status >= 500:
		return true
	}
	return false
}

// Retryable reports whether the operation that returned err may succeed if
// tried again later: a provider's 408/409/429/5xx, a network failure, or an
// interrupted call (context canceled or timed out). Errors marked with
// Permanent, 4xx answers and errors it does not recognise are not.
func Retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrPermanent):
		return false
	case errors.Is(err, ErrRetryable):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// RetryAfter returns how long the provider asked the caller to wait before
// trying again, if it said.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// Permanent marks err as not worth retrying, whatever it wraps; nil stays
// nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (p permanentError) Error() string   { return p.err.Error() }
func (p permanentError) Unwrap() []error { return []error{ErrPermanent, p.err} }
