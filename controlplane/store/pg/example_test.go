package pg_test

import (
	"context"
	"log"
	"log/slog"
	"os"

	"github.com/toktra/toktra/controlplane/store/pg"
)

// A replica opens the shared database and follows the commands any replica
// stores. (Not run: it needs a server.)
func ExampleOpen() {
	ctx := context.Background()
	s, err := pg.Open(ctx, "postgres://toktra@db.internal:5432/toktra?sslmode=verify-full",
		pg.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	notices, err := s.SubscribeCommands(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for n := range notices {
		if n.DeviceID == "" {
			log.Print("notices may have been missed: resend every device's unacknowledged commands")
			continue
		}
		log.Printf("command %d stored for device %s", n.Seq, n.DeviceID)
	}
}
