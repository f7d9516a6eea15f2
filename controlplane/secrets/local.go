package secrets

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Local key files are named kek-NNNNNN.key (a sequence number, zero-padded to
// six digits) and hold exactly 32 random bytes. The highest number is the
// active key; lower numbers are retired keys kept for unwrapping until every
// secret has been re-wrapped, after which an operator may delete them.
const (
	localKeyPrefix  = "kek-"
	localKeySuffix  = ".key"
	localKeyIDTag   = "local:"
	localFPSize     = 8
	localWrapAADTag = "toktra/secrets/v1/local-wrap\x00"
	localIDHashTag  = "toktra/secrets/v1/local-key-id\x00"
)

// LocalKEK is a key-encryption key kept in files on local disk: the
// development and single-machine alternative to KMSKEK. It holds an active
// key, which wraps new data keys, and the retired keys of earlier rotations,
// which still unwrap old ones. It is both a KeyEncrypter (for its active key)
// and a Keyring, and is safe for concurrent use.
//
// Key ids are "local:" followed by 16 hex digits of a hash of the key, so
// they name the key material itself, not the file.
type LocalKEK struct {
	dir string

	mu   sync.RWMutex
	keys []*localKey // ascending sequence; the last one is active
}

var (
	_ KeyEncrypter = (*LocalKEK)(nil)
	_ Keyring      = (*LocalKEK)(nil)
	_ KeyEncrypter = (*localKey)(nil)
)

// LoadOrCreateLocalKEK loads the key files in dir, creating dir (mode 0700)
// and a first key file (mode 0600) when there are none. It refuses, with
// ErrInsecureKeyFile, a directory or key file that group or others may
// access, and key files that are not plain files.
func LoadOrCreateLocalKEK(dir string) (*LocalKEK, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating key directory: %w", err)
	}
	k := &LocalKEK{dir: dir}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadLocked(); err != nil {
		return nil, err
	}
	if len(k.keys) == 0 {
		if err := k.createKeyFile(1); err != nil {
			return nil, err
		}
		if err := k.reloadLocked(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Rotate creates a new key file and makes it the active key. Existing keys
// stay loaded, so secrets sealed before the rotation still open; re-wrap them
// with Sealer.Rewrap to stop depending on the old keys.
func (k *LocalKEK) Rotate() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadLocked(); err != nil {
		return err
	}
	next := 1
	if len(k.keys) > 0 {
		next = k.keys[len(k.keys)-1].seq + 1
	}
	if err := k.createKeyFile(next); err != nil {
		return err
	}
	return k.reloadLocked()
}

// KeyID returns the id of the active key.
func (k *LocalKEK) KeyID() string { return k.active().id }

// KeyIDs returns the ids of all loaded keys, oldest first; the last is
// active.
func (k *LocalKEK) KeyIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// Wrap wraps dataKey with the active key.
func (k *LocalKEK) Wrap(ctx context.Context, dataKey, aad []byte) ([]byte, error) {
	return k.active().Wrap(ctx, dataKey, aad)
}

// Unwrap unwraps a data key wrapped by any of the loaded keys, active or
// retired.
func (k *LocalKEK) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < localFPSize {
		return nil, fmt.Errorf("wrapped key too short: %w", ErrAuthentication)
	}
	k.mu.RLock()
	var key *localKey
	for _, c := range k.keys {
		if bytes.Equal(c.fingerprint[:], wrapped[:localFPSize]) {
			key = c
		}
	}
	k.mu.RUnlock()
	if key == nil {
		return nil, fmt.Errorf("%w: no local key with fingerprint %x", ErrUnknownKEK, wrapped[:localFPSize])
	}
	return key.Unwrap(ctx, wrapped, aad)
}

// Active returns the active key as a KeyEncrypter whose id cannot change
// under a concurrent Rotate.
func (k *LocalKEK) Active() KeyEncrypter { return k.active() }

// Lookup returns the loaded key with the given id.
func (k *LocalKEK) Lookup(id string) (KeyEncrypter, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.id == id {
			return key, true
		}
	}
	return nil, false
}

func (k *LocalKEK) active() *localKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[len(k.keys)-1]
}

