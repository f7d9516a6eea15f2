package snapshot

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/anomaly"
)

// Input is everything a snapshot shows. The pipeline fills it from the
// store; Render only reads it, and renders the same bytes for the same
// Input.
type Input struct {
	// GeneratedAt is the snapshot's creation date, printed and stored in
	// the PDF's metadata. It comes from the caller (the time the pipeline
	// step first ran), never from the clock at render time, so that
	// rendering again gives the same bytes.
	GeneratedAt time.Time
	Org         Org
	User        User
	Lockout     Lockout
	Usage       Usage
	// Anomalies is the detector's report on the window; nil when detection
	// did not run, in which case AnomaliesMissing says why.
	Anomalies        *anomaly.Report
	AnomaliesMissing string
	// Revocations are the providers' confirmations, one per connected
	// provider, in the order to print them.
	Revocations []Revocation
	// Devices are the device locks, one per device that was sent a lock
	// command (or should have been), in the order to print them.
	Devices []DeviceLock
	Custody Custody
}

// Org is the customer organization.
type Org struct {
	ID   string
	Name string
}

// User is the departing person as the directory and the IdPs know them.
type User struct {
	ID    string
	Name  string
	Email string
	// IdPIDs are the person's identifiers at identity providers and HR
	// systems (Okta user id, SCIM id, employee number, ...).
	IdPIDs []IdPID
}

// IdPID is one identifier of the user at one system.
type IdPID struct {
	// System names the identity provider or HR system ("okta", "scim",
	// "bamboohr", "workday").
	System string
	ID     string
}

// Lockout is the lockout record and what asked for it.
type Lockout struct {
	ID        string
	CreatedAt time.Time
	// State is the lockout's state when the snapshot was made ("open",
	// "overridden").
	State string
	// Triggers are the requests for the lockout, oldest first.
	Triggers []Trigger
}

// Trigger is one request for the lockout.
type Trigger struct {
	// Source says what asked ("api:key_…", "okta", "scim", "bamboohr").
	Source string
	// Actor is who, when the source knows (an admin, an HR system user).
	Actor string
	At    time.Time
	// Evidence is the source's own record (vendor event ids, payload
	// hash), JSON; printed with its keys sorted.
	Evidence json.RawMessage
}

// Usage is the user's LLM use in the window before the lockout.
type Usage struct {
	// From and To bound the window (To is the lockout time).
	From, To time.Time
	// Events is the complete list, in the order to attach them (the
	// store's: by start time). Render prints summaries and the largest
	// events, and attaches every event as JSON Lines.
	Events []UsageEvent
	// Sources say where the events came from and what could not be read
	// ("device telemetry", "openai usage API: captured 2026-…"), one line
	// each; optional.
	Sources []string
}

// UsageEvent is one observation of the user's LLM use: a connection a
// device saw or a provider's usage record. Fields a source cannot know are
// left zero.
type UsageEvent struct {
	StartedAt time.Time
	EndedAt   time.Time
	// Source is "device" (agent telemetry) or "provider" (usage API).
	Source         string
	DeviceID       string
	Provider       string
	Model          string
	Domain         string
	RemoteAddr     string
	RemotePort     int
	Protocol       string
	BytesSent      int64
	BytesReceived  int64
	InputTokens    int64
	OutputTokens   int64
	Requests       int64
	ProcessName    string
	ProcessPath    string
	APIKeyID       string
	ProviderUserID string
}

// Revocation is one provider's revocation and its confirmation.
type Revocation struct {
	Provider string
	// State is "confirmed", "unconfirmed" or "pending".
	State    string
	Attempts int
	// UserFound says whether the provider had the user when it was asked.
	UserFound bool
	Resources []RevokedResource
	// Error is the last error when the revocation is not confirmed.
	Error string
	// Missing says why there is no confirmation, when there is none (no
	// connection, still retrying, ...).
	Missing   string
	UpdatedAt time.Time
}

// RevokedResource is one thing revoked at a provider, with the provider's
// confirmation.
type RevokedResource struct {
	// Kind is "org_membership", "api_key", "project_membership", ...
	Kind     string
	Resource string
	Scope    string
	// Outcome is "revoked", "already_absent" or "failed".
	Outcome   string
	RequestID string
	// Status is the HTTP status of the provider's answer (0: no call).
	Status int
	At     time.Time
	Error  string
}

