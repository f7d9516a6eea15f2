package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed custody.sql
	custodySQL     string
	custodyQueries = sqlq.MustParse(custodySQL)

	qLockCustodyLog          = custodyQueries.MustGet("LockCustodyLog")
	qCustodyLogSize          = custodyQueries.MustGet("CustodyLogSize")
	qCustodyNodeExists       = custodyQueries.MustGet("CustodyNodeExists")
	qFindCustodyNodeByKey    = custodyQueries.MustGet("FindCustodyNodeByKey")
	qInsertCustodyNode       = custodyQueries.MustGet("InsertCustodyNode")
	qGetCustodyNode          = custodyQueries.MustGet("GetCustodyNode")
	qGetCustodyNodeAt        = custodyQueries.MustGet("GetCustodyNodeAt")
	qListCustodyNodes        = custodyQueries.MustGet("ListCustodyNodes")
	qCustodyLeaves           = custodyQueries.MustGet("CustodyLeaves")
	qInsertCustodyToken      = custodyQueries.MustGet("InsertCustodyToken")
	qGetCustodyToken         = custodyQueries.MustGet("GetCustodyToken")
	qInsertCustodyCheckpoint = custodyQueries.MustGet("InsertCustodyCheckpoint")
	qGetCustodyCheckpoint    = custodyQueries.MustGet("GetCustodyCheckpoint")
	qLatestCustodyCheckpoint = custodyQueries.MustGet("LatestCustodyCheckpoint")
)

// AppendCustodyNode appends a node to the org's log, or returns the node
// already recorded for the same event. A transaction-scoped advisory lock
// on the org serializes appends across replicas: the log size is read only
// once the lock is held, so indexes never repeat or skip.
func (s *Store) AppendCustodyNode(ctx context.Context, p store.AppendCustodyNodeParams) (store.CustodyNode, bool, error) {
	if err := p.Validate(); err != nil {
		return store.CustodyNode{}, false, err
	}
	var (
		n       store.CustodyNode
		created bool
	)
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockCustodyLog, p.OrgID); err != nil {
			return fmt.Errorf("locking the log: %w", err)
		}
		existing, err := scanCustodyNode(tx.QueryRow(ctx, qFindCustodyNodeByKey, p.OrgID, p.LockoutID, p.Kind, p.Subject))
		if err == nil {
			n = existing
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		for i, h := range p.Parents {
			var ok bool
			if err := tx.QueryRow(ctx, qCustodyNodeExists, p.OrgID, h).Scan(&ok); err != nil {
				return translate(err)
			}
			if !ok {
				return fmt.Errorf("parent %d (%x): %w", i, h, store.ErrNotFound)
			}
		}
		var size int64
		if err := tx.QueryRow(ctx, qCustodyLogSize, p.OrgID).Scan(&size); err != nil {
			return translate(err)
		}
		n = store.CustodyNode{
			OrgID: p.OrgID, Index: uint64(size), Hash: p.Hash, LockoutID: p.LockoutID, Kind: p.Kind,
			Subject: p.Subject, Parents: p.Parents, PayloadHash: p.PayloadHash, Payload: p.Payload, At: ts(p.At),
		}
		if n.Parents == nil {
			n.Parents = [][]byte{}
		}
		if n.Payload == nil {
			n.Payload = []byte{}
		}
		_, err = tx.Exec(ctx, qInsertCustodyNode, n.OrgID, size, n.Hash, n.LockoutID, n.Kind, n.Subject,
			store.JoinCustodyHashes(n.Parents), n.PayloadHash, n.Payload, n.At)
		if err != nil {
			return translate(err)
		}
		created = true
		return nil
	})
	if err != nil {
		return store.CustodyNode{}, false, fmt.Errorf("appending %s node of lockout %s to the custody log of org %s: %w", p.Kind, p.LockoutID, p.OrgID, err)
	}
	return n, created, nil
}

// GetCustodyNode returns the org's node with this hash.
func (s *Store) GetCustodyNode(ctx context.Context, orgID string, hash []byte) (store.CustodyNode, error) {
	n, err := orgRow(ctx, s, orgID, scanCustodyNode, qGetCustodyNode, orgID, hash)
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("getting custody node %x: %w", hash, translate(err))
	}
	return n, nil
}