// reloadLocked reads every key file in k.dir. k.mu must be held.
func (k *LocalKEK) reloadLocked() error {
	if err := checkPrivate(k.dir, true); err != nil {
		return err
	}
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("reading key directory: %w", err)
	}
	var keys []*localKey
	seen := map[string]string{}
	for _, e := range entries { // ReadDir sorts by name, so by sequence
		seq, ok := parseKeyFileName(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(k.dir, e.Name())
		if err := checkPrivate(path, false); err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading key file: %w", err)
		}
		if len(raw) != dataKeySize {
			clear(raw)
			return fmt.Errorf("key file %s: %d bytes, want %d", path, len(raw), dataKeySize)
		}
		key, err := newLocalKey(raw, seq)
		clear(raw)
		if err != nil {
			return fmt.Errorf("key file %s: %w", path, err)
		}
		if other, dup := seen[key.id]; dup {
			return fmt.Errorf("key files %s and %s hold the same key", other, path)
		}
		seen[key.id] = path
		keys = append(keys, key)
	}
	if len(keys) == 0 && len(k.keys) > 0 {
		return fmt.Errorf("key directory %s: all key files have disappeared", k.dir)
	}
	k.keys = keys
	return nil
}

// createKeyFile writes a new random key as file number seq, never replacing
// an existing file, and makes it durable before returning.
func (k *LocalKEK) createKeyFile(seq int) error {
	key := make([]byte, dataKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generating key: %w", err)
	}
	tmp, err := os.CreateTemp(k.dir, ".kek-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("creating key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing key file: %w", err)
	}
	// A hard link fails if the name exists, unlike rename, so two processes
	// rotating at once cannot overwrite each other's key.
	final := filepath.Join(k.dir, keyFileName(seq))
	if err := os.Link(tmp.Name(), final); err != nil {
		return fmt.Errorf("installing key file: %w", err)
	}
	if d, err := os.Open(k.dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil && runtime.GOOS != "windows" {
			return fmt.Errorf("syncing key directory: %w", err)
		}
	}
	return nil
}

func keyFileName(seq int) string {
	return fmt.Sprintf("%s%06d%s", localKeyPrefix, seq, localKeySuffix)
}

func parseKeyFileName(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, localKeyPrefix)
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, localKeySuffix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.Atoi(digits)
	if err != nil || seq < 1 || keyFileName(seq) != name {
		return 0, false
	}
	return seq, true
}

// checkPrivate refuses paths that group or others can access. Windows has no
// such mode bits; there the ACLs of the directory are the operator's job.
func checkPrivate(path string, wantDir bool) error {
	fi, err := os.Lstat(path)
	if wantDir && err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		fi, err = os.Stat(path) // a symlinked key directory is fine; its target is checked
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	switch {
	case wantDir && !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrInsecureKeyFile, path)
	case !wantDir && !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file", ErrInsecureKeyFile, path)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		want := os.FileMode(0o600)
		if wantDir {
			want = 0o700
		}
		return fmt.Errorf("%w: %s has mode %#o, want %#o", ErrInsecureKeyFile, path, perm, want)
	}
	return nil
}

// localKey is one key file's key.
type localKey struct {
	id          string
	seq         int
	fingerprint [localFPSize]byte
	aead        cipher.AEAD
}

func newLocalKey(key []byte, seq int) (*localKey, error) {
	tagged := append([]byte(localIDHashTag), key...)
	h := sha256.Sum256(tagged)
	clear(tagged)
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	k := &localKey{seq: seq, aead: aead}
	copy(k.fingerprint[:], h[:localFPSize])
	k.id = localKeyIDTag + hex.EncodeToString(k.fingerprint[:])
	return k, nil
}

func (k *localKey) KeyID() string { return k.id }

// Wrap returns fingerprint || nonce || AES-256-GCM(dataKey), the fingerprint
// letting LocalKEK.Unwrap pick the right key without being told its id.
func (k *localKey) Wrap(_ context.Context, dataKey, aad []byte) ([]byte, error) {
	out := make([]byte, localFPSize+nonceSize, localFPSize+nonceSize+len(dataKey)+tagSize)
	copy(out, k.fingerprint[:])
	if _, err := rand.Read(out[localFPSize:]); err != nil {
		return nil, fmt.Errorf("generating nonce: %w", err)
	}
	return k.aead.Seal(out, out[localFPSize:], dataKey, k.wrapAAD(aad)), nil
}

func (k *localKey) Unwrap(_ context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < localFPSize+nonceSize+tagSize {
		return nil, fmt.Errorf("wrapped key too short: %w", ErrAuthentication)
	}
	if !bytes.Equal(wrapped[:localFPSize], k.fingerprint[:]) {
		return nil, fmt.Errorf("wrapped key names another local key: %w", ErrAuthentication)
	}
	nonce := wrapped[localFPSize : localFPSize+nonceSize]
	dataKey, err := k.aead.Open(nil, nonce, wrapped[localFPSize+nonceSize:], k.wrapAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("decrypting wrapped key: %w", ErrAuthentication)
	}
	return dataKey, nil
}

func (k *localKey) wrapAAD(aad []byte) []byte {
	return append([]byte(localWrapAADTag), aad...)
}
