package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/toktra/toktra/controlplane/store"
)

var (
	qGetAuditHead = queries.MustGet("GetAuditHead")
	qInsertAudit  = queries.MustGet("InsertAudit")
	qListAudit    = queries.MustGet("ListAudit")
)

// AppendAudit adds an entry at the end of the org's chain. Reading the head
// and inserting after it happen in one IMMEDIATE transaction on the single
// writer connection, so appends never interleave and the chain never forks.
func (s *Store) AppendAudit(ctx context.Context, p store.AppendAuditParams) (store.AuditEntry, error) {
	var e store.AuditEntry
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var (
			prevSeq  int64
			prevHash []byte
		)
		err := tx.QueryRowContext(ctx, qGetAuditHead, p.OrgID).Scan(&prevSeq, &prevHash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading chain head: %w", translate(err))
		}
		e, err = store.NewAuditEntry(p, store.NewID("aud"), uint64(prevSeq), prevHash)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, qInsertAudit, e.OrgID, int64(e.Seq), e.ID, micros(e.At), e.Actor, e.Action,
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
	es, err := queryList(ctx, s.reader, qListAudit, scanAuditEntry,
		p.OrgID, int64(after), p.Actor, p.Action, p.TargetType, p.TargetID,
		optMicros(p.From), optMicros(p.To), limit+1)
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
		at     int64
		detail string
	)
	err := r.Scan(&e.OrgID, &seq, &e.ID, &at, &e.Actor, &e.Action, &e.Target.Type, &e.Target.ID,
		&detail, &e.RemoteIP, &e.PrevHash, &e.Hash)
	if err != nil {
		return store.AuditEntry{}, err
	}
	e.Seq = uint64(seq)
	e.At = fromMicros(at)
	e.Detail = []byte(detail)
	return e, nil
}
