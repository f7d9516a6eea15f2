package secrets_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toktra/toktra/controlplane/secrets"
)

var anySentinel = []error{
	secrets.ErrMalformed, secrets.ErrUnsupportedVersion, secrets.ErrUnknownKEK,
	secrets.ErrAuthentication, secrets.ErrKEKAccessDenied, secrets.ErrKEKUnavailable,
}

// isSentinel reports whether err carries one of the package's sentinels, so
// callers can always tell why an envelope did not open.
func isSentinel(err error) bool {
	for _, s := range anySentinel {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// setupLocal returns a Sealer over a LocalKEK in a fresh directory.
func setupLocal(t testing.TB) (*secrets.Sealer, *secrets.LocalKEK, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	kek, err := secrets.LoadOrCreateLocalKEK(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateLocalKEK(%q) = %v", dir, err)
	}
	return secrets.NewSealer(kek), kek, dir
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	s, kek, _ := setupLocal(t)
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 1<<20)
	for _, tc := range []struct {
		name           string
		plaintext, aad []byte
	}{
		{"api key", []byte("sk-proj-abcdefghijklmnop"), []byte("org_x/provider/openai")},
		{"empty plaintext", []byte{}, []byte("org_x/hris/bamboohr")},
		{"empty aad", []byte("secret"), nil},
		{"binary aad", []byte("secret"), []byte{0xff, 0x00, 0xfe}},
		{"1 MiB", big, []byte("org_y/provider/anthropic")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sealed, err := s.Seal(ctx, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatalf("Seal = %v", err)
			}
			if len(tc.plaintext) > 4 && bytes.Contains(sealed, tc.plaintext) {
				t.Fatalf("Seal output contains the plaintext")
			}
			if id, err := secrets.EnvelopeKEKID(sealed); err != nil || id != kek.KeyID() {
				t.Errorf("EnvelopeKEKID = %q, %v; want %q, nil", id, err, kek.KeyID())
			}
			got, err := s.Open(ctx, sealed, tc.aad)
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Errorf("Open(Seal(%.20q)) = %.20q", tc.plaintext, got)
			}
			again, err := s.Seal(ctx, tc.plaintext, tc.aad)
			if err != nil {
				t.Fatalf("Seal = %v", err)
			}
			if bytes.Equal(again, sealed) {
				t.Errorf("two Seals of the same plaintext are identical; want fresh data key and nonce")
			}
		})
	}
}

func TestLocalKeyID(t *testing.T) {
	t.Parallel()
	_, kek, _ := setupLocal(t)
	id := kek.KeyID()
	if !strings.HasPrefix(id, "local:") || len(id) != len("local:")+16 {
		t.Errorf("KeyID() = %q; want local: and 16 hex digits", id)
	}
}

