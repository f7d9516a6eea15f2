// Package okta reads Okta event hook deliveries: the one-time
// verification, the shared secret Okta sends in the Authorization header,
// the HMAC signature a signing proxy may add, and the System Log events a
// delivery carries.
package okta

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// Headers Okta (or a signing proxy in front of it) sends.
const (
	// VerificationHeader carries the one-time verification challenge of a
	// GET request; the answer is {"verification": <the value>}.
	VerificationHeader = "X-Okta-Verification-Challenge"
	// SignatureHeader is Toktra's own, optional: "t=<unix seconds>,v1=<hex
	// HMAC-SHA256 of "<t>.<raw body>" keyed with the hook's secret>". Okta
	// does not sign deliveries; a proxy or Okta Workflows flow in front of
	// the hook may, and then the signature is checked too.
	SignatureHeader = "X-Toktra-Signature"
)

// EventDeactivate is the System Log event type of a user's deactivation.
const EventDeactivate = "user.lifecycle.deactivate"

// Limits on what a delivery may hold; Okta batches up to a few dozen
// events, each a few kilobytes.
const (
	MaxEvents      = 1000
	maxStringBytes = 2048
)

// Errors of Parse and the checks, for the caller to map to a status.
var (
	// ErrMalformed: the body is not an event hook delivery.
	ErrMalformed = errors.New("malformed okta event hook delivery")
	// ErrBadSignature: the signature header is present and does not match.
	ErrBadSignature = errors.New("okta delivery signature does not match")
	// ErrStale: the signature's time is outside the replay window.
	ErrStale = errors.New("okta delivery signature is stale")
)

// Delivery is one event hook request: Okta's envelope around a batch of
// System Log events.
type Delivery struct {
	EventType string
	EventID   string
	EventTime string
	// Source is the event hook's URL at Okta, e.g.
	// https://acme.okta.com/api/v1/eventHooks/who8....
	Source string
	Events []Event
}

// Event is one System Log event.
type Event struct {
	UUID      string
	Published string
	EventType string
	// Outcome is outcome.result ("SUCCESS", "FAILURE", ...); empty if absent.
	Outcome string
	Actor   Target
	Targets []Target
}

// Target is a System Log actor or target.
type Target struct {
	ID          string
	Type        string
	AlternateID string
	DisplayName string
}

// Deactivation is a successful user.lifecycle.deactivate of one User target.
type Deactivation struct {
	Event Event
	User  Target
	// Email is the target's alternateId (its login) lower-cased when it is
	// an email address; empty otherwise.
	Email string
}

type wireTarget struct {
	ID          *string `json:"id"`
	Type        *string `json:"type"`
	AlternateID *string `json:"alternateId"`
	DisplayName *string `json:"displayName"`
}

type wireEvent struct {
	UUID      *string `json:"uuid"`
	Published *string `json:"published"`
	EventType *string `json:"eventType"`
	Outcome   *struct {
		Result *string `json:"result"`
	} `json:"outcome"`
	Actor  *wireTarget   `json:"actor"`
	Target []*wireTarget `json:"target"`
}

type wireDelivery struct {
	EventType *string `json:"eventType"`
	EventID   *string `json:"eventId"`
	EventTime *string `json:"eventTime"`
	Source    *string `json:"source"`
	Data      *struct {
		Events []*wireEvent `json:"events"`
	} `json:"data"`
}

