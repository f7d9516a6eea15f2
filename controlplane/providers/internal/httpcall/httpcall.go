// Package httpcall makes provider SDK calls observable as evidence: it
// records each call's status, request id and body through an SDK
// middleware, turns failures into *providers.Error, waits out one short
// 429 in place, and collects a RevokeUser run's actions and a usage
// capture's calls.
package httpcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
)

// Middleware has the shape of both SDKs' option.Middleware, so one value
// serves either.
type Middleware = func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error)

// maxBody bounds what is read of any response; admin API answers are far
// smaller, and the SDK gets the same bytes to decode.
const maxBody = 32 << 20

// Exchange is what one HTTP call returned.
type Exchange struct {
	// Method and Path (path and query) are the request's.
	Method, Path string
	Status       int
	RequestID    string
	Header       http.Header
	Body         []byte
}

// Caller makes one connector's calls.
type Caller struct {
	// Provider names the connector in errors and logs.
	Provider string
	// RequestIDHeader is the provider's request id header.
	RequestIDHeader string
	// Secret is the admin key, redacted from everything kept or returned.
	Secret string
	Opts   providers.Options
}

// Do runs call with a middleware that records the exchange. A failure is
// returned as *providers.Error with op as its context; a 429 whose
// Retry-After is within Opts.MaxInPlaceWait is waited out and retried once.
func (c *Caller) Do(ctx context.Context, op string, call func(Middleware) error) (Exchange, error) {
	return c.do(ctx, op, call, nil)
}

// do is Do telling observe about every attempt.
func (c *Caller) do(ctx context.Context, op string, call func(Middleware) error, observe func(Exchange, error)) (Exchange, error) {
	for attempt := 0; ; attempt++ {
		var ex Exchange
		err := call(recorder(&ex))
		ex.Body = c.redact(ex.Body)
		ex.Path = string(c.redact([]byte(ex.Path)))
		var perr error
		if err != nil {
			perr = c.errorOf(ctx, op, ex, err)
		}
		if observe != nil {
			observe(ex, perr)
		}
		if err == nil {
			return ex, nil
		}
		var pe *providers.Error
		if attempt == 0 && errors.As(perr, &pe) && pe.Status == http.StatusTooManyRequests &&
			pe.RetryAfter > 0 && pe.RetryAfter <= c.Opts.MaxInPlaceWait {
			c.Opts.Logger.Info("provider rate limit; waiting in place", "provider", c.Provider, "op", op,
				"retry_after", pe.RetryAfter, "request_id", pe.RequestID)
			if werr := c.Opts.Wait(ctx, pe.RetryAfter); werr != nil {
				return ex, fmt.Errorf("%s: %s: waiting out rate limit: %w", c.Provider, op, werr)
			}
			continue
		}
		return ex, perr
	}
}

func recorder(ex *Exchange) Middleware {
	return func(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
		*ex = Exchange{Method: req.Method, Path: req.URL.RequestURI(), Header: http.Header{}}
		resp, err := next(req)
		if err != nil || resp == nil {
			return resp, err
		}
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if rerr != nil {
			// A body cut short is a transport failure: status 0, retryable.
			return nil, fmt.Errorf("reading response: %w", rerr)
		}
		ex.Status, ex.Header, ex.Body = resp.StatusCode, resp.Header.Clone(), body
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil
	}
}

func (c *Caller) errorOf(ctx context.Context, op string, ex Exchange, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s: %w", c.Provider, op, ctx.Err())
	}
	e := &providers.Error{Provider: c.Provider, Op: op, Status: ex.Status}
	switch {
	case ex.Status == 0:
		e.Temporary = true
		e.Err = c.redactErr(err)
	case ex.Status < 400:
		// The provider said yes but the SDK could not read the answer.
		e.Message = "unreadable response: " + c.redactErr(err).Error()
	default:
		e.RequestID = ex.Header.Get(c.RequestIDHeader)
		e.Temporary = providers.RetryableStatus(ex.Status)
		e.RetryAfter = retryAfter(ex.Header, c.Opts.Clock.Now())
		var env struct {
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(ex.Body, &env) == nil {
			e.Type, e.Message = env.Error.Type, env.Error.Message
		}
	}
	return e
}

// retryAfter reads retry-after-ms, then Retry-After as seconds or an HTTP
// date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (c *Caller) redact(b []byte) []byte {
	if c.Secret == "" || !bytes.Contains(b, []byte(c.Secret)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(c.Secret), []byte("[redacted]"))
}

func (c *Caller) redactErr(err error) error {
	if c.Secret != "" && strings.Contains(err.Error(), c.Secret) {
		return errors.New(strings.ReplaceAll(err.Error(), c.Secret, "[redacted]"))
	}
	return err
}

