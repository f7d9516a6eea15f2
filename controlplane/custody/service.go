package custody

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// Timestamper obtains a verified RFC 3161 token over a SHA-256 digest;
// *tsa.Client and *tsa.Local are ones.
type Timestamper interface {
	Timestamp(ctx context.Context, digest []byte) (*tsa.Token, error)
}

// CheckpointSink receives every checkpoint as it is made: the write-once
// bucket, the anchor outside the database. PutCheckpoint may be called
// again with the same org, size and bytes (after a crash, or by another
// replica) and must then succeed without writing anything different.
type CheckpointSink interface {
	PutCheckpoint(ctx context.Context, orgID string, size uint64, note []byte, tsToken []byte) error
}

// DefaultOrigin is the origin prefix of checkpoints when none is configured.
const DefaultOrigin = "toktra/custody"

// Config configures a Service.
type Config struct {
	Store store.Store
	// TSA time-stamps nodes and checkpoints.
	TSA Timestamper
	// Key signs checkpoints.
	Key *CheckpointKey
	// Origin prefixes each org's log origin ("<Origin>/<org id>"); use the
	// control plane's public name. Default DefaultOrigin.
	Origin string
	// Sink receives checkpoints; nil keeps them in the database only.
	Sink   CheckpointSink
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service records evidence nodes, time-stamps them, and checkpoints each
// org's log. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// anchored is the largest checkpoint size this process has handed to
	// the sink, per org, so a checkpoint whose sink write failed is handed
	// over again by the next Checkpoint call.
	anchored map[string]uint64
}

// NewService checks cfg and returns a Service.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.TSA == nil || cfg.Key == nil {
		return nil, errors.New("custody: a store, a TSA and a checkpoint key are required")
	}
	if cfg.Origin == "" {
		cfg.Origin = DefaultOrigin
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	l := cfg.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: l, anchored: map[string]uint64{}}, nil
}

// Origin is the origin line of orgID's checkpoints.
func (s *Service) Origin(orgID string) string { return s.cfg.Origin + "/" + orgID }

// VerifierKey is the public key that checks checkpoints, in signed-note form.
func (s *Service) VerifierKey() string { return s.cfg.Key.VerifierKey }

// RecordParams is an evidence event to record.
type RecordParams struct {
	OrgID     string
	LockoutID string
	// Kind is one of the Kind constants (or another short name).
	Kind string
	// Subject tells events of one kind apart within a lockout: the
	// provider, the device id; "" for one-per-lockout events.
	Subject string
	// Payload is the evidence itself (canonical JSON, a manifest naming the
	// hash of larger evidence), at most store.MaxCustodyPayloadBytes.
	Payload []byte
	// Parents are the hashes of the nodes this event follows from.
	Parents [][]byte
}

// Record adds an evidence node in st, which is the Store that
// store.Store.InTx passes (so the node commits with the caller's own
// writes) or nil for the Service's store. It is idempotent per (lockout,
// kind, subject): recording the same event again returns the first node,
// whatever the payload now is. The node is not yet time-stamped: call
// Stamp (or StampPending) after the transaction commits.
func (s *Service) Record(ctx context.Context, st store.CustodyStore, p RecordParams) (store.CustodyNode, error) {
	if st == nil {
		st = s.cfg.Store
	}
	at := s.cfg.Clock.Now().UTC().Truncate(time.Microsecond)
	payloadHash := PayloadHash(p.Payload)
	hash := NodeHash(p.OrgID, p.LockoutID, p.Kind, p.Subject, p.Parents, payloadHash, at)
	n, created, err := st.AppendCustodyNode(ctx, store.AppendCustodyNodeParams{
		OrgID: p.OrgID, Hash: hash, LockoutID: p.LockoutID, Kind: p.Kind, Subject: p.Subject,
		Parents: p.Parents, PayloadHash: payloadHash, Payload: p.Payload, At: at,
	})
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("recording %s evidence: %w", p.Kind, err)
	}
	if !created && !bytes.Equal(n.PayloadHash, payloadHash) {
		s.log.Warn("custody event recorded again with a different payload; the first stands",
			"org", p.OrgID, "lockout", p.LockoutID, "kind", p.Kind, "subject", p.Subject)
	}
	return n, nil
}

// Stamp time-stamps the node with hash, unless it already has a token, and
// returns it with its token. Call it outside any transaction: a TSA may
// take seconds.
func (s *Service) Stamp(ctx context.Context, orgID string, hash []byte) (store.CustodyNode, error) {
	n, err := s.cfg.Store.GetCustodyNode(ctx, orgID, hash)
	if err != nil {
		return store.CustodyNode{}, err
	}
	if n.Token != nil {
		return n, nil
	}
	tok, err := s.cfg.TSA.Timestamp(ctx, n.Hash)
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("time-stamping custody node %x: %w", n.Hash, err)
	}
	t, _, err := s.cfg.Store.PutCustodyToken(ctx, store.PutCustodyTokenParams{
		OrgID: orgID, NodeHash: n.Hash, Token: tok.DER, GenTime: tok.Time, TSA: tok.TSAName(), StampedAt: s.cfg.Clock.Now(),
	})
	if err != nil {
		return store.CustodyNode{}, err
	}
	n.Token = &t
	return n, nil
}