// GetCustodyNodeAt returns the org's node at index.
func (s *Store) GetCustodyNodeAt(ctx context.Context, orgID string, index uint64) (store.CustodyNode, error) {
	if index > 1<<62 {
		return store.CustodyNode{}, fmt.Errorf("getting custody node %d: %w", index, store.ErrNotFound)
	}
	n, err := orgRow(ctx, s, orgID, scanCustodyNode, qGetCustodyNodeAt, orgID, int64(index))
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("getting custody node %d: %w", index, translate(err))
	}
	return n, nil
}

// ListCustodyNodes returns nodes by ascending index.
func (s *Store) ListCustodyNodes(ctx context.Context, p store.ListCustodyNodesParams) ([]store.CustodyNode, error) {
	after := max(p.AfterIndex, -1)
	ns, err := orgList(ctx, s, p.OrgID, scanCustodyNode, qListCustodyNodes,
		p.OrgID, p.LockoutID, p.Unstamped, after, store.CustodyPageLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("listing custody nodes of org %s: %w", p.OrgID, translate(err))
	}
	return ns, nil
}

// CustodyLogSize is the number of nodes in the org's log.
func (s *Store) CustodyLogSize(ctx context.Context, orgID string) (uint64, error) {
	size, err := orgRow(ctx, s, orgID, func(r rowScanner) (int64, error) {
		var v int64
		return v, r.Scan(&v)
	}, qCustodyLogSize, orgID)
	if err != nil {
		return 0, fmt.Errorf("sizing the custody log of org %s: %w", orgID, translate(err))
	}
	return uint64(size), nil
}

// CustodyLeaves returns the hashes of the org's first size nodes.
func (s *Store) CustodyLeaves(ctx context.Context, orgID string, size uint64) ([][]byte, error) {
	size = min(size, 1<<62)
	hs, err := orgList(ctx, s, orgID, func(r rowScanner) ([]byte, error) {
		var h []byte
		return h, r.Scan(&h)
	}, qCustodyLeaves, orgID, int64(size))
	if err != nil {
		return nil, fmt.Errorf("reading the custody log of org %s: %w", orgID, translate(err))
	}
	return hs, nil
}

// PutCustodyToken records a node's token, keeping the first one.
func (s *Store) PutCustodyToken(ctx context.Context, p store.PutCustodyTokenParams) (store.CustodyToken, bool, error) {
	if len(p.Token) == 0 || len(p.Token) > store.MaxCustodyTokenBytes || len(p.NodeHash) != store.CustodyHashSize || p.GenTime.IsZero() {
		return store.CustodyToken{}, false, fmt.Errorf("putting custody token: %w: token of 1 to %d bytes, a 32-byte node hash and a time required",
			store.ErrInvalidCustodyNode, store.MaxCustodyTokenBytes)
	}
	var (
		t       store.CustodyToken
		created bool
	)
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		t, err = scanCustodyToken(tx.QueryRow(ctx, qInsertCustodyToken, p.OrgID, p.NodeHash, p.Token, ts(p.GenTime), p.TSA, ts(p.StampedAt)))
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		t, err = scanCustodyToken(tx.QueryRow(ctx, qGetCustodyToken, p.OrgID, p.NodeHash))
		return translate(err)
	})
	if err != nil {
		return store.CustodyToken{}, false, fmt.Errorf("putting the token of custody node %x: %w", p.NodeHash, err)
	}
	return t, created, nil
}

