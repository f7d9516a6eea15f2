package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/internal/notice"
)

// notifyChannel is the LISTEN/NOTIFY channel of command notices; dialect.sql
// names it too.
const notifyChannel = "toktra_commands"

var qListenCommands = dialectQueries.MustGet("ListenCommands")

// Reconnection backoff of the listener.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// SubscribeCommands delivers a notice for every command inserted after the
// call returns, by this or any other replica, until ctx ends or the Store
// closes. The first call starts the listener and waits for its LISTEN.
func (s *Store) SubscribeCommands(ctx context.Context) (<-chan store.CommandNotice, error) {
	if s.tx != nil {
		return nil, fmt.Errorf("subscribing to commands: %w", errInTx)
	}
	if err := s.startListener(); err != nil {
		return nil, fmt.Errorf("subscribing to commands: %w", err)
	}
	select {
	case <-s.listening:
	case <-s.listenerDone:
		return nil, fmt.Errorf("subscribing to commands: %w", notice.ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("subscribing to commands: waiting for LISTEN: %w", ctx.Err())
	}
	ch, err := s.hub.Subscribe(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribing to commands: %w", err)
	}
	return ch, nil
}

// startListener starts the listener goroutine once.
func (s *Store) startListener() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return notice.ErrClosed
	}
	if s.listenerActive {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopListener = cancel
	s.listenerActive = true
	go s.listen(ctx)
	return nil
}

// listen keeps a LISTEN connection open until ctx ends, publishing every
// notice it receives. After a reconnection it publishes a notice with an
// empty DeviceID: notices sent while it was away are lost.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenerDone)
	backoff := minBackoff
	connectedBefore := false
	for {
		conn, err := s.connectListener(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			s.log.Warn("postgres listener: cannot connect; retrying", "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if connectedBefore {
			s.log.Info("postgres listener: reconnected; asking subscribers to reload")
			s.hub.Publish(store.CommandNotice{})
		} else {
			connectedBefore = true
			close(s.listening)
		}
		err = s.receive(ctx, conn)
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres listener: connection lost; reconnecting", "err", err)
	}
}

// connectListener opens a connection of its own (not from the pool, which
// could recycle it) and LISTENs on it. It stays the DSN's role rather than
// toktra_app: it never touches a table, and a notice reaches every listener
// of the channel whatever its role.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if _, err := conn.Exec(ctx, qListenCommands); err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("listening on %s: %w", notifyChannel, err)
	}
	return conn, nil
}

// receive publishes notices until the connection fails or ctx ends. When
// nothing arrives for a heartbeat it pings, so a connection that died
// silently (a failover, a dropped NAT entry) is noticed.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, s.heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.publish(n)
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
		default:
			return err
		}
	}
}

// publish turns a notification into a notice for the subscribers. One that
// cannot be read becomes a "reload everything" notice rather than nothing.
func (s *Store) publish(n *pgconn.Notification) {
	if n.Channel != notifyChannel {
		return
	}
	var payload struct {
		OrgID    string `json:"org_id"`
		DeviceID string `json:"device_id"`
		Seq      uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(n.Payload), &payload); err != nil || payload.DeviceID == "" {
		s.log.Warn("postgres listener: unreadable command notice; asking subscribers to reload", "payload", n.Payload, "err", err)
		s.hub.Publish(store.CommandNotice{})
		return
	}
	s.hub.Publish(store.CommandNotice{OrgID: payload.OrgID, DeviceID: payload.DeviceID, Seq: payload.Seq})
}
