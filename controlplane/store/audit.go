package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditLog is the org's append-only record of every admin action,
// configuration change and data access. Entries form one hash chain per
// org; there is no way to change or remove one, and the databases refuse
// UPDATE and DELETE on the table themselves.
type AuditLog interface {
	// AppendAudit adds an entry at the end of the org's chain: the next
	// sequence (1 for the first), PrevHash the previous entry's Hash (32
	// zero bytes for the first) and Hash computed by AuditHash. Appends for
	// one org are serialized, across replicas too, so the chain never
	// forks. An unknown org gives ErrNotFound; invalid params give
	// ErrInvalidAuditEntry.
	AppendAudit(ctx context.Context, p AppendAuditParams) (AuditEntry, error)
	// ListAudit returns the org's entries oldest first (ascending Seq,
	// which is the chain's order), filtered and paged by an opaque cursor.
	ListAudit(ctx context.Context, p ListAuditParams) (AuditPage, error)
}

// Bounds on what an audit entry may hold.
const (
	// MaxAuditDetailBytes bounds an entry's Detail (compacted JSON).
	MaxAuditDetailBytes = 4096
	// MaxAuditFieldBytes bounds each of Actor, Action, Target.Type,
	// Target.ID and RemoteIP.
	MaxAuditFieldBytes = 512
)

// Page sizes of ListAudit.
const (
	DefaultAuditPageLimit = 100
	MaxAuditPageLimit     = 1000
)

// ErrInvalidAuditEntry means AppendAudit was given an entry it will not
// record (a missing field, a field too long, Detail not a JSON object).
var ErrInvalidAuditEntry = errors.New("invalid audit entry")

// AuditHashSize is the length of an entry's Hash and PrevHash (SHA-256).
const AuditHashSize = sha256.Size

// AuditTarget names what an entry is about, e.g. {Type: "lockouts",
// ID: "lck_..."}. ID is empty for a collection or an org-wide singleton
// such as the policy.
type AuditTarget struct {
	Type string
	ID   string
}

// AuditEntry is one link of an org's audit chain.
type AuditEntry struct {
	OrgID string
	// Seq is the entry's place in the org's chain: 1, 2, 3, ... without gaps.
	Seq uint64
	ID  string
	// At is when the action happened (UTC, microseconds).
	At time.Time
	// Actor is who acted, e.g. "api-key:key_..." or "system".
	Actor string
	// Action is what was done, e.g. "lockouts.create" or "devices.read".
	Action string
	Target AuditTarget
	// Detail is a JSON object, never secrets, in canonical form: compact,
	// with <, >, &, U+2028 and U+2029 escaped as encoding/json does.
	Detail json.RawMessage
	// RemoteIP is the client's address, empty when there was none.
	RemoteIP string
	// PrevHash is the previous entry's Hash, 32 zero bytes for Seq 1.
	PrevHash []byte
	// Hash is AuditHash of this entry.
	Hash []byte
}

// AppendAuditParams is an entry to append; the store assigns Seq, ID,
// PrevHash and Hash.
type AppendAuditParams struct {
	OrgID  string
	At     time.Time
	Actor  string
	Action string
	Target AuditTarget
	// Detail must be a JSON object or empty (recorded as {}).
	Detail   json.RawMessage
	RemoteIP string
}

// ListAuditParams selects a page of an org's audit log. Every filter that
// is set must match exactly.
type ListAuditParams struct {
	OrgID      string
	Actor      string
	Action     string
	TargetType string
	TargetID   string
	// From (inclusive) and To (exclusive) bound At when non-zero.
	From, To time.Time
	// Cursor continues a previous page; empty starts at the oldest entry.
	Cursor string
	// Limit defaults to DefaultAuditPageLimit, at most MaxAuditPageLimit.
	Limit int
}

// AuditPage is one page of ListAudit.
type AuditPage struct {
	Entries []AuditEntry
	// NextCursor is empty on the last page.
	NextCursor string
}

// NewAuditEntry validates p and returns the entry that follows the org's
// head (the entry with sequence prevSeq and hash prevHash; 0 and nil for an
// empty chain), with its Hash computed. Backends call it while holding the
// org's chain lock.
func NewAuditEntry(p AppendAuditParams, id string, prevSeq uint64, prevHash []byte) (AuditEntry, error) {
	if p.OrgID == "" || p.Actor == "" || p.Action == "" || p.At.IsZero() {
		return AuditEntry{}, fmt.Errorf("%w: org, actor, action and time are required", ErrInvalidAuditEntry)
	}
	for name, v := range map[string]string{"actor": p.Actor, "action": p.Action, "target type": p.Target.Type, "target id": p.Target.ID, "remote ip": p.RemoteIP} {
		// NUL is refused because Postgres text cannot hold it.
		if len(v) > MaxAuditFieldBytes || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return AuditEntry{}, fmt.Errorf("%w: %s is not UTF-8 without NUL, of at most %d bytes", ErrInvalidAuditEntry, name, MaxAuditFieldBytes)
		}
	}
	detail, err := compactDetail(p.Detail)
	if err != nil {
		return AuditEntry{}, err
	}
	if prevSeq == 0 {
		prevHash = make([]byte, AuditHashSize)
	}
	if len(prevHash) != AuditHashSize {
		return AuditEntry{}, fmt.Errorf("audit chain head of org %s has a %d-byte hash", p.OrgID, len(prevHash))
	}
	e := AuditEntry{
		OrgID: p.OrgID, Seq: prevSeq + 1, ID: id, At: p.At.UTC().Truncate(time.Microsecond),
		Actor: p.Actor, Action: p.Action, Target: p.Target, Detail: detail, RemoteIP: p.RemoteIP,
		PrevHash: bytes.Clone(prevHash),
	}
	e.Hash = AuditHash(e)
	return e, nil
}

