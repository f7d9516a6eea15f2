package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/store/storetest"
)

func newStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "toktra.db"))
	if err != nil {
		t.Fatalf("sqlite.Open() error = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, newStore)
}

// Reopening a database applies no migration twice and keeps the data.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "toktra.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatalf("CreateOrg() error = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(again) error = %v", err)
	}
	defer s.Close()
	got, err := s.GetOrg(ctx, org.ID)
	if err != nil || got.Name != "Acme" {
		t.Errorf("GetOrg() after reopen = %+v, %v; want Acme", got, err)
	}
}

// Close ends subscriptions, and a second Close is harmless.
func TestCloseEndsSubscriptions(t *testing.T) {
	t.Parallel()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "toktra.db"))
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	ch, err := s.SubscribeCommands(context.Background())
	if err != nil {
		t.Fatalf("SubscribeCommands() error = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Errorf("received a notice after Close; want the channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription channel still open 5s after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() error = %v", err)
	}
	if _, err := s.SubscribeCommands(context.Background()); err == nil {
		t.Errorf("SubscribeCommands() after Close error = nil; want an error")
	}
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=memory"} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) error = nil; want an error", path)
		}
	}
}
