package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/toktra/toktra/controlplane/secrets"
)

func Example() {
	ctx := context.Background()
	base, err := os.MkdirTemp("", "toktra-secrets-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)

	// In production the KEK comes from KMS:
	//   cfg, _ := config.LoadDefaultConfig(ctx)
	//   kek, _ := secrets.NewKMSKEK(kms.NewFromConfig(cfg), "arn:aws:kms:...:key/...")
	//   sealer := secrets.NewSealer(secrets.NewKeyring(kek))
	kek, err := secrets.LoadOrCreateLocalKEK(filepath.Join(base, "keys"))
	if err != nil {
		log.Fatal(err)
	}
	sealer := secrets.NewSealer(kek)

	// The aad names the row the secret belongs to.
	adminKey := secrets.Secret("sk-admin-0123456789abcd")
	sealed, err := sealer.Seal(ctx, []byte(adminKey.Reveal()), []byte("org_x/provider/openai"))
	if err != nil {
		log.Fatal(err)
	}

	// Copied to another org's row, it does not open.
	_, err = sealer.Open(ctx, sealed, []byte("org_y/provider/openai"))
	fmt.Println("moved:", errors.Is(err, secrets.ErrAuthentication))

	opened, err := sealer.Open(ctx, sealed, []byte("org_x/provider/openai"))
	if err != nil {
		log.Fatal(err)
	}
	key := secrets.Secret(opened)
	fmt.Println("logged as:", key)
	fmt.Println("shown as:", secrets.Redact(key.Reveal()))

	// After a rotation, re-wrap stored secrets under the new key.
	if err := kek.Rotate(); err != nil {
		log.Fatal(err)
	}
	rewrapped, err := sealer.Rewrap(ctx, sealed, []byte("org_x/provider/openai"))
	if err != nil {
		log.Fatal(err)
	}
	id, _ := secrets.EnvelopeKEKID(rewrapped)
	fmt.Println("under active key:", id == kek.KeyID())
	// Output:
	// moved: true
	// logged as: [REDACTED]
	// shown as: sk-...abcd
	// under active key: true
}

func ExampleRedact() {
	fmt.Println(secrets.Redact("sk-proj-0123456789abcd"))
	// Output: sk-...abcd
}