func compactDetail(d json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(d)) == 0 {
		return json.RawMessage("{}"), nil
	}
	var compact, buf bytes.Buffer
	if err := json.Compact(&compact, d); err != nil {
		return nil, fmt.Errorf("%w: detail: %w", ErrInvalidAuditEntry, err)
	}
	if compact.Bytes()[0] != '{' {
		return nil, fmt.Errorf("%w: detail must be a JSON object", ErrInvalidAuditEntry)
	}
	// Escaped the way encoding/json writes a json.RawMessage, so the
	// detail an API response carries compacts back to these exact bytes.
	json.HTMLEscape(&buf, compact.Bytes())
	if buf.Len() > MaxAuditDetailBytes {
		return nil, fmt.Errorf("%w: detail is %d bytes, more than %d", ErrInvalidAuditEntry, buf.Len(), MaxAuditDetailBytes)
	}
	return buf.Bytes(), nil
}

// auditHashDomain starts every hashed encoding, so an audit hash can never
// be mistaken for the hash of anything else, and the encoding can change
// under a new version.
const auditHashDomain = "toktra.audit.v1"

// AuditHash returns the SHA-256 that links e into its chain, computed over
// an unambiguous encoding of every field except Hash itself. Each field is
// written as a 4-byte big-endian length followed by its bytes, in this
// order:
//
//	"toktra.audit.v1"
//	OrgID
//	Seq             8 bytes, big-endian
//	ID
//	At              8 bytes, big-endian two's complement Unix microseconds (UTC)
//	Actor
//	Action
//	Target.Type
//	Target.ID
//	Detail          the stored canonical JSON, byte for byte
//	RemoteIP
//	PrevHash        32 bytes
//
// Strings are their UTF-8 bytes. Length prefixes make the encoding
// injective: no two different entries encode to the same bytes.
func AuditHash(e AuditEntry) []byte {
	var b []byte
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	u64 := func(v uint64) { field(binary.BigEndian.AppendUint64(nil, v)) }
	field([]byte(auditHashDomain))
	field([]byte(e.OrgID))
	u64(e.Seq)
	field([]byte(e.ID))
	u64(uint64(e.At.UnixMicro()))
	field([]byte(e.Actor))
	field([]byte(e.Action))
	field([]byte(e.Target.Type))
	field([]byte(e.Target.ID))
	field(e.Detail)
	field([]byte(e.RemoteIP))
	field(e.PrevHash)
	h := sha256.Sum256(b)
	return h[:]
}

// VerifyAuditChain checks that entries are a contiguous run of one org's
// chain, in order: each entry's Hash is AuditHash of its fields, each
// follows the one before it (next Seq, PrevHash equal to its Hash), and an
// entry with Seq 1 has a PrevHash of 32 zero bytes. A run that starts past
// Seq 1 is anchored by its first entry's PrevHash, which the caller can
// compare with the entry before it. Filtered pages are not contiguous and
// do not verify; list without filters to verify.
func VerifyAuditChain(entries []AuditEntry) error {
	for i, e := range entries {
		if !bytes.Equal(AuditHash(e), e.Hash) {
			return fmt.Errorf("audit entry %d (%s): hash does not match its contents", e.Seq, e.ID)
		}
		if i == 0 {
			if e.Seq == 0 {
				return fmt.Errorf("audit entry %s: sequence 0", e.ID)
			}
			if e.Seq == 1 && !bytes.Equal(e.PrevHash, make([]byte, AuditHashSize)) {
				return fmt.Errorf("audit entry 1 (%s): previous hash is not zero", e.ID)
			}
			continue
		}
		prev := entries[i-1]
		if e.OrgID != prev.OrgID {
			return fmt.Errorf("audit entry %d (%s): org %s follows org %s", e.Seq, e.ID, e.OrgID, prev.OrgID)
		}
		if e.Seq != prev.Seq+1 {
			return fmt.Errorf("audit entry %d (%s): follows entry %d", e.Seq, e.ID, prev.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev.Hash) {
			return fmt.Errorf("audit entry %d (%s): previous hash does not match entry %d", e.Seq, e.ID, prev.Seq)
		}
	}
	return nil
}

// EncodeAuditCursor returns the ListAudit cursor that continues after the
// entry with sequence seq: base64url of its decimal sequence.
func EncodeAuditCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(seq, 10)))
}

// DecodeAuditCursor returns the sequence a ListAudit cursor continues
// after; a cursor the store did not issue gives ErrInvalidCursor.
func DecodeAuditCursor(c string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidCursor, err)
	}
	seq, err := strconv.ParseUint(string(b), 10, 63)
	if err != nil || seq == 0 {
		return 0, ErrInvalidCursor
	}
	return seq, nil
}

// AuditPageLimit returns the page size ListAudit uses for a requested limit.
func AuditPageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultAuditPageLimit
	case limit > MaxAuditPageLimit:
		return MaxAuditPageLimit
	}
	return limit
}
