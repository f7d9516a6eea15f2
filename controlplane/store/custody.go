package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// CustodyStore keeps the chain of custody (package custody): evidence
// nodes in each org's append-only log, the RFC 3161 token of each node, and
// the org's signed checkpoints of that log. Nothing stored here is ever
// changed or removed; the databases refuse UPDATE and DELETE on these
// tables themselves.
type CustodyStore interface {
	// AppendCustodyNode puts a node at the end of the org's log (Index one
	// past the last, from 0). A node with the same (LockoutID, Kind,
	// Subject) already recorded is returned instead, with created=false, so
	// a retried job adds nothing; so is a node with the same Hash. Appends
	// for one org are serialized, across replicas too. A LockoutID or a
	// parent not in the org gives ErrNotFound; invalid params give
	// ErrInvalidCustodyNode.
	AppendCustodyNode(ctx context.Context, p AppendCustodyNodeParams) (n CustodyNode, created bool, err error)
	// GetCustodyNode returns the org's node with this hash, with its token
	// if it has one.
	GetCustodyNode(ctx context.Context, orgID string, hash []byte) (CustodyNode, error)
	// GetCustodyNodeAt returns the org's node at this log index.
	GetCustodyNodeAt(ctx context.Context, orgID string, index uint64) (CustodyNode, error)
	// ListCustodyNodes returns nodes by ascending index, with tokens.
	ListCustodyNodes(ctx context.Context, p ListCustodyNodesParams) ([]CustodyNode, error)
	// CustodyLogSize is the number of nodes in the org's log.
	CustodyLogSize(ctx context.Context, orgID string) (uint64, error)
	// CustodyLeaves returns the hashes of the org's first size nodes, in
	// index order (fewer when the log is shorter).
	CustodyLeaves(ctx context.Context, orgID string, size uint64) ([][]byte, error)

	// PutCustodyToken records the token of a node. A node has at most one
	// token and keeps the first: putting another returns the stored one
	// with created=false. An unknown node gives ErrNotFound.
	PutCustodyToken(ctx context.Context, p PutCustodyTokenParams) (t CustodyToken, created bool, err error)

	// AddCustodyCheckpoint records a signed checkpoint of the org's log.
	// One per size: adding a size already recorded returns the stored
	// checkpoint with created=false.
	AddCustodyCheckpoint(ctx context.Context, p AddCustodyCheckpointParams) (c CustodyCheckpoint, created bool, err error)
	// LatestCustodyCheckpoint returns the org's checkpoint of the largest
	// size; ErrNotFound when there is none.
	LatestCustodyCheckpoint(ctx context.Context, orgID string) (CustodyCheckpoint, error)
	// GetCustodyCheckpoint returns the org's checkpoint of this size.
	GetCustodyCheckpoint(ctx context.Context, orgID string, size uint64) (CustodyCheckpoint, error)
}

// Bounds on custody records.
const (
	// CustodyHashSize is the size of node, parent, payload and root hashes
	// (SHA-256).
	CustodyHashSize = 32
	// MaxCustodyPayloadBytes bounds a node's stored payload; bigger
	// evidence is stored elsewhere and the payload names its hash.
	MaxCustodyPayloadBytes = 1 << 20
	// MaxCustodyParents bounds a node's parents.
	MaxCustodyParents = 256
	// MaxCustodyFieldBytes bounds Kind, Subject and LockoutID.
	MaxCustodyFieldBytes = 256
	// MaxCustodyTokenBytes bounds a stored time-stamp token.
	MaxCustodyTokenBytes = 64 << 10
	// MaxCustodyNoteBytes bounds a stored checkpoint note.
	MaxCustodyNoteBytes = 16 << 10
	// DefaultCustodyPageLimit and MaxCustodyPageLimit are ListCustodyNodes' page sizes.
	DefaultCustodyPageLimit = 100
	MaxCustodyPageLimit     = 1000
)

// ErrInvalidCustodyNode means AppendCustodyNode was given a node it will
// not record.
var ErrInvalidCustodyNode = errors.New("invalid custody node")

// CustodyNode is one evidence event in an org's chain of custody.
type CustodyNode struct {
	OrgID string
	// Index is the node's place in the org's log (its Merkle leaf index).
	Index uint64
	// Hash is the node hash (custody.NodeHash) of the fields below.
	Hash        []byte
	LockoutID   string
	Kind        string
	Subject     string
	Parents     [][]byte
	PayloadHash []byte
	// Payload is the evidence itself, the bytes PayloadHash is over.
	Payload []byte
	At      time.Time
	// Token is the node's RFC 3161 token, nil until it is time-stamped.
	Token *CustodyToken
}

