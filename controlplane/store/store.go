// Package store is the control plane's storage seam: one interface, one
// package per backend (pg for Postgres, sqlite for the embedded default), and
// one conformance suite (storetest) that every backend's tests run.
//
// Times are stored in UTC with microsecond precision (what Postgres keeps):
// a value read back is the value written, truncated to the microsecond, in
// time.UTC. A zero time in an optional field (an ExpiresAt, CertNotAfter)
// reads back as the zero time.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Sentinel errors. Backends translate their own errors into these.
var (
	// ErrNotFound means no row matched (within the org given).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a uniqueness rule was broken (e.g. a second device
	// with the same org and serial, or a user email taken).
	ErrConflict = errors.New("conflict")
	// ErrInvalidCursor means a page cursor was not one the store issued.
	ErrInvalidCursor = errors.New("invalid page cursor")
)

// Store is everything the control plane keeps. Every method that reads or
// changes an org's data takes the org id and never reaches outside it.
// Methods that take no org id are the few lookups that establish the org
// (authenticating an API key or an enrollment secret).
//
// A reference to a row that is not in the given org (a device's UserID, a
// command's DeviceID or LockoutID, an unknown OrgID) gives ErrNotFound,
// exactly as if the row did not exist. Revoking twice keeps the first time.
type Store interface {
	PipelineStore
	AuditLog
	SnapshotStore
	UsageStore
	TriggerStore
	SCIMStore
	CustodyStore

	CreateOrg(ctx context.Context, p CreateOrgParams) (Org, error)
	GetOrg(ctx context.Context, orgID string) (Org, error)

	CreateAPIKey(ctx context.Context, p CreateAPIKeyParams) (APIKey, error)
	// GetAPIKeyByHash finds a key by the SHA-256 of its secret, in any org.
	// Revoked and expired keys are returned too: the caller decides.
	GetAPIKeyByHash(ctx context.Context, hash []byte) (APIKey, error)
	ListAPIKeys(ctx context.Context, orgID string) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, orgID, id string, at time.Time) error

	CreateEnrollmentSecret(ctx context.Context, p CreateEnrollmentSecretParams) (EnrollmentSecret, error)
	// GetEnrollmentSecretByHash finds a secret by the SHA-256 of its value, in any org.
	// Revoked and expired secrets are returned too: the caller decides.
	GetEnrollmentSecretByHash(ctx context.Context, hash []byte) (EnrollmentSecret, error)
	ListEnrollmentSecrets(ctx context.Context, orgID string) ([]EnrollmentSecret, error)
	RevokeEnrollmentSecret(ctx context.Context, orgID, id string, at time.Time) error

	// UpsertUser creates the user or returns the existing one with that email
	// (compared case-insensitively; stored lower-cased). A non-empty Name
	// replaces the stored one.
	UpsertUser(ctx context.Context, p UpsertUserParams) (User, error)
	GetUser(ctx context.Context, orgID, id string) (User, error)
	GetUserByEmail(ctx context.Context, orgID, email string) (User, error)
	ListUsers(ctx context.Context, orgID string) ([]User, error)

	// CreateDevice records an enrolled device. A non-empty Serial is unique
	// among the org's devices that are not revoked (ErrConflict), so a
	// revoked machine can enroll again.
	CreateDevice(ctx context.Context, p CreateDeviceParams) (Device, error)
	GetDevice(ctx context.Context, orgID, id string) (Device, error)
	ListDevices(ctx context.Context, p ListDevicesParams) ([]Device, error)
	// SetDeviceCert records the certificate a device now holds (enrollment, renewal).
	SetDeviceCert(ctx context.Context, p SetDeviceCertParams) error
	// RecordDeviceState stores what a device reported (hello, heartbeat).
	RecordDeviceState(ctx context.Context, p RecordDeviceStateParams) error
	// SetDeviceConnected marks a device's stream as open (connected=true) or
	// closed, at the given time; LastSeenAt is set either way.
	SetDeviceConnected(ctx context.Context, orgID, id string, connected bool, at time.Time) error
	RevokeDevice(ctx context.Context, orgID, id string, at time.Time) error

	// InsertCommand allocates the device's next sequence (strictly increasing
	// per device, starting at 1), calls p.Sign with it, and stores the signed
	// bytes it returns as a pending command, in one transaction. Subscribers
	// (SubscribeCommands) are notified after commit.
	InsertCommand(ctx context.Context, p InsertCommandParams) (Command, error)
	GetCommand(ctx context.Context, orgID, deviceID string, seq uint64) (Command, error)
	// ListUnackedCommands returns the device's pending and delivered commands
	// in sequence order.
	ListUnackedCommands(ctx context.Context, orgID, deviceID string) ([]Command, error)
	// MarkCommandDelivered moves a pending command to delivered (no-op otherwise).
	MarkCommandDelivered(ctx context.Context, orgID, deviceID string, seq uint64, at time.Time) error
	// AckCommand records the device's answer. Acking an acked command is a
	// no-op that returns the stored command.
	AckCommand(ctx context.Context, p AckCommandParams) (Command, error)
	// ListCommandsByLockout returns the commands issued for a lockout,
	// ordered by device id, then sequence.
	ListCommandsByLockout(ctx context.Context, orgID, lockoutID string) ([]Command, error)
	// CountCommandsByState counts commands across all orgs, for metrics.
	CountCommandsByState(ctx context.Context) (map[CommandState]int64, error)
	// SubscribeCommands delivers a notice for every command inserted after
	// the call returns, by any replica, until ctx ends; then the channel is
	// closed. A notice with an empty DeviceID means "notices may have been
	// missed; reload everything" (e.g. the Postgres listener reconnected).
	SubscribeCommands(ctx context.Context) (<-chan CommandNotice, error)

	// CreateLockout returns the user's open lockout if there is one
	// (created=false), else creates it (created=true).
	CreateLockout(ctx context.Context, p CreateLockoutParams) (l Lockout, created bool, err error)
	GetLockout(ctx context.Context, orgID, id string) (Lockout, error)
	ListLockouts(ctx context.Context, orgID string) ([]Lockout, error)
	// OverrideLockout closes an open lockout (state overridden). Overriding a
	// lockout that is not open returns ErrConflict.
	OverrideLockout(ctx context.Context, p OverrideLockoutParams) (Lockout, error)

	// GetPolicy returns the org's policy; an org without one gets a zero
	// Policy with its OrgID set and Version 0.
	GetPolicy(ctx context.Context, orgID string) (Policy, error)
	// PutPolicy replaces the org's policy and increments its version.
	PutPolicy(ctx context.Context, p PutPolicyParams) (Policy, error)

	// InTx runs fn in one transaction: the Store fn receives reads and
	// writes inside it, and tx is the backend's own transaction handle
	// (pgx.Tx for Postgres, *sql.Tx for SQLite) so that a job queue sharing
	// the database can enqueue in the same commit. If fn returns an error
	// nothing of it is kept. Inside, SubscribeCommands and Close are
	// refused, and InTx joins the transaction already open. Command notices
	// are delivered after commit.
	InTx(ctx context.Context, fn func(st Store, tx any) error) error

	// Ping checks the store can answer (readiness).
	Ping(ctx context.Context) error
	// Close releases the store and ends every subscription (their channels
	// close).
	Close() error
}

