package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlq"
)

var (
	//go:embed custody.sql
	custodySQL     string
	custodyQueries = sqlq.MustParse(custodySQL)

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
// already recorded for the same event. Reading the log size and inserting
// happen in one transaction on the single writer connection, so indexes
// never repeat or skip.
func (s *Store) AppendCustodyNode(ctx context.Context, p store.AppendCustodyNodeParams) (store.CustodyNode, bool, error) {
	if err := p.Validate(); err != nil {
		return store.CustodyNode{}, false, err
	}
	var (
		n       store.CustodyNode
		created bool
	)
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		existing, err := scanCustodyNode(tx.QueryRowContext(ctx, qFindCustodyNodeByKey, p.OrgID, p.LockoutID, p.Kind, p.Subject))
		if err == nil {
			n = existing
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		for i, h := range p.Parents {
			var ok bool
			if err := tx.QueryRowContext(ctx, qCustodyNodeExists, p.OrgID, h).Scan(&ok); err != nil {
				return translate(err)
			}
			if !ok {
				return fmt.Errorf("parent %d (%x): %w", i, h, store.ErrNotFound)
			}
		}
		var size int64
		if err := tx.QueryRowContext(ctx, qCustodyLogSize, p.OrgID).Scan(&size); err != nil {
			return translate(err)
		}
		n = store.CustodyNode{
			OrgID: p.OrgID, Index: uint64(size), Hash: p.Hash, LockoutID: p.LockoutID, Kind: p.Kind,
			Subject: p.Subject, Parents: p.Parents, PayloadHash: p.PayloadHash, Payload: p.Payload, At: p.At.UTC().Truncate(time.Microsecond),
		}
		if n.Parents == nil {
			n.Parents = [][]byte{}
		}
		if n.Payload == nil {
			n.Payload = []byte{}
		}
		_, err = tx.ExecContext(ctx, qInsertCustodyNode, n.OrgID, size, n.Hash, n.LockoutID, n.Kind, n.Subject,
			store.JoinCustodyHashes(n.Parents), n.PayloadHash, n.Payload, micros(n.At))
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
	n, err := queryRow(ctx, s.reader, scanCustodyNode, qGetCustodyNode, orgID, hash)
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
	n, err := queryRow(ctx, s.reader, scanCustodyNode, qGetCustodyNodeAt, orgID, int64(index))
	if err != nil {
		return store.CustodyNode{}, fmt.Errorf("getting custody node %d: %w", index, translate(err))
	}
	return n, nil
}

// ListCustodyNodes returns nodes by ascending index.
func (s *Store) ListCustodyNodes(ctx context.Context, p store.ListCustodyNodesParams) ([]store.CustodyNode, error) {
	after := max(p.AfterIndex, -1)
	ns, err := listRows(ctx, s.reader, scanCustodyNode, qListCustodyNodes,
		p.OrgID, p.LockoutID, p.Unstamped, after, store.CustodyPageLimit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("listing custody nodes of org %s: %w", p.OrgID, translate(err))
	}
	return ns, nil
}

// CustodyLogSize is the number of nodes in the org's log.
func (s *Store) CustodyLogSize(ctx context.Context, orgID string) (uint64, error) {
	size, err := queryRow(ctx, s.reader, func(r rowScanner) (int64, error) {
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
	hs, err := listRows(ctx, s.reader, func(r rowScanner) ([]byte, error) {
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
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		t, err = scanCustodyToken(tx.QueryRowContext(ctx, qInsertCustodyToken, p.OrgID, p.NodeHash, p.Token, micros(p.GenTime), p.TSA, micros(p.StampedAt)))
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		t, err = scanCustodyToken(tx.QueryRowContext(ctx, qGetCustodyToken, p.OrgID, p.NodeHash))
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
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var err error
		c, err = scanCustodyCheckpoint(tx.QueryRowContext(ctx, qInsertCustodyCheckpoint, p.OrgID, int64(p.Size), p.RootHash, p.Note, p.Token, micros(p.CreatedAt)))
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return translate(err)
		}
		c, err = scanCustodyCheckpoint(tx.QueryRowContext(ctx, qGetCustodyCheckpoint, p.OrgID, int64(p.Size)))
		return translate(err)
	})
	if err != nil {
		return store.CustodyCheckpoint{}, false, fmt.Errorf("adding custody checkpoint %d of org %s: %w", p.Size, p.OrgID, err)
	}
	return c, created, nil
}

// LatestCustodyCheckpoint returns the org's largest checkpoint.
func (s *Store) LatestCustodyCheckpoint(ctx context.Context, orgID string) (store.CustodyCheckpoint, error) {
	c, err := queryRow(ctx, s.reader, scanCustodyCheckpoint, qLatestCustodyCheckpoint, orgID)
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
	c, err := queryRow(ctx, s.reader, scanCustodyCheckpoint, qGetCustodyCheckpoint, orgID, int64(size))
	if err != nil {
		return store.CustodyCheckpoint{}, fmt.Errorf("getting custody checkpoint %d of org %s: %w", size, orgID, translate(err))
	}
	return c, nil
}

// queryRow runs a query on db and scans its one row.
func queryRow[T any](ctx context.Context, db dbtx, scan func(rowScanner) (T, error), query string, args ...any) (T, error) {
	return scan(db.QueryRowContext(ctx, query, args...))
}

// listRows is queryList with the argument order of queryRow.
func listRows[T any](ctx context.Context, db dbtx, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	return queryList(ctx, db, query, scan, args...)
}

func scanCustodyNode(r rowScanner) (store.CustodyNode, error) {
	var (
		n                store.CustodyNode
		idx, at          int64
		parents, token   []byte
		genTime, stamped sql.NullInt64
		tsa              sql.NullString
	)
	err := r.Scan(&n.OrgID, &idx, &n.Hash, &n.LockoutID, &n.Kind, &n.Subject, &parents, &n.PayloadHash, &n.Payload, &at,
		&token, &genTime, &tsa, &stamped)
	if err != nil {
		return store.CustodyNode{}, err
	}
	n.Index = uint64(idx)
	n.At = fromMicros(at)
	if n.Parents, err = store.SplitCustodyHashes(parents); err != nil {
		return store.CustodyNode{}, err
	}
	if n.Payload == nil {
		n.Payload = []byte{}
	}
	if token != nil {
		n.Token = &store.CustodyToken{OrgID: n.OrgID, NodeHash: n.Hash, Token: token, GenTime: fromOptMicros(genTime),
			TSA: tsa.String, StampedAt: fromOptMicros(stamped)}
	}
	return n, nil
}

func scanCustodyToken(r rowScanner) (store.CustodyToken, error) {
	var (
		t                store.CustodyToken
		genTime, stamped int64
	)
	if err := r.Scan(&t.OrgID, &t.NodeHash, &t.Token, &genTime, &t.TSA, &stamped); err != nil {
		return store.CustodyToken{}, err
	}
	t.GenTime, t.StampedAt = fromMicros(genTime), fromMicros(stamped)
	return t, nil
}

func scanCustodyCheckpoint(r rowScanner) (store.CustodyCheckpoint, error) {
	var (
		c        store.CustodyCheckpoint
		size, at int64
	)
	if err := r.Scan(&c.OrgID, &size, &c.RootHash, &c.Note, &c.Token, &at); err != nil {
		return store.CustodyCheckpoint{}, err
	}
	c.Size = uint64(size)
	c.CreatedAt = fromMicros(at)
	return c, nil
}
