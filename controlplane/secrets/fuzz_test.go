package secrets_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/toktra/toktra/controlplane/secrets"
)

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, must always
// say why it refused (a package sentinel), and must never open anything but
// the one envelope this process sealed. The key is fresh per run, so corpus
// entries saved from earlier runs can never open.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir() + "/keys"
	kek, err := secrets.LoadOrCreateLocalKEK(dir)
	if err != nil {
		f.Fatal(err)
	}
	s := secrets.NewSealer(kek)
	ctx := context.Background()
	aad := []byte("org_x/provider/openai")
	valid, err := s.Seal(ctx, []byte("sk-proj-0123456789"), aad)
	if err != nil {
		f.Fatal(err)
	}

	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte("TKSE"))
	f.Add([]byte("TKSE\x01"))
	f.Add([]byte("TKSE\x02\x05local"))
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:30])
	for _, i := range []int{4, 5, 6, len(valid) / 2, len(valid) - 1} {
		bad := bytes.Clone(valid)
		bad[i] ^= 0x01
		f.Add(bad)
	}
	// Lengths pointing far past the end.
	huge := []byte("TKSE\x01\x0akms:alias/x")
	huge = binary.BigEndian.AppendUint16(huge, 0xffff)
	f.Add(append(huge, make([]byte, 40)...))

	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := s.Open(ctx, data, aad)
		if err == nil {
			if !bytes.Equal(data, valid) {
				t.Fatalf("Open(%x) = %q, nil; only the sealed envelope may open", data, got)
			}
			return
		}
		if got != nil {
			t.Errorf("Open returned plaintext %q with error %v", got, err)
		}
		if !isSentinel(err) {
			t.Errorf("Open(%x) = %v; want a package sentinel", data, err)
		}
		if _, err := s.Rewrap(ctx, data, aad); err == nil && !bytes.Equal(data, valid) {
			t.Fatalf("Rewrap(%x) = nil error; want refusal", data)
		}
		_, _ = secrets.EnvelopeKEKID(data)
	})
}