// NewID returns a random identifier with a readable prefix, e.g. "dev_3f2a...".
func NewID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: reading random bytes: " + err.Error())
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

type CreateOrgParams struct {
	Name      string
	CreatedAt time.Time
}

// APIKeyScope limits what an API key may do.
type APIKeyScope string

const (
	ScopeAdmin    APIKeyScope = "admin"
	ScopeReadOnly APIKeyScope = "read-only"
)

type APIKey struct {
	ID        string
	OrgID     string
	Name      string
	Scope     APIKeyScope
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

type CreateAPIKeyParams struct {
	OrgID     string
	Name      string
	Scope     APIKeyScope
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

type EnrollmentSecret struct {
	ID        string
	OrgID     string
	Name      string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

type CreateEnrollmentSecretParams struct {
	OrgID     string
	Name      string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

type User struct {
	ID        string
	OrgID     string
	Email     string
	Name      string
	CreatedAt time.Time
}

type UpsertUserParams struct {
	OrgID     string
	Email     string
	Name      string
	CreatedAt time.Time
}

type LockState string

const (
	LockStateUnknown  LockState = "unknown"
	LockStateUnlocked LockState = "unlocked"
	LockStateLocked   LockState = "locked"
)

type Device struct {
	ID           string
	OrgID        string
	UserID       string
	Hostname     string
	OS           string
	OSVersion    string
	Arch         string
	Serial       string
	AgentVersion string
	// Enforcers are the mechanisms the agent reported it can enforce with.
	Enforcers []string
	// Unsupported maps a mechanism the agent lacks to why.
	Unsupported  map[string]string
	CertSerial   string
	CertNotAfter time.Time
	CreatedAt    time.Time
	LastSeenAt   *time.Time
	Connected    bool
	LockState    LockState
	// EnforcementActive is whether the agent last said its enforcement is in force.
	EnforcementActive bool
	LastAppliedSeq    uint64
	// LastSeq is the highest sequence allocated to the device.
	LastSeq   uint64
	RevokedAt *time.Time
}

type CreateDeviceParams struct {
	OrgID        string
	UserID       string
	Hostname     string
	OS           string
	OSVersion    string
	Arch         string
	Serial       string
	AgentVersion string
	CreatedAt    time.Time
}

type ListDevicesParams struct {
	OrgID string
	// UserID, when set, keeps only that user's devices.
	UserID string
	// IncludeRevoked keeps revoked devices in the list.
	IncludeRevoked bool
}

type SetDeviceCertParams struct {
	OrgID        string
	DeviceID     string
	CertSerial   string
	CertNotAfter time.Time
}

type RecordDeviceStateParams struct {
	OrgID             string
	DeviceID          string
	AgentVersion      string
	Enforcers         []string
	Unsupported       map[string]string
	Locked            bool
	EnforcementActive bool
	LastAppliedSeq    uint64
	At                time.Time
}

type CommandKind string

const (
	CommandLock         CommandKind = "lock"
	CommandUnlock       CommandKind = "unlock"
	CommandPolicyUpdate CommandKind = "policy_update"
)

type CommandState string

const (
	CommandPending   CommandState = "pending"
	CommandDelivered CommandState = "delivered"
	CommandApplied   CommandState = "applied"
	CommandRejected  CommandState = "rejected"
)

type Command struct {
	OrgID     string
	DeviceID  string
	Seq       uint64
	Kind      CommandKind
	LockoutID string
	// Signed is the marshalled SignedCommand envelope, sent as is.
	Signed      []byte
	State       CommandState
	Reason      string
	Detail      string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	DeliveredAt *time.Time
	AckedAt     *time.Time
}

type InsertCommandParams struct {
	OrgID     string
	DeviceID  string
	Kind      CommandKind
	LockoutID string
	CreatedAt time.Time
	ExpiresAt time.Time
	// Sign is called inside the transaction with the allocated sequence and
	// returns the signed envelope to store. It must not touch the store.
	Sign func(seq uint64) ([]byte, error)
}

type AckCommandParams struct {
	OrgID    string
	DeviceID string
	Seq      uint64
	Applied  bool
	Reason   string
	Detail   string
	At       time.Time
}

// CommandNotice says a command was stored for a device.
type CommandNotice struct {
	OrgID    string
	DeviceID string
	Seq      uint64
}

type LockoutState string

const (
	LockoutOpen       LockoutState = "open"
	LockoutOverridden LockoutState = "overridden"
)

type Lockout struct {
	ID     string
	OrgID  string
	UserID string
	State  LockoutState
	// Trigger says who or what asked for it, e.g. "api:key_abc" or "okta:evt".
	Trigger        string
	CreatedAt      time.Time
	OverriddenAt   *time.Time
	OverrideReason string
	OverrideActor  string
}

type CreateLockoutParams struct {
	OrgID     string
	UserID    string
	Trigger   string
	CreatedAt time.Time
}

type OverrideLockoutParams struct {
	OrgID  string
	ID     string
	Reason string
	Actor  string
	At     time.Time
}

type Policy struct {
	OrgID     string
	Version   uint64
	Domains   []string
	CIDRs     []string
	UpdatedAt time.Time
}

type PutPolicyParams struct {
	OrgID     string
	Domains   []string
	CIDRs     []string
	UpdatedAt time.Time
}
