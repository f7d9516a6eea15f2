package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/toktra/toktra/controlplane/store"
)

var (
	qLockAuditChain = queries.MustGet("LockAuditChain")
	qGetAuditHead   = queries.MustGet("GetAuditHead")
	qInsertAudit    = queries.MustGet("InsertAudit")
	qListAudit      = queries.MustGet("ListAudit")
)

// AppendAudit adds an entry at the end of the org's chain. A
// transaction-scoped advisory lock on the org serializes appends across
// replicas: the head is read only after the lock is held, and under READ
// COMMITTED that read sees every earlier append, so the chain never forks.
func (s *Store) AppendAudit(ctx context.Context, p store.AppendAuditParams) (store.AuditEntry, error) {
	var e store.AuditEntry
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockAuditChain, p.OrgID); err != nil {
			return fmt.Errorf("locking the chain: %w", err)
		}
		var (
			prevSeq  int64
			prevHash []byte
		)
		err := tx.QueryRow(ctx, qGetAuditHead, p.OrgID).Scan(&prevSeq, &prevHash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reading chain head: %w", translate(err))
		}
		e, err = store.NewAuditEntry(p, store.NewID("aud"), uint64(prevSeq), prevHash)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, qInsertAudit, e.OrgID, int64(e.Seq), e.ID, e.At, e.Actor, e.Action,
			e.Target.Type, e.Target.ID, string(e.Detail), e.RemoteIP, e.PrevHash, e.Hash)
		if err != nil {
			return fmt.Errorf("inserting entry %d: %w", e.Seq, translate(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("appending %s to the audit log of org %s: %w", p.Action, p.OrgID, err)
	}
	return e, nil
}

// ListAudit returns a page of the org's audit log, oldest first.
func (s *Store) ListAudit(ctx context.Context, p store.ListAuditParams) (store.AuditPage, error) {
	limit := store.AuditPageLimit(p.Limit)
	var after uint64
	if p.Cursor != "" {
		var err error
		if after, err = store.DecodeAuditCursor(p.Cursor); err != nil {
			return store.AuditPage{}, fmt.Errorf("listing the audit log of org %s: %w", p.OrgID, err)
		}
	}
	// One row more than the page tells whether another page follows.
	es, err := orgList(ctx, s, p.OrgID, scanAuditEntry, qListAudit,
		p.OrgID, int64(after), p.Actor, p.Action, p.TargetType, p.TargetID,
		optTS(p.From), optTS(p.To), limit+1)
	if err != nil {
		return store.AuditPage{}, fmt.Errorf("listing the audit log of org %s: %w", p.OrgID, translate(err))
	}
	page := store.AuditPage{Entries: es}
	if len(es) > limit {
		page.Entries = es[:limit]
		page.NextCursor = store.EncodeAuditCursor(es[limit-1].Seq)
	}
	return page, nil
}

func scanAuditEntry(r rowScanner) (store.AuditEntry, error) {
	var (
		e      store.AuditEntry
		seq    int64
		at     time.Time
		detail string
	)
	err := r.Scan(&e.OrgID, &seq, &e.ID, &at, &e.Actor, &e.Action, &e.Target.Type, &e.Target.ID,
		&detail, &e.RemoteIP, &e.PrevHash, &e.Hash)
	if err != nil {
		return store.AuditEntry{}, err
	}
	e.Seq = uint64(seq)
	e.At = fromTS(at)
	e.Detail = []byte(detail)
	return e, nil
}
