// Package notice fans command notices out to a store's subscribers, the
// same way for every backend: publishing never blocks, and a subscriber
// that falls far behind gets one "reload everything" notice instead.
package notice

import (
	"context"
	"errors"
	"sync"

	"github.com/toktra/toktra/controlplane/store"
)

// maxQueuedNotices bounds what a slow subscriber can owe: past it, its queue
// collapses into one "reload everything" notice (empty DeviceID), which the
// SubscribeCommands contract gives for exactly this case.
const maxQueuedNotices = 1024

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("store closed")

// Hub fans command notices out to subscribers. Publishing never blocks: each
// subscriber has its own queue, drained into its channel by its own goroutine.
type Hub struct {
	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
	wg     sync.WaitGroup
}

type subscription struct {
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the queue may have grown"

	mu    sync.Mutex
	queue []store.CommandNotice
}

func NewHub() *Hub {
	return &Hub{subs: make(map[*subscription]struct{})}
}

// subscribe registers a subscriber before returning, so every notice
// published afterwards reaches it; its channel closes when ctx ends or the
// Hub closes.
func (h *Hub) Subscribe(ctx context.Context) (<-chan store.CommandNotice, error) {
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{cancel: cancel, wake: make(chan struct{}, 1)}
	out := make(chan store.CommandNotice)

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	h.subs[sub] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()

	go func() {
		defer h.wg.Done()
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.subs, sub)
			h.mu.Unlock()
			cancel()
		}()
		sub.pump(ctx, out)
	}()
	return out, nil
}

func (sub *subscription) pump(ctx context.Context, out chan<- store.CommandNotice) {
	for {
		sub.mu.Lock()
		batch := sub.queue
		sub.queue = nil
		sub.mu.Unlock()
		for _, n := range batch {
			select {
			case out <- n:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-sub.wake:
		case <-ctx.Done():
			return
		}
	}
}

func (sub *subscription) push(n store.CommandNotice) {
	sub.mu.Lock()
	if len(sub.queue) >= maxQueuedNotices {
		sub.queue = append(sub.queue[:0], store.CommandNotice{})
	} else {
		sub.queue = append(sub.queue, n)
	}
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// publish queues n for every current subscriber.
func (h *Hub) Publish(n store.CommandNotice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		sub.push(n)
	}
}

// close ends every subscription and waits for their goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for sub := range h.subs {
		sub.cancel()
	}
	h.mu.Unlock()
	h.wg.Wait()
}
