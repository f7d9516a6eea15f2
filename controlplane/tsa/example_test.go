package tsa_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// The local TSA served on loopback, asked by the same client that talks to
// DigiCert in production, and the token checked offline against the root
// PEM a third party would be given.
func Example() {
	dir, _ := os.MkdirTemp("", "tsa-example")
	defer os.RemoveAll(dir)
	local, err := tsa.LoadOrCreateLocal(dir, clock.Real{}, nil)
	if err != nil {
		panic(err)
	}
	srv, err := tsa.ServeLoopback(local)
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	client, err := tsa.NewClient(tsa.ClientConfig{PrimaryURL: srv.URL(), Roots: local.Roots()})
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256([]byte("custody node"))
	tok, err := client.Timestamp(context.Background(), digest[:])
	if err != nil {
		panic(err)
	}

	roots, _ := tsa.ParseRootsPEM(local.RootPEM())
	checked, err := tsa.Verify(tok.DER, digest[:], roots)
	fmt.Println(err == nil, checked.Time.Equal(tok.Time))
	// Output: true true
}
