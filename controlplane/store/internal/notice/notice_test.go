package notice

import (
	"context"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// A subscriber that does not read never blocks publishing; once it has
// fallen too far behind it gets one "reload everything" notice instead of
// the backlog, then later notices as usual.
func TestHubSlowSubscriber(t *testing.T) {
	t.Parallel()
	h := NewHub()
	defer h.Close()
	ch, err := h.Subscribe(t.Context())
	if err != nil {
		t.Fatalf("subscribe() error = %v", err)
	}
	// The pump takes the first notice and blocks sending it; the rest queue.
	h.Publish(store.CommandNotice{DeviceID: "dev_a", Seq: 1})
	for queued(h) != 0 {
		time.Sleep(time.Millisecond)
	}
	for seq := uint64(2); seq <= maxQueuedNotices+10; seq++ {
		h.Publish(store.CommandNotice{DeviceID: "dev_a", Seq: seq})
	}
	want := []store.CommandNotice{{DeviceID: "dev_a", Seq: 1}}
	// The queue overflowed at seq maxQueuedNotices+2: a reload, then the rest.
	want = append(want, store.CommandNotice{})
	for seq := uint64(maxQueuedNotices + 3); seq <= maxQueuedNotices+10; seq++ {
		want = append(want, store.CommandNotice{DeviceID: "dev_a", Seq: seq})
	}
	for i, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("notice %d = %+v; want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("notice %d not received", i)
		}
	}
}

func TestHubClose(t *testing.T) {
	t.Parallel()
	h := NewHub()
	ch, err := h.Subscribe(context.Background())
	if err != nil {
		t.Fatalf("subscribe() error = %v", err)
	}
	h.Publish(store.CommandNotice{DeviceID: "dev_a", Seq: 1}) // never read
	h.Close()
	for range ch {
	}
	if _, err := h.Subscribe(context.Background()); err == nil {
		t.Errorf("subscribe() after close error = nil; want an error")
	}
}

// queued is how many notices wait in the hub's only subscription's queue.
func queued(h *Hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.queue)
	}
	return -1
}
