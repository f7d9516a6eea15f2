package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "toktra-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	org, err := s.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: now})
	if err != nil {
		log.Fatal(err)
	}
	user, err := s.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "Ada@Example.com", CreatedAt: now})
	if err != nil {
		log.Fatal(err)
	}
	dev, err := s.CreateDevice(ctx, store.CreateDeviceParams{OrgID: org.ID, UserID: user.ID, Hostname: "ada-laptop", Serial: "C02X", CreatedAt: now})
	if err != nil {
		log.Fatal(err)
	}
	cmd, err := s.InsertCommand(ctx, store.InsertCommandParams{
		OrgID: org.ID, DeviceID: dev.ID, Kind: store.CommandLock, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		Sign: func(seq uint64) ([]byte, error) { return fmt.Appendf(nil, "signed #%d", seq), nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(user.Email, cmd.Seq, cmd.State, string(cmd.Signed))
	// Output: ada@example.com 1 pending signed #1
}
