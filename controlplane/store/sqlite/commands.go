package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
)

// InsertCommand allocates the device's next sequence, signs the command with
// it and stores it, in one transaction; subscribers hear of it after commit.
// If Sign fails nothing is stored and the sequence is not used up.
func (s *Store) InsertCommand(ctx context.Context, p store.InsertCommandParams) (store.Command, error) {
	if p.Sign == nil {
		return store.Command{}, fmt.Errorf("inserting command for device %s: no Sign function", p.DeviceID)
	}
	var c store.Command
	err := inTx(ctx, s.writer, func(tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, qAllocateCommandSeq, p.OrgID, p.DeviceID).Scan(&seq); err != nil {
			return fmt.Errorf("allocating sequence: %w", translate(err))
		}
		signed, err := p.Sign(uint64(seq))
		if err != nil {
			return fmt.Errorf("signing command %d: %w", seq, err)
		}
		c, err = scanCommand(tx.QueryRowContext(ctx, qInsertCommand, p.OrgID, p.DeviceID, seq, string(p.Kind),
			optString(p.LockoutID), signed, micros(p.CreatedAt), optMicros(p.ExpiresAt)))
		if err != nil {
			return fmt.Errorf("storing command %d: %w", seq, translate(err))
		}
		return nil
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("inserting command for device %s: %w", p.DeviceID, err)
	}
	s.publish(store.CommandNotice{OrgID: c.OrgID, DeviceID: c.DeviceID, Seq: c.Seq})
	return c, nil
}

// GetCommand returns one of the device's commands.
func (s *Store) GetCommand(ctx context.Context, orgID, deviceID string, seq uint64) (store.Command, error) {
	c, err := scanCommand(s.reader.QueryRowContext(ctx, qGetCommand, orgID, deviceID, int64(seq)))
	if err != nil {
		return store.Command{}, fmt.Errorf("getting command %d of device %s: %w", seq, deviceID, translate(err))
	}
	return c, nil
}

// ListUnackedCommands returns the device's pending and delivered commands
// in sequence order.
func (s *Store) ListUnackedCommands(ctx context.Context, orgID, deviceID string) ([]store.Command, error) {
	cs, err := queryList(ctx, s.reader, qListUnackedCommands, scanCommand, orgID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("listing unacknowledged commands of device %s: %w", deviceID, translate(err))
	}
	return cs, nil
}

// MarkCommandDelivered moves a pending command to delivered (no-op otherwise).
func (s *Store) MarkCommandDelivered(ctx context.Context, orgID, deviceID string, seq uint64, at time.Time) error {
	err := execOne(ctx, s.writer, qMarkCommandDelivered, orgID, deviceID, int64(seq), micros(at))
	if errors.Is(err, store.ErrNotFound) {
		// Not pending: fine if the command exists at all.
		_, err = s.GetCommand(ctx, orgID, deviceID, seq)
	}
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
	c, err := scanCommand(s.writer.QueryRowContext(ctx, qAckCommand, p.OrgID, p.DeviceID, int64(p.Seq),
		string(state), p.Reason, p.Detail, micros(p.At)))
	if errors.Is(err, sql.ErrNoRows) {
		// Already acknowledged (or absent, which GetCommand reports).
		c, err = scanCommand(s.writer.QueryRowContext(ctx, qGetCommand, p.OrgID, p.DeviceID, int64(p.Seq)))
	}
	if err != nil {
		return store.Command{}, fmt.Errorf("acknowledging command %d of device %s: %w", p.Seq, p.DeviceID, translate(err))
	}
	return c, nil
}

// ListCommandsByLockout returns the commands issued for a lockout, by device
// then sequence.
func (s *Store) ListCommandsByLockout(ctx context.Context, orgID, lockoutID string) ([]store.Command, error) {
	cs, err := queryList(ctx, s.reader, qListCommandsByLockout, scanCommand, orgID, lockoutID)
	if err != nil {
		return nil, fmt.Errorf("listing commands of lockout %s: %w", lockoutID, translate(err))
	}
	return cs, nil
}

// CountCommandsByState counts commands across all orgs; every state is
// present in the map, zero included.
func (s *Store) CountCommandsByState(ctx context.Context) (map[store.CommandState]int64, error) {
	type stateCount struct {
		state string
		n     int64
	}
	rows, err := queryList(ctx, s.reader, qCountCommandsByState, func(r rowScanner) (stateCount, error) {
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

// SubscribeCommands delivers a notice for every command this Store inserts
// after the call returns, until ctx ends or the Store closes.
func (s *Store) SubscribeCommands(ctx context.Context) (<-chan store.CommandNotice, error) {
	if s.tx != nil {
		return nil, fmt.Errorf("subscribing to commands: %w", errInTx)
	}
	ch, err := s.hub.Subscribe(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribing to commands: %w", err)
	}
	return ch, nil
}

func scanCommand(r rowScanner) (store.Command, error) {
	var (
		c                           store.Command
		seq, created                int64
		kind, state                 string
		lockoutID                   sql.NullString
		expires, delivered, ackedAt sql.NullInt64
	)
	err := r.Scan(&c.OrgID, &c.DeviceID, &seq, &kind, &lockoutID, &c.Signed, &state, &c.Reason, &c.Detail,
		&created, &expires, &delivered, &ackedAt)
	if err != nil {
		return store.Command{}, err
	}
	c.Seq = uint64(seq)
	c.Kind = store.CommandKind(kind)
	c.LockoutID = lockoutID.String
	c.State = store.CommandState(state)
	c.CreatedAt = fromMicros(created)
	c.ExpiresAt = fromOptMicros(expires)
	c.DeliveredAt = ptrFromOptMicros(delivered)
	c.AckedAt = ptrFromOptMicros(ackedAt)
	return c, nil
}
