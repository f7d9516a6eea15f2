package pg

import (
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/pgtest"
)

// Quiet periods longer than the heartbeat keep the same connection: the
// listener pings instead of reconnecting, so subscribers get no reload.
func TestListenerHeartbeat(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	defer s.Close()
	s.heartbeat = 50 * time.Millisecond

	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateOrg() error = %v", err)
	}
	dev, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, Hostname: "h", Serial: "SN1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateDevice() error = %v", err)
	}
	notices, err := s.SubscribeCommands(ctx)
	if err != nil {
		t.Fatalf("SubscribeCommands() error = %v", err)
	}
	for i := range 3 {
		time.Sleep(200 * time.Millisecond) // several heartbeats
		c, err := s.InsertCommand(ctx, store.InsertCommandParams{
			OrgID: org.ID, DeviceID: dev.ID, Kind: store.CommandLock, CreatedAt: time.Now(),
			Sign: func(seq uint64) ([]byte, error) { return []byte("x"), nil },
		})
		if err != nil {
			t.Fatalf("InsertCommand() error = %v", err)
		}
		select {
		case n := <-notices:
			if n.DeviceID != dev.ID || n.Seq != c.Seq {
				t.Fatalf("notice %d = %+v; want device %s seq %d (a reload means the connection was replaced)", i, n, dev.ID, c.Seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notice %d within 10s", i)
		}
	}
}