// DeviceLock is one device's lock command and its acknowledgement.
type DeviceLock struct {
	DeviceID string
	Hostname string
	OS       string
	// Seq is the lock command's sequence number (0 when none was issued).
	Seq uint64
	// Status is the command's state: "applied", "rejected", "delivered",
	// "pending".
	Status   string
	IssuedAt time.Time
	// AckedAt is when the device answered; zero without an answer.
	AckedAt time.Time
	// Reason and Detail are the device's own words when it rejected.
	Reason, Detail string
	// Missing says why there is no acknowledgement (offline since …,
	// revoked, …), when there is none.
	Missing string
}

// Custody is the chain-of-custody record up to the snapshot: the evidence
// nodes, each hash-linked to its parents and timestamped. The snapshot's
// own node, which covers this PDF's hash, is necessarily recorded after it.
type Custody struct {
	Nodes []CustodyNode
	// TSAs describe the timestamping authorities the tokens came from.
	TSAs []TSA
}

// CustodyNode is one evidence event in the chain of custody.
type CustodyNode struct {
	// Hash is the node hash (hex SHA-256 over its canonical encoding).
	Hash string
	Kind string
	// Parents are the hashes of the nodes it builds on.
	Parents     []string
	PayloadHash string
	At          time.Time
	// TimestampedAt is the genTime of the RFC 3161 token over Hash; zero
	// when the node has no token yet.
	TimestampedAt time.Time
	// TSA names the authority that issued the token (see Custody.TSAs).
	TSA string
	// TokenSerial is the token's serial number, as the TSA wrote it.
	TokenSerial string
}

// TSA identifies a timestamping authority.
type TSA struct {
	Name string
	// URL is where it is reached.
	URL string
	// Certificate describes its signing certificate: subject, issuer,
	// serial and SHA-256 fingerprint.
	Subject, Issuer, Serial, Fingerprint string
}

// Validate reports the first thing that keeps the input from being a
// snapshot: a missing identity, lockout or time, or an event with no start.
func (in *Input) Validate() error {
	var errs []string
	need := func(ok bool, what string) {
		if !ok {
			errs = append(errs, what)
		}
	}
	need(!in.GeneratedAt.IsZero(), "generated-at time is missing")
	need(strings.TrimSpace(in.Org.ID) != "", "org id is missing")
	need(strings.TrimSpace(in.User.ID) != "", "user id is missing")
	need(strings.TrimSpace(in.User.Email) != "", "user email is missing")
	need(strings.TrimSpace(in.Lockout.ID) != "", "lockout id is missing")
	need(!in.Lockout.CreatedAt.IsZero(), "lockout time is missing")
	need(!in.Usage.From.IsZero() && !in.Usage.To.IsZero() && in.Usage.From.Before(in.Usage.To),
		"usage window must have a start before its end")
	for i, e := range in.Usage.Events {
		if e.StartedAt.IsZero() {
			errs = append(errs, fmt.Sprintf("usage event %d has no start time", i))
			break
		}
	}
	for i, t := range in.Lockout.Triggers {
		if len(t.Evidence) > 0 && !json.Valid(t.Evidence) {
			errs = append(errs, fmt.Sprintf("trigger %d evidence is not valid JSON", i))
		}
	}
	if in.Anomalies == nil && strings.TrimSpace(in.AnomaliesMissing) == "" {
		errs = append(errs, "anomaly report is missing and no reason is given")
	}
	if len(errs) > 0 {
		return errors.New("invalid snapshot input: " + strings.Join(errs, "; "))
	}
	return nil
}

// TSAFromCertificate describes a timestamping authority by its signing
// certificate (tsa.Token.Signer, or tsa.Local.SignerCertificate()).
func TSAFromCertificate(name, url string, cert *x509.Certificate) TSA {
	sum := sha256.Sum256(cert.Raw)
	return TSA{
		Name: name, URL: url,
		Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		Serial: cert.SerialNumber.Text(16), Fingerprint: hex.EncodeToString(sum[:]),
	}
}