// AppendCustodyNodeParams is a node to append; the store assigns Index.
type AppendCustodyNodeParams struct {
	OrgID       string
	Hash        []byte
	LockoutID   string
	Kind        string
	Subject     string
	Parents     [][]byte
	PayloadHash []byte
	Payload     []byte
	At          time.Time
}

// Validate checks p's shape (not its hash, which package custody owns).
func (p AppendCustodyNodeParams) Validate() error {
	if p.OrgID == "" || p.LockoutID == "" || p.Kind == "" || p.At.IsZero() {
		return fmt.Errorf("%w: org, lockout, kind and time are required", ErrInvalidCustodyNode)
	}
	for name, v := range map[string]string{"kind": p.Kind, "subject": p.Subject, "lockout": p.LockoutID} {
		if len(v) > MaxCustodyFieldBytes || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: %s is not UTF-8 without NUL, of at most %d bytes", ErrInvalidCustodyNode, name, MaxCustodyFieldBytes)
		}
	}
	if len(p.Hash) != CustodyHashSize || len(p.PayloadHash) != CustodyHashSize {
		return fmt.Errorf("%w: hash and payload hash must be %d bytes", ErrInvalidCustodyNode, CustodyHashSize)
	}
	if len(p.Payload) > MaxCustodyPayloadBytes {
		return fmt.Errorf("%w: payload is %d bytes, more than %d", ErrInvalidCustodyNode, len(p.Payload), MaxCustodyPayloadBytes)
	}
	if len(p.Parents) > MaxCustodyParents {
		return fmt.Errorf("%w: %d parents, more than %d", ErrInvalidCustodyNode, len(p.Parents), MaxCustodyParents)
	}
	for i, h := range p.Parents {
		if len(h) != CustodyHashSize {
			return fmt.Errorf("%w: parent %d is %d bytes; want %d", ErrInvalidCustodyNode, i, len(h), CustodyHashSize)
		}
	}
	return nil
}

// JoinCustodyHashes concatenates 32-byte hashes, as the stores keep a
// node's parents in one column.
func JoinCustodyHashes(hs [][]byte) []byte {
	b := make([]byte, 0, len(hs)*CustodyHashSize)
	for _, h := range hs {
		b = append(b, h...)
	}
	return b
}

// SplitCustodyHashes reverses JoinCustodyHashes.
func SplitCustodyHashes(b []byte) ([][]byte, error) {
	if len(b)%CustodyHashSize != 0 {
		return nil, fmt.Errorf("custody parents column is %d bytes, not a multiple of %d", len(b), CustodyHashSize)
	}
	hs := make([][]byte, 0, len(b)/CustodyHashSize)
	for i := 0; i < len(b); i += CustodyHashSize {
		hs = append(hs, b[i:i+CustodyHashSize:i+CustodyHashSize])
	}
	return hs, nil
}

// ListCustodyNodesParams selects nodes.
type ListCustodyNodesParams struct {
	OrgID string
	// LockoutID, when set, keeps only that lockout's nodes.
	LockoutID string
	// Unstamped keeps only nodes without a token.
	Unstamped bool
	// AfterIndex continues after this index; -1 (or any negative) starts at 0.
	AfterIndex int64
	// Limit defaults to DefaultCustodyPageLimit, at most MaxCustodyPageLimit.
	Limit int
}

// CustodyPageLimit returns the page size ListCustodyNodes uses.
func CustodyPageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultCustodyPageLimit
	case limit > MaxCustodyPageLimit:
		return MaxCustodyPageLimit
	}
	return limit
}

// CustodyToken is a node's RFC 3161 time-stamp token.
type CustodyToken struct {
	OrgID    string
	NodeHash []byte
	// Token is the DER TimeStampToken over NodeHash.
	Token []byte
	// GenTime is the TSA's time in the token.
	GenTime time.Time
	// TSA names the signing TSA (its certificate subject).
	TSA string
	// StampedAt is when the token was stored.
	StampedAt time.Time
}

type PutCustodyTokenParams struct {
	OrgID     string
	NodeHash  []byte
	Token     []byte
	GenTime   time.Time
	TSA       string
	StampedAt time.Time
}

// CustodyCheckpoint is a signed checkpoint of an org's custody log.
type CustodyCheckpoint struct {
	OrgID    string
	Size     uint64
	RootHash []byte
	// Note is the signed note (C2SP tlog-checkpoint).
	Note []byte
	// Token is an RFC 3161 token over SHA-256(Note).
	Token     []byte
	CreatedAt time.Time
}

type AddCustodyCheckpointParams struct {
	OrgID     string
	Size      uint64
	RootHash  []byte
	Note      []byte
	Token     []byte
	CreatedAt time.Time
}