// Parse reads a delivery's body. It requires the envelope's eventId and,
// for each event, its uuid and eventType; other fields may be absent.
func Parse(body []byte) (Delivery, error) {
	var w wireDelivery
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return Delivery{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Delivery{}, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	d := Delivery{EventType: str(w.EventType), EventID: str(w.EventID), EventTime: str(w.EventTime), Source: str(w.Source)}
	if d.EventID == "" {
		return Delivery{}, fmt.Errorf("%w: eventId is required", ErrMalformed)
	}
	if d.EventType != "" && d.EventType != "com.okta.event_hook" {
		return Delivery{}, fmt.Errorf("%w: eventType %q is not com.okta.event_hook", ErrMalformed, clip(d.EventType))
	}
	if w.Data == nil || w.Data.Events == nil {
		return Delivery{}, fmt.Errorf("%w: data.events is required", ErrMalformed)
	}
	if len(w.Data.Events) > MaxEvents {
		return Delivery{}, fmt.Errorf("%w: %d events; at most %d", ErrMalformed, len(w.Data.Events), MaxEvents)
	}
	for i, we := range w.Data.Events {
		if we == nil {
			return Delivery{}, fmt.Errorf("%w: data.events[%d] is null", ErrMalformed, i)
		}
		e := Event{UUID: str(we.UUID), Published: str(we.Published), EventType: str(we.EventType), Actor: target(we.Actor)}
		if we.Outcome != nil {
			e.Outcome = str(we.Outcome.Result)
		}
		if e.UUID == "" || e.EventType == "" {
			return Delivery{}, fmt.Errorf("%w: data.events[%d]: uuid and eventType are required", ErrMalformed, i)
		}
		for _, t := range we.Target {
			if t != nil {
				e.Targets = append(e.Targets, target(t))
			}
		}
		d.Events = append(d.Events, e)
	}
	for _, s := range d.strings() {
		if len(s) > maxStringBytes {
			return Delivery{}, fmt.Errorf("%w: a field is longer than %d bytes", ErrMalformed, maxStringBytes)
		}
	}
	return d, nil
}

func (d Delivery) strings() []string {
	out := []string{d.EventType, d.EventID, d.EventTime, d.Source}
	for _, e := range d.Events {
		out = append(out, e.UUID, e.Published, e.EventType, e.Outcome, e.Actor.ID, e.Actor.Type, e.Actor.AlternateID, e.Actor.DisplayName)
		for _, t := range e.Targets {
			out = append(out, t.ID, t.Type, t.AlternateID, t.DisplayName)
		}
	}
	return out
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func target(t *wireTarget) Target {
	if t == nil {
		return Target{}
	}
	return Target{ID: str(t.ID), Type: str(t.Type), AlternateID: str(t.AlternateID), DisplayName: str(t.DisplayName)}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Deactivations returns the delivery's successful user deactivations, one
// per User target (a failed deactivation deactivated no one). Targets
// without an id are skipped: the id is what deduplicates them.
func (d Delivery) Deactivations() []Deactivation {
	var out []Deactivation
	for _, e := range d.Events {
		if e.EventType != EventDeactivate || (e.Outcome != "" && !strings.EqualFold(e.Outcome, "SUCCESS")) {
			continue
		}
		for _, t := range e.Targets {
			if t.Type != "User" || t.ID == "" {
				continue
			}
			out = append(out, Deactivation{Event: e, User: t, Email: EmailOf(t.AlternateID)})
		}
	}
	return out
}

// EmailOf returns login lower-cased if it is a plain email address.
func EmailOf(login string) string {
	l := strings.ToLower(strings.TrimSpace(login))
	a, err := mail.ParseAddress(l)
	if err != nil || a.Address != l || len(l) > 254 {
		return ""
	}
	return l
}

// CheckAuthorization reports whether the Authorization header Okta sent
// is the hook's secret, in constant time.
func CheckAuthorization(header, secret string) bool {
	if secret == "" {
		return false
	}
	h := sha256.Sum256([]byte(header))
	s := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], s[:]) == 1
}

// Sign returns a SignatureHeader value for body at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a SignatureHeader value against body, accepting
// a time within window of now either way. Any of several v1 values may
// match (a proxy rotating its key sends both).
func VerifySignature(header, secret string, body []byte, now time.Time, window time.Duration) error {
	var (
		ts   string
		sigs [][]byte
	)
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %s must be t=<unix seconds>,v1=<hex>", ErrBadSignature, SignatureHeader)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: v1 is not a hex SHA-256", ErrBadSignature)
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: %s needs t and v1", ErrBadSignature, SignatureHeader)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("%w: signed %s from now; the window is %s", ErrStale, d.Round(time.Second), window)
	}
	return nil
}