// StampPending time-stamps the org's nodes that have no token yet (only
// lockoutID's, when set) and returns how many it stamped.
func (s *Service) StampPending(ctx context.Context, orgID, lockoutID string) (int, error) {
	stamped := 0
	for {
		ns, err := s.cfg.Store.ListCustodyNodes(ctx, store.ListCustodyNodesParams{
			OrgID: orgID, LockoutID: lockoutID, Unstamped: true, AfterIndex: -1, Limit: store.MaxCustodyPageLimit,
		})
		if err != nil {
			return stamped, err
		}
		if len(ns) == 0 {
			return stamped, nil
		}
		for _, n := range ns {
			if _, err := s.Stamp(ctx, orgID, n.Hash); err != nil {
				return stamped, err
			}
			stamped++
		}
	}
}

// Checkpoint returns a signed, time-stamped checkpoint of the org's whole
// log, making one if the log grew since the last, and hands it to the sink
// (again, if this process has not yet done so successfully).
func (s *Service) Checkpoint(ctx context.Context, orgID string) (store.CustodyCheckpoint, error) {
	size, err := s.cfg.Store.CustodyLogSize(ctx, orgID)
	if err != nil {
		return store.CustodyCheckpoint{}, err
	}
	c, err := s.cfg.Store.GetCustodyCheckpoint(ctx, orgID, size)
	if errors.Is(err, store.ErrNotFound) {
		c, err = s.makeCheckpoint(ctx, orgID, size)
	}
	if err != nil {
		return store.CustodyCheckpoint{}, err
	}
	if err := s.anchor(ctx, c); err != nil {
		return c, err
	}
	return c, nil
}

func (s *Service) makeCheckpoint(ctx context.Context, orgID string, size uint64) (store.CustodyCheckpoint, error) {
	leaves, err := s.cfg.Store.CustodyLeaves(ctx, orgID, size)
	if err != nil {
		return store.CustodyCheckpoint{}, err
	}
	if uint64(len(leaves)) != size {
		return store.CustodyCheckpoint{}, fmt.Errorf("custody log of org %s: read %d leaves; want %d", orgID, len(leaves), size)
	}
	root, err := newTree(leaves).root(size)
	if err != nil {
		return store.CustodyCheckpoint{}, err
	}
	body := log.Checkpoint{Origin: s.Origin(orgID), Size: size, Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, s.cfg.Key.Signer)
	if err != nil {
		return store.CustodyCheckpoint{}, fmt.Errorf("signing checkpoint %d of org %s: %w", size, orgID, err)
	}
	digest := sha256.Sum256(signed)
	tok, err := s.cfg.TSA.Timestamp(ctx, digest[:])
	if err != nil {
		return store.CustodyCheckpoint{}, fmt.Errorf("time-stamping checkpoint %d of org %s: %w", size, orgID, err)
	}
	// Another replica may have recorded this size first; its checkpoint
	// (the same signed note, another token) is then the one kept.
	c, _, err := s.cfg.Store.AddCustodyCheckpoint(ctx, store.AddCustodyCheckpointParams{
		OrgID: orgID, Size: size, RootHash: root, Note: signed, Token: tok.DER, CreatedAt: s.cfg.Clock.Now(),
	})
	return c, err
}

func (s *Service) anchor(ctx context.Context, c store.CustodyCheckpoint) error {
	if s.cfg.Sink == nil {
		return nil
	}
	s.mu.Lock()
	done, ok := s.anchored[c.OrgID]
	s.mu.Unlock()
	if ok && done >= c.Size {
		return nil
	}
	if err := s.cfg.Sink.PutCheckpoint(ctx, c.OrgID, c.Size, c.Note, c.Token); err != nil {
		return fmt.Errorf("anchoring checkpoint %d of org %s: %w", c.Size, c.OrgID, err)
	}
	s.mu.Lock()
	s.anchored[c.OrgID] = max(s.anchored[c.OrgID], c.Size)
	s.mu.Unlock()
	return nil
}

// LatestCheckpoint returns the org's latest recorded checkpoint.
func (s *Service) LatestCheckpoint(ctx context.Context, orgID string) (store.CustodyCheckpoint, error) {
	return s.cfg.Store.LatestCustodyCheckpoint(ctx, orgID)
}

// InclusionProof proves the node at index is in the org's log at size.
func (s *Service) InclusionProof(ctx context.Context, orgID string, index, size uint64) ([][]byte, error) {
	t, err := s.treeOf(ctx, orgID, size)
	if err != nil {
		return nil, err
	}
	return t.inclusion(index, size)
}

// ConsistencyProof proves the org's log at size1 is a prefix of it at size2.
func (s *Service) ConsistencyProof(ctx context.Context, orgID string, size1, size2 uint64) ([][]byte, error) {
	t, err := s.treeOf(ctx, orgID, size2)
	if err != nil {
		return nil, err
	}
	return t.consistency(size1, size2)
}

// RootAt is the org's log root hash at size.
func (s *Service) RootAt(ctx context.Context, orgID string, size uint64) ([]byte, error) {
	t, err := s.treeOf(ctx, orgID, size)
	if err != nil {
		return nil, err
	}
	return t.root(size)
}

// ErrBeyondLog means a tree size larger than the org's log was asked for.
var ErrBeyondLog = errors.New("tree size beyond the log")

func (s *Service) treeOf(ctx context.Context, orgID string, size uint64) (*tree, error) {
	leaves, err := s.cfg.Store.CustodyLeaves(ctx, orgID, size)
	if err != nil {
		return nil, err
	}
	if uint64(len(leaves)) < size {
		return nil, fmt.Errorf("%w: size %d, log has %d nodes", ErrBeyondLog, size, len(leaves))
	}
	return newTree(leaves), nil
}