// Revoke runs one mutating call for a (Kind, Resource, Scope) action and
// returns it completed: revoked on success, already_absent on 404, failed
// otherwise (with the error also returned).
func (c *Caller) Revoke(ctx context.Context, a providers.Action, op string, call func(Middleware) error) (providers.Action, error) {
	ex, err := c.Do(ctx, op, call)
	a.At = c.Opts.Clock.Now().UTC()
	a.Status = ex.Status
	a.RequestID = ex.Header.Get(c.RequestIDHeader)
	a.Response = Evidence(ex.Body)
	var pe *providers.Error
	switch {
	case err == nil:
		a.Outcome = providers.OutcomeRevoked
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		a.Outcome, err = providers.OutcomeAlreadyAbsent, nil
	default:
		a.Outcome = providers.OutcomeFailed
		a.Error = err.Error()
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	c.Opts.Logger.Log(ctx, level, "provider revocation", "provider", c.Provider, "kind", a.Kind,
		"resource", a.Resource, "scope", a.Scope, "outcome", a.Outcome, "status", a.Status, "request_id", a.RequestID)
	return a, err
}

// Absent is the action recording that a full scan found nothing of kind
// for the user (or, with a resource, that the resource was already gone).
func (c *Caller) Absent(kind, resource, scope string) providers.Action {
	return providers.Action{Kind: kind, Resource: resource, Scope: scope, Outcome: providers.OutcomeAlreadyAbsent, At: c.Opts.Clock.Now().UTC()}
}

// Evidence keeps a response body as JSON: the body itself when it is JSON
// and within providers.MaxEvidenceBytes, else a bounded text wrapper.
func Evidence(body []byte) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if len(body) <= providers.MaxEvidenceBytes && json.Valid(body) {
		var buf bytes.Buffer
		if json.Compact(&buf, body) == nil {
			return buf.Bytes()
		}
	}
	text := body
	if len(text) > providers.MaxEvidenceBytes {
		text = text[:providers.MaxEvidenceBytes]
	}
	b, _ := json.Marshal(struct {
		Truncated bool   `json:"truncated"`
		Bytes     int    `json:"bytes"`
		Text      string `json:"text"`
	}{len(body) > providers.MaxEvidenceBytes, len(body), string(text)})
	return b
}

// Trail collects the read calls of a usage capture, every attempt, as
// evidence.
type Trail struct {
	Calls []providers.Call
}

// Read is Do for a read call whose exchanges go into t (nil records
// nothing); keepBody says whether their responses are kept too.
func (c *Caller) Read(ctx context.Context, t *Trail, keepBody bool, op string, call func(Middleware) error) (Exchange, error) {
	if t == nil {
		return c.Do(ctx, op, call)
	}
	return c.do(ctx, op, call, func(ex Exchange, err error) {
		rec := providers.Call{Op: op, Method: ex.Method, Path: ex.Path, Status: ex.Status,
			RequestID: ex.Header.Get(c.RequestIDHeader), At: c.Opts.Clock.Now().UTC()}
		if keepBody {
			rec.Response = Evidence(ex.Body)
		}
		if err != nil {
			rec.Error = err.Error()
		}
		t.Calls = append(t.Calls, rec)
	})
}

// GetJSON returns a call for Do that GETs url with header through the
// middleware, and decodes a 2xx JSON answer into out: plain HTTP for the
// endpoints an SDK does not cover. Other answers are errors that Do turns
// into *providers.Error from the recorded exchange.
func GetJSON(ctx context.Context, client *http.Client, url string, header http.Header, out any) func(Middleware) error {
	return func(mw Middleware) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header = header.Clone()
		resp, err := mw(req, client.Do)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("reading response: %w", err)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("unexpected status %d", resp.StatusCode)
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decoding response: %w", err)
		}
		return nil
	}
}

// Run collects one RevokeUser call's actions and failures.
type Run struct {
	Rev      providers.Revocation
	provider string
	failures []error
}

// NewRun starts the record of a RevokeUser call.
func NewRun(provider, email string) *Run {
	return &Run{Rev: providers.Revocation{Provider: provider, Email: email, Actions: []providers.Action{}}, provider: provider}
}

// Add records an action and its error, and reports whether the run must
// stop: the admin key was rejected, the provider is rate limiting, no
// response came, or the context ended. Other failures (a 400 or 5xx on one
// resource) let the run go on with the rest.
func (r *Run) Add(a providers.Action, err error) (stop bool) {
	r.Rev.Actions = append(r.Rev.Actions, a)
	return r.Fail(err)
}

// Fail records a failure that is not an action (a list call) and reports
// whether the run must stop; nil records nothing.
func (r *Run) Fail(err error) (stop bool) {
	if err == nil {
		return false
	}
	r.failures = append(r.failures, err)
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Status == 0 {
		return true
	}
	return errors.Is(err, providers.ErrUnauthorized) || errors.Is(err, providers.ErrRateLimited)
}

// Failed reports whether anything failed so far.
func (r *Run) Failed() bool { return len(r.failures) > 0 }

// Err summarises the failures: nil, the only one, or the first retryable
// one (else the first) with the count, so that the run is retried when any
// part of it may still succeed.
func (r *Run) Err() error {
	switch len(r.failures) {
	case 0:
		return nil
	case 1:
		return r.failures[0]
	}
	pick := r.failures[0]
	for _, err := range r.failures {
		if providers.Retryable(err) {
			pick = err
			break
		}
	}
	return fmt.Errorf("%s: %d calls failed, e.g.: %w", r.provider, len(r.failures), pick)
}
