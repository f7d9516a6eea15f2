package pki

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestKeyID(t *testing.T) {
	t.Parallel()
	pub := ed25519.PublicKey(make([]byte, ed25519.PublicKeySize))
	sum := sha256.Sum256(pub)
	want := "ed25519:" + hex.EncodeToString(sum[:])[:16]
	if got := KeyID(pub); got != want {
		t.Errorf("KeyID(zero key) = %q; want %q", got, want)
	}
	if !validKeyID(want) {
		t.Errorf("validKeyID(%q) = false; want true", want)
	}
	if got, wantName := keyFileName(want), "ed25519-"+hex.EncodeToString(sum[:])[:16]+".key"; got != wantName {
		t.Errorf("keyFileName(%q) = %q; want %q (no colon, for Windows)", want, got, wantName)
	}
	for _, bad := range []string{"", "ed25519:", "ed25519:ABCDEF0123456789", "ed25519:0123456789abcde", "rsa:0123456789abcdef", "ed25519:../../../etc/pa"} {
		if validKeyID(bad) {
			t.Errorf("validKeyID(%q) = true; want false", bad)
		}
	}
}

func TestLoadOrCreateSigningKeysPersists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kr, err := LoadOrCreateSigningKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateSigningKeys(new) = %v", err)
	}
	first := kr.ActiveKeyID()
	if !validKeyID(first) {
		t.Fatalf("ActiveKeyID() = %q; want a valid key id", first)
	}
	keyPath := filepath.Join(dir, SigningKeysDir, keyFileName(first))
	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{
			filepath.Join(dir, SigningKeysDir): 0o700 | os.ModeDir,
			keyPath:                            0o600,
		} {
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode() != want {
				t.Errorf("mode of %s = %v; want %v", path, info.Mode(), want)
			}
		}
	}
	active, err := os.ReadFile(filepath.Join(dir, SigningKeysDir, ActiveKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(active)); got != first {
		t.Errorf("active file = %q; want %q", got, first)
	}

	second, err := kr.Rotate()
	if err != nil {
		t.Fatalf("Rotate = %v", err)
	}
	reloaded, err := LoadOrCreateSigningKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateSigningKeys(existing) = %v", err)
	}
	if got := reloaded.ActiveKeyID(); got != second {
		t.Errorf("reloaded ActiveKeyID() = %q; want %q", got, second)
	}
	var ids []string
	for _, k := range reloaded.VerificationKeys() {
		ids = append(ids, k.GetKeyId())
		if got := KeyID(k.GetPublicKey()); got != k.GetKeyId() {
			t.Errorf("VerificationKeys(): key %q has id %q", k.GetKeyId(), got)
		}
	}
	want := []string{first, second}
	if first > second {
		want = []string{second, first}
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("VerificationKeys() ids = %v; want %v (all keys, sorted)", ids, want)
	}
}

func TestLoadOrCreateSigningKeysRecoversMissingActive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kr, err := LoadOrCreateSigningKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A crash after the first key was written but before the active file.
	if err := os.Remove(filepath.Join(dir, SigningKeysDir, ActiveKeyFile)); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateSigningKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateSigningKeys(one key, no active) = %v; want nil", err)
	}
	if again.ActiveKeyID() != kr.ActiveKeyID() {
		t.Errorf("ActiveKeyID() = %q; want the only key %q", again.ActiveKeyID(), kr.ActiveKeyID())
	}
	// With two keys and no active file there is no safe choice.
	if _, err := again.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, SigningKeysDir, ActiveKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSigningKeys(dir); err == nil {
		t.Errorf("LoadOrCreateSigningKeys(two keys, no active) = nil error; want an error")
	}
}

func TestLoadOrCreateSigningKeysRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, signingDir, activeID string)
		posix   bool // needs POSIX permission bits
	}{
		{"key readable by group", func(t *testing.T, d, id string) {
			chmod(t, filepath.Join(d, keyFileName(id)), 0o640)
		}, true},
		{"key writable by others", func(t *testing.T, d, id string) {
			chmod(t, filepath.Join(d, keyFileName(id)), 0o602)
		}, true},
		{"key under another key's name", func(t *testing.T, d, id string) {
			rename(t, filepath.Join(d, keyFileName(id)), filepath.Join(d, "ed25519-0000000000000000.key"))
			write(t, filepath.Join(d, ActiveKeyFile), "ed25519:0000000000000000\n")
		}, false},
		{"key file with bad name", func(t *testing.T, d, id string) {
			write(t, filepath.Join(d, "other.key"), "")
		}, false},
		{"active names a missing key", func(t *testing.T, d, id string) {
			write(t, filepath.Join(d, ActiveKeyFile), "ed25519:0123456789abcdef\n")
		}, false},
		{"key file not PEM", func(t *testing.T, d, id string) {
			write(t, filepath.Join(d, keyFileName(id)), "not a key")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.posix && runtime.GOOS == "windows" {
				t.Skip("windows file modes do not carry POSIX permission bits")
			}
			dir := t.TempDir()
			kr, err := LoadOrCreateSigningKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, filepath.Join(dir, SigningKeysDir), kr.ActiveKeyID())
			if _, err := LoadOrCreateSigningKeys(dir); err == nil {
				t.Errorf("LoadOrCreateSigningKeys(%s) = nil error; want an error", tt.name)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