// AddCustodyCheckpoint records a checkpoint, keeping the first of a size.
func (s *Store) AddCustodyCheckpoint(ctx context.Context, p store.AddCustodyCheckpointParams) (store.CustodyCheckpoint, bool, error) {
	if len(p.RootHash) != store.CustodyHashSize || len(p.Note) == 0 || len(p.Note) > store.MaxCustodyNoteBytes ||
		len(p.Token) == 0 || len(p.Token) > store.MaxCustodyTokenBytes || p.Size > 1<<62 {
		return store.CustodyCheckpoint{}, false, fmt.Errorf("adding custody checkpoint: %w: a 32-byte root, a note and a token required", store.ErrInvalidCustodyNode)
	}
	var (
		c       store.CustodyCheckpoint
		created bool
	)
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		c, err = scanCustodyCheckpoint(tx.QueryRow(ctx, qInsertCustodyCheckpoint, p.OrgID, int64(p.Size), p.RootHash, p.Note, p.Token, ts(p.CreatedAt)))
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return translate(err)
		}
		c, err = scanCustodyCheckpoint(tx.QueryRow(ctx, qGetCustodyCheckpoint, p.OrgID, int64(p.Size)))
		return translate(err)
	})
	if err != nil {
		return store.CustodyCheckpoint{}, false, fmt.Errorf("adding custody checkpoint %d of org %s: %w", p.Size, p.OrgID, err)
	}
	return c, created, nil
}

// LatestCustodyCheckpoint returns the org's largest checkpoint.
func (s *Store) LatestCustodyCheckpoint(ctx context.Context, orgID string) (store.CustodyCheckpoint, error) {
	c, err := orgRow(ctx, s, orgID, scanCustodyCheckpoint, qLatestCustodyCheckpoint, orgID)
	if err != nil {
		return store.CustodyCheckpoint{}, fmt.Errorf("getting the latest custody checkpoint of org %s: %w", orgID, translate(err))
	}
	return c, nil
}

// GetCustodyCheckpoint returns the org's checkpoint of size.
func (s *Store) GetCustodyCheckpoint(ctx context.Context, orgID string, size uint64) (store.CustodyCheckpoint, error) {
	if size > 1<<62 {
		return store.CustodyCheckpoint{}, fmt.Errorf("getting custody checkpoint %d: %w", size, store.ErrNotFound)
	}
	c, err := orgRow(ctx, s, orgID, scanCustodyCheckpoint, qGetCustodyCheckpoint, orgID, int64(size))
	if err != nil {
		return store.CustodyCheckpoint{}, fmt.Errorf("getting custody checkpoint %d of org %s: %w", size, orgID, translate(err))
	}
	return c, nil
}

func scanCustodyNode(r rowScanner) (store.CustodyNode, error) {
	var (
		n       store.CustodyNode
		idx     int64
		parents []byte
		at      time.Time
		token   []byte
		genTime *time.Time
		tsa     *string
		stamped *time.Time
	)
	err := r.Scan(&n.OrgID, &idx, &n.Hash, &n.LockoutID, &n.Kind, &n.Subject, &parents, &n.PayloadHash, &n.Payload, &at,
		&token, &genTime, &tsa, &stamped)
	if err != nil {
		return store.CustodyNode{}, err
	}
	n.Index = uint64(idx)
	n.At = fromTS(at)
	if n.Parents, err = store.SplitCustodyHashes(parents); err != nil {
		return store.CustodyNode{}, err
	}
	if n.Payload == nil {
		n.Payload = []byte{}
	}
	if token != nil {
		n.Token = &store.CustodyToken{OrgID: n.OrgID, NodeHash: n.Hash, Token: token, GenTime: fromOptTS(genTime), StampedAt: fromOptTS(stamped)}
		if tsa != nil {
			n.Token.TSA = *tsa
		}
	}
	return n, nil
}

func scanCustodyToken(r rowScanner) (store.CustodyToken, error) {
	var (
		t                store.CustodyToken
		genTime, stamped time.Time
	)
	if err := r.Scan(&t.OrgID, &t.NodeHash, &t.Token, &genTime, &t.TSA, &stamped); err != nil {
		return store.CustodyToken{}, err
	}
	t.GenTime, t.StampedAt = fromTS(genTime), fromTS(stamped)
	return t, nil
}

func scanCustodyCheckpoint(r rowScanner) (store.CustodyCheckpoint, error) {
	var (
		c    store.CustodyCheckpoint
		size int64
		at   time.Time
	)
	if err := r.Scan(&c.OrgID, &size, &c.RootHash, &c.Note, &c.Token, &at); err != nil {
		return store.CustodyCheckpoint{}, err
	}
	c.Size = uint64(size)
	c.CreatedAt = fromTS(at)
	return c, nil
}
