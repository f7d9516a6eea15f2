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
	qAllocateCommandSeq    = queries.MustGet("AllocateCommandSeq")
	qInsertCommand         = queries.MustGet("InsertCommand")
	qGetCommand            = queries.MustGet("GetCommand")
	qListUnackedCommands   = queries.MustGet("ListUnackedCommands")
	qMarkCommandDelivered  = queries.MustGet("MarkCommandDelivered")
	qAckCommand            = queries.MustGet("AckCommand")
	qListCommandsByLockout = queries.MustGet("ListCommandsByLockout")
	qCountCommandsByState  = queries.MustGet("CountCommandsByState")
	qNotifyCommand         = dialectQueries.MustGet("NotifyCommand")
)

// InsertCommand allocates the device's next sequence, signs the command with
// it, stores it and queues the notice, in one transaction: the device row
// stays locked until commit, so concurrent inserts on any replica get
// distinct, contiguous sequences. If Sign fails nothing is stored and the
// sequence is not used up.
func (s *Store) InsertCommand(ctx context.Context, p store.InsertCommandParams) (store.Command, error) {
	if p.Sign == nil {
		return store.Command{}, fmt.Errorf("inserting command for device %s: no Sign function", p.DeviceID)
	}
	var c store.Command
	err := s.inOrgAtomic(ctx, p.OrgID, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, qAllocateCommandSeq, p.OrgID, p.DeviceID).Scan(&seq); err != nil {
			return fmt.Errorf("allocating sequence: %w", translate(err))
		}
		signed, err := p.Sign(uint64(seq))
		if err != nil {
			return fmt.Errorf("signing command %d: %w", seq, err)
		}
		c, err = scanCommand(tx.QueryRow(ctx, qInsertCommand, p.OrgID, p.DeviceID, seq, string(p.Kind),
			optString(p.LockoutID), signed, ts(p.CreatedAt), optTS(p.ExpiresAt)))
		if err != nil {
			return fmt.Errorf("storing command %d: %w", seq, translate(err))
		}
		if _, err := tx.Exec(ctx, qNotifyCommand, p.OrgID, p.DeviceID, seq); err != nil {
			return fmt.Errorf("notifying command %d: %w", seq, err)
		}
		return nil
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("inserting command for device %s: %w", p.DeviceID, err)
	}
	return c, nil
}

// GetCommand returns one of the device's commands.
func (s *Store) GetCommand(ctx context.Context, orgID, deviceID string, seq uint64) (store.Command, error) {
	c, err := orgRow(ctx, s, orgID, scanCommand, qGetCommand, orgID, deviceID, int64(seq))
	if err != nil {
		return store.Command{}, fmt.Errorf("getting command %d of device %s: %w", seq, deviceID, translate(err))
	}
	return c, nil
}

// ListUnackedCommands returns the device's pending and delivered commands
// in sequence order.
func (s *Store) ListUnackedCommands(ctx context.Context, orgID, deviceID string) ([]store.Command, error) {
	cs, err := orgList(ctx, s, orgID, scanCommand, qListUnackedCommands, orgID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("listing unacknowledged commands of device %s: %w", deviceID, translate(err))
	}
	return cs, nil
}

// MarkCommandDelivered moves a pending command to delivered (no-op otherwise).
func (s *Store) MarkCommandDelivered(ctx context.Context, orgID, deviceID string, seq uint64, at time.Time) error {
	err := s.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		err := execOne(ctx, tx, qMarkCommandDelivered, orgID, deviceID, int64(seq), ts(at))
		if errors.Is(err, store.ErrNotFound) {
			// Not pending: fine if the command exists at all.
			_, err = scanCommand(tx.QueryRow(ctx, qGetCommand, orgID, deviceID, int64(seq)))
			err = translate(err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("marking command %d of device %s delivered: %w", seq, deviceID, err)
	}
	return nil
}

// AckCommand records the device's answer; acking an acked command returns
// it unchanged.
func (s *Store) AckCommand(ctx context.Context, p store.AckCommandParams) (store.Command, error) {
	state := store.CommandRejected
	if p.Applied {
		state = store.CommandApplied
	}
	var c store.Command
	err := s.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		var err error
		c, err = scanCommand(tx.QueryRow(ctx, qAckCommand, p.OrgID, p.DeviceID, int64(p.Seq),
			string(state), p.Reason, p.Detail, ts(p.At)))
		if errors.Is(err, pgx.ErrNoRows) {
			// Already acknowledged (or absent, which GetCommand reports).
			c, err = scanCommand(tx.QueryRow(ctx, qGetCommand, p.OrgID, p.DeviceID, int64(p.Seq)))
		}
		return err
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("acknowledging command %d of device %s: %w", p.Seq, p.DeviceID, translate(err))
	}
	return c, nil
}

// ListCommandsByLockout returns the commands issued for a lockout, by device
// then sequence.
func (s *Store) ListCommandsByLockout(ctx context.Context, orgID, lockoutID string) ([]store.Command, error) {
	cs, err := orgList(ctx, s, orgID, scanCommand, qListCommandsByLockout, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing commands of lockout %s: %w", lockoutID, translate(err))
	}
	return cs, nil
}

// CountCommandsByState counts commands across all orgs; every state is
// present in the map, zero included. No org is set: a function that returns
// only the counts reads every org's commands (migration 004).
func (s *Store) CountCommandsByState(ctx context.Context) (map[store.CommandState]int64, error) {
	type stateCount struct {
		state string
		n     int64
	}
	rows, err := queryList(ctx, s.q, qCountCommandsByState, func(r rowScanner) (stateCount, error) {
		var sc stateCount
		err := r.Scan(&sc.state, &sc.n)
		return sc, err
	})
	if err != nil {
		return nil, fmt.Errorf("counting commands by state: %w", translate(err))
	}
	counts := map[store.CommandState]int64{
		store.CommandPending: 0, store.CommandDelivered: 0, store.CommandApplied: 0, store.CommandRejected: 0,
	}
	for _, r := range rows {
		counts[store.CommandState(r.state)] = r.n
	}
	return counts, nil
}

func scanCommand(r rowScanner) (store.Command, error) {
	var (
		c                           store.Command
		seq                         int64
		created                     time.Time
		kind, state                 string
		lockoutID                   *string
		expires, delivered, ackedAt *time.Time
	)
	err := r.Scan(&c.OrgID, &c.DeviceID, &seq, &kind, &lockoutID, &c.Signed, &state, &c.Reason, &c.Detail,
		&created, &expires, &delivered, &ackedAt)
	if err != nil {
		return store.Command{}, err
	}
	c.Seq = uint64(seq)
	c.Kind = store.CommandKind(kind)
	if lockoutID != nil {
		c.LockoutID = *lockoutID
	}
	c.State = store.CommandState(state)
	c.CreatedAt = fromTS(created)
	c.ExpiresAt = fromOptTS(expires)
	c.DeliveredAt = ptrFromOptTS(delivered)
	c.AckedAt = ptrFromOptTS(ackedAt)
	return c, nil
}
