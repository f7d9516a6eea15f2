//go:build linux

package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch calls onChange when the block may have been changed behind the
// enforcer's back, until ctx ends or the enforcer is closed; it then
// returns nil. The caller should check Active in onChange and Apply again
// if it reports false.
//
// It listens to nftables change events (the netlink monitor, which reports
// a change as soon as it is committed) and calls onChange for any change to
// table inet toktra that this Nftables did not make itself; element changes
// carry no table name and always count. As a fallback it also checks
// Active every WatchInterval while a block is applied and calls onChange
// while that reports false. onChange is also called once when the watch
// starts, since anything may have happened before, and again whenever the
// monitor had to be restarted (events may have been lost). Calls never
// overlap; a slow onChange delays the next check.
//
// The error is non-nil only if the monitor cannot be started at all.
func (n *Nftables) Watch(ctx context.Context, onChange func()) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return errClosed
	}
	events, stop, err := n.monitor()
	if err != nil {
		return fmt.Errorf("watching nftables: %w", err)
	}
	defer func() { stop() }()

	var tick <-chan time.Time
	if n.watchEvery > 0 {
		t := time.NewTicker(n.watchEvery)
		defer t.Stop()
		tick = t.C
	}
	onChange()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.done:
			return nil
		case batch, ok := <-events:
			if ok && batch.GeneratedBy != nil && batch.GeneratedBy.Error == nil {
				if n.foreign(batch) {
					onChange()
				}
				continue
			}
			// The monitor failed (say, its socket buffer overflowed and
			// events were lost): start a new one and re-check.
			err := "closed"
			if ok && batch.GeneratedBy != nil {
				err = batch.GeneratedBy.Error.Error()
			}
			n.log.Warn("nftables monitor failed; restarting", "err", err)
			stop()
			for {
				var err error
				if events, stop, err = n.monitor(); err == nil {
					break
				}
				stop = func() {}
				n.log.Warn("restarting nftables monitor", "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-n.done:
					return nil
				case <-time.After(time.Second):
				}
			}
			onChange()
		case <-tick:
			n.mu.Lock()
			applied := n.applied != nil
			n.mu.Unlock()
			if !applied {
				continue
			}
			active, err := n.Active(ctx)
			if errors.Is(err, errClosed) {
				return nil
			}
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("checking nftables block", "err", err)
				}
				continue
			}
			if !active {
				onChange()
			}
		}
	}
}

// monitor subscribes to nftables change events in the enforcer's
// namespace. stop unsubscribes and waits for the monitor to finish.
func (n *Nftables) monitor() (<-chan *nftables.MonitorEvents, func(), error) {
	c, err := nftables.New(nftables.WithNetNSFd(n.nsFd()), nftables.WithSockOptions(func(c *netlink.Conn) error {
		// A bigger buffer makes overflow (and a restart) rarer when a
		// large Apply floods it with element events; best effort.
		const size = 4 << 20
		if rc, err := c.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
				}
			})
		}
		return nil
	}))
	if err != nil {
		return nil, nil, fmt.Errorf("opening nftables netlink connection: %w", err)
	}
	m := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	events, err := c.AddGenerationalMonitor(m)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribing to nftables events: %w", err)
	}
	stop := func() {
		_ = m.Close()
		// The monitor's goroutine may be blocked handing over an event;
		// drain until it closes the channel.
		for range events {
		}
	}
	return events, stop, nil
}

// foreign reports whether a committed generation changed our table and was
// not our own doing.
func (n *Nftables) foreign(batch *nftables.MonitorEvents) bool {
	for _, ev := range batch.Changes {
		if ev.Error != nil {
			return true // could not parse it; better to re-check
		}
		if n.own.has(ev.Header.PID) {
			continue
		}
		var table *nftables.Table
		switch v := ev.Data.(type) {
		case *nftables.Table:
			table = v
		case *nftables.Chain:
			table = v.Table
		case *nftables.Set:
			table = v.Table
		case *nftables.Rule:
			table = v.Table
		default:
			// Elements (no table in the event) and anything new.
			return true
		}
		if table == nil || table.Name == nftTable {
			return true
		}
	}
	return false
}