func TestOpenWrongAAD(t *testing.T) {
	t.Parallel()
	s, _, _ := setupLocal(t)
	ctx := context.Background()
	aad := []byte("org_x/provider/openai")
	sealed, err := s.Seal(ctx, []byte("sk-secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for _, wrong := range []string{"org_y/provider/openai", "org_x/provider/anthropic", "", "org_x/provider/openai\x00", "org_x/provider/opena"} {
		got, err := s.Open(ctx, sealed, []byte(wrong))
		if !errors.Is(err, secrets.ErrAuthentication) {
			t.Errorf("Open(aad %q) = %q, %v; want ErrAuthentication", wrong, got, err)
		}
	}
}

// flipEveryByte checks that changing any single bit pattern anywhere in the
// envelope makes Open fail with a sentinel.
func flipEveryByte(t *testing.T, s *secrets.Sealer, sealed, aad []byte, masks ...byte) {
	t.Helper()
	ctx := context.Background()
	for i := range sealed {
		for _, m := range masks {
			bad := bytes.Clone(sealed)
			bad[i] ^= m
			got, err := s.Open(ctx, bad, aad)
			if err == nil {
				t.Fatalf("Open(envelope with byte %d ^= %#x) = %q, nil; want error", i, m, got)
			}
			if !isSentinel(err) {
				t.Errorf("Open(envelope with byte %d ^= %#x) = %v; want a package sentinel", i, m, err)
			}
		}
	}
}

func TestOpenFlippedByte(t *testing.T) {
	t.Parallel()
	s, _, _ := setupLocal(t)
	aad := []byte("org_x/provider/openai")
	sealed, err := s.Seal(context.Background(), []byte("sk-proj-0123456789"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryByte(t, s, sealed, aad, 0x01, 0x80, 0xff)
}

func TestOpenMalformed(t *testing.T) {
	t.Parallel()
	s, _, _ := setupLocal(t)
	ctx := context.Background()
	aad := []byte("org_x/provider/openai")
	sealed, err := s.Seal(ctx, []byte("sk-proj-0123456789"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(sealed) {
		if _, err := s.Open(ctx, sealed[:n], aad); err == nil || !isSentinel(err) {
			t.Fatalf("Open(first %d of %d bytes) = %v; want a package sentinel", n, len(sealed), err)
		}
	}
	if _, err := s.Open(ctx, append(bytes.Clone(sealed), 0), aad); !errors.Is(err, secrets.ErrAuthentication) {
		t.Errorf("Open(envelope + trailing byte) = %v; want ErrAuthentication", err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, secrets.ErrMalformed},
		{"json", []byte(`{"v":1}`), secrets.ErrMalformed},
		{"magic only", []byte("TKSE"), secrets.ErrMalformed},
		{"version 2", append([]byte("TKSE\x02"), sealed[5:]...), secrets.ErrUnsupportedVersion},
		{"version 0", append([]byte("TKSE\x00"), sealed[5:]...), secrets.ErrUnsupportedVersion},
		{"empty kek id", []byte("TKSE\x01\x00"), secrets.ErrMalformed},
		{"kek id past end", []byte("TKSE\x01\xffabc"), secrets.ErrMalformed},
	} {
		if _, err := s.Open(ctx, tc.in, aad); !errors.Is(err, tc.want) {
			t.Errorf("Open(%s) = %v; want %v", tc.name, err, tc.want)
		}
		if _, err := secrets.EnvelopeKEKID(tc.in); err == nil {
			t.Errorf("EnvelopeKEKID(%s) = nil error; want %v", tc.name, tc.want)
		}
	}
}

func TestOpenUnknownKEK(t *testing.T) {
	t.Parallel()
	s1, _, _ := setupLocal(t)
	s2, _, _ := setupLocal(t)
	ctx := context.Background()
	sealed, err := s1.Seal(ctx, []byte("x"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Open(ctx, sealed, []byte("a"))
	if !errors.Is(err, secrets.ErrUnknownKEK) {
		t.Errorf("Open under another keyring = %v; want ErrUnknownKEK", err)
	}
}

func TestLocalRotation(t *testing.T) {
	t.Parallel()
	s, kek, dir := setupLocal(t)
	ctx := context.Background()
	aad := []byte("org_x/hris/workday")
	oldID := kek.KeyID()
	old, err := s.Seal(ctx, []byte("old-secret"), aad)
	if err != nil {
		t.Fatal(err)
	}

	if err := kek.Rotate(); err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	newID := kek.KeyID()
	if newID == oldID {
		t.Fatalf("KeyID() after Rotate = %q, unchanged", newID)
	}
	if got := kek.KeyIDs(); len(got) != 2 || got[0] != oldID || got[1] != newID {
		t.Errorf("KeyIDs() = %q; want [%q %q]", got, oldID, newID)
	}
	if got, err := s.Open(ctx, old, aad); err != nil || string(got) != "old-secret" {
		t.Fatalf("Open(sealed before rotation) = %q, %v; want old-secret", got, err)
	}
	fresh, err := s.Seal(ctx, []byte("new-secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := secrets.EnvelopeKEKID(fresh); id != newID {
		t.Errorf("EnvelopeKEKID(sealed after rotation) = %q; want %q", id, newID)
	}

	rewrapped, err := s.Rewrap(ctx, old, aad)
	if err != nil {
		t.Fatalf("Rewrap = %v", err)
	}
	if id, _ := secrets.EnvelopeKEKID(rewrapped); id != newID {
		t.Errorf("EnvelopeKEKID(rewrapped) = %q; want %q", id, newID)
	}
	// The nonce and ciphertext carry over: only the wrapping changed.
	if tail := old[len(old)-12-16-len("old-secret"):]; !bytes.HasSuffix(rewrapped, tail) {
		t.Errorf("Rewrap changed the encrypted secret; want only the wrapped key replaced")
	}
	if same, err := s.Rewrap(ctx, rewrapped, aad); err != nil || !bytes.Equal(same, rewrapped) {
		t.Errorf("Rewrap(already active) = %v; want the same envelope back", err)
	}
	if _, err := s.Rewrap(ctx, old, []byte("org_y/hris/workday")); !errors.Is(err, secrets.ErrAuthentication) {
		t.Errorf("Rewrap(wrong aad) = %v; want ErrAuthentication", err)
	}

	// A process restarting later loads both keys and the newer is active.
	reloaded, err := secrets.LoadOrCreateLocalKEK(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateLocalKEK(reload) = %v", err)
	}
	if reloaded.KeyID() != newID {
		t.Errorf("reloaded KeyID() = %q; want %q", reloaded.KeyID(), newID)
	}
	s2 := secrets.NewSealer(reloaded)
	for _, env := range [][]byte{old, fresh, rewrapped} {
		if _, err := s2.Open(ctx, env, aad); err != nil {
			t.Errorf("Open after reload = %v", err)
		}
	}

	// Once everything is re-wrapped the old key file can go.
	if err := os.Remove(filepath.Join(dir, "kek-000001.key")); err != nil {
		t.Fatal(err)
	}
	pruned, err := secrets.LoadOrCreateLocalKEK(dir)
	if err != nil {
		t.Fatal(err)
	}
	s3 := secrets.NewSealer(pruned)
	if _, err := s3.Open(ctx, rewrapped, aad); err != nil {
		t.Errorf("Open(rewrapped) after removing old key = %v", err)
	}
	if _, err := s3.Open(ctx, old, aad); !errors.Is(err, secrets.ErrUnknownKEK) {
		t.Errorf("Open(old) after removing old key = %v; want ErrUnknownKEK", err)
	}
}

func TestLocalKEKFiles(t *testing.T) {
	t.Parallel()
	_, _, dir := setupLocal(t)
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, "kek-000001.key"), 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.want {
			t.Errorf("mode of %s = %#o; want %#o", tc.path, got, tc.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "kek-000001.key")); err == nil && fi.Size() != 32 {
		t.Errorf("key file size = %d; want 32", fi.Size())
	}
}

func TestLocalKEKRefusesInsecureFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  error
	}{
		{"group-readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "kek-000001.key"), 0o640) }, secrets.ErrInsecureKeyFile},
		{"world-readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "kek-000001.key"), 0o604) }, secrets.ErrInsecureKeyFile},
		{"group-writable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "kek-000001.key"), 0o620) }, secrets.ErrInsecureKeyFile},
		{"open directory", func(t *testing.T, dir string) { chmod(t, dir, 0o755) }, secrets.ErrInsecureKeyFile},
		{"symlinked key", func(t *testing.T, dir string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(target, bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, "kek-000002.key")); err != nil {
				t.Fatal(err)
			}
		}, secrets.ErrInsecureKeyFile},
		{"short key", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "kek-000002.key"), []byte("short"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"duplicate key", func(t *testing.T, dir string) {
			raw, err := os.ReadFile(filepath.Join(dir, "kek-000001.key"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "kek-000002.key"), raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, dir := setupLocal(t)
			tc.setup(t, dir)
			kek, err := secrets.LoadOrCreateLocalKEK(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateLocalKEK = %v, nil; want error", kek.KeyIDs())
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("LoadOrCreateLocalKEK = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestLocalKEKIgnoresOtherFiles(t *testing.T) {
	t.Parallel()
	_, kek, dir := setupLocal(t)
	for _, name := range []string{"README", "kek-1.key", "kek-000003.key.bak", ".kek-123.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again, err := secrets.LoadOrCreateLocalKEK(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateLocalKEK with unrelated files = %v", err)
	}
	if again.KeyID() != kek.KeyID() {
		t.Errorf("KeyID() = %q; want %q", again.KeyID(), kek.KeyID())
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLocalRotateAfterKeysVanish(t *testing.T) {
	t.Parallel()
	_, kek, dir := setupLocal(t)
	id := kek.KeyID()
	if err := os.Remove(filepath.Join(dir, "kek-000001.key")); err != nil {
		t.Fatal(err)
	}
	if err := kek.Rotate(); err == nil {
		t.Errorf("Rotate() with every key file deleted = nil; want error")
	}
	if got := kek.KeyID(); got != id {
		t.Errorf("KeyID() after failed Rotate = %q; want %q kept", got, id)
	}
}

func TestSealOpenDuringRotation(t *testing.T) {
	t.Parallel()
	s, kek, _ := setupLocal(t)
	ctx := context.Background()
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			aad := []byte{byte(g)}
			for range 50 {
				sealed, err := s.Seal(ctx, []byte("v"), aad)
				if err != nil {
					done <- err
					return
				}
				if _, err := s.Open(ctx, sealed, aad); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 3 {
		if err := kek.Rotate(); err != nil {
			t.Errorf("Rotate() = %v", err)
		}
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Errorf("Seal/Open during rotation = %v", err)
		}
	}
	if got := len(kek.KeyIDs()); got != 4 {
		t.Errorf("len(KeyIDs()) = %d; want 4", got)
	}
}
