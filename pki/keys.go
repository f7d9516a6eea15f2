package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
	"google.golang.org/protobuf/proto"
)

const (
	// SigningKeysDir is the directory, inside the keyring's directory, that
	// holds one file per signing key (PKCS#8 PEM, mode 0600) and the active
	// file. A key's file is named for its key id with the colon replaced by a
	// hyphen, ed25519-<16 hex digits>.key, because Windows does not allow
	// colons in file names.
	SigningKeysDir = "signing"
	// ActiveKeyFile, in SigningKeysDir, names the key id that signs new commands.
	ActiveKeyFile = "active"

	keyIDPrefix   = "ed25519:"
	keyIDHexLen   = 16
	keyFilePrefix = "ed25519-"
	keyFileExt    = ".key"
	maxKeyFiles   = 1024
)

// KeyID returns the id under which a command-signing public key is known:
// "ed25519:" and the first 16 hex digits of the SHA-256 of the key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return keyIDPrefix + hex.EncodeToString(sum[:])[:keyIDHexLen]
}

// validKeyID reports whether id has the shape KeyID produces, so that ids
// read from disk are safe as file names.
func validKeyID(id string) bool {
	hexPart, ok := strings.CutPrefix(id, keyIDPrefix)
	if !ok || len(hexPart) != keyIDHexLen {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// keyFileName is the name of the file that holds key id.
func keyFileName(id string) string {
	return keyFilePrefix + strings.TrimPrefix(id, keyIDPrefix) + keyFileExt
}

// Keyring holds the control plane's command-signing keys: the active one signs,
// all of them verify, so that rotation does not strand commands signed earlier.
// It is safe for concurrent use.
type Keyring struct {
	dir string // the signing directory

	mu     sync.RWMutex
	keys   map[string]ed25519.PrivateKey
	active string
}

// LoadOrCreateSigningKeys loads the keyring stored under dir (dir/signing), or
// creates it with one new active key when it holds no keys. Directories are
// created with mode 0700. It refuses key files that group or others can
// access, files whose name is not the id of the key inside, and an active file
// naming a missing key. If a crash left exactly one key and no active file,
// that key becomes active.
func LoadOrCreateSigningKeys(dir string) (*Keyring, error) {
	signingDir := filepath.Join(dir, SigningKeysDir)
	if err := os.MkdirAll(signingDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating signing key directory: %w", err)
	}
	kr := &Keyring{dir: signingDir, keys: make(map[string]ed25519.PrivateKey)}
	if err := kr.load(); err != nil {
		return nil, fmt.Errorf("loading signing keys from %s: %w", signingDir, err)
	}
	return kr, nil
}

func (kr *Keyring) load() error {
	entries, err := os.ReadDir(kr.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, keyFileExt) || strings.HasPrefix(name, ".") {
			continue // the active file, temporary files, anything else
		}
		if len(kr.keys) >= maxKeyFiles {
			return fmt.Errorf("more than %d key files", maxKeyFiles)
		}
		id := keyIDPrefix + strings.TrimPrefix(strings.TrimSuffix(name, keyFileExt), keyFilePrefix)
		if !validKeyID(id) || keyFileName(id) != name {
			return fmt.Errorf("key file %s is not named %s<16 hex digits>%s", name, keyFilePrefix, keyFileExt)
		}
		key, err := readSigningKey(filepath.Join(kr.dir, name))
		if err != nil {
			return err
		}
		if got := KeyID(key.Public().(ed25519.PublicKey)); got != id {
			return fmt.Errorf("key file %s holds key %s", name, got)
		}
		kr.keys[id] = key
	}

	activePath := filepath.Join(kr.dir, ActiveKeyFile)
	data, err := readPublicFile(activePath)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if _, ok := kr.keys[id]; !ok {
			return fmt.Errorf("active key %s has no key file", quoteShort(id))
		}
		kr.active = id
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}

	switch len(kr.keys) {
	case 0:
		_, err := kr.addKey()
		return err
	case 1:
		ids := slices.Collect(maps.Keys(kr.keys))
		return kr.setActive(ids[0])
	}
	return fmt.Errorf("%d keys but no %s file to say which signs", len(kr.keys), ActiveKeyFile)
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	der, err := decodeOnePEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T; want an Ed25519 key", path, parsed)
	}
	return key, nil
}

// addKey makes a new key, stores it, and makes it active. kr.mu must be held
// or kr not yet shared.
func (kr *Keyring) addKey() (string, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generating signing key: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encoding signing key: %w", err)
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	// The key file is durable before the active file names it.
	if err := writeFileAtomic(filepath.Join(kr.dir, keyFileName(id)), keyPEM, 0o600); err != nil {
		return "", fmt.Errorf("storing signing key: %w", err)
	}
	kr.keys[id] = key
	if err := kr.setActive(id); err != nil {
		return "", err
	}
	return id, nil
}

func (kr *Keyring) setActive(id string) error {
	if err := writeFileAtomic(filepath.Join(kr.dir, ActiveKeyFile), []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("storing active key id: %w", err)
	}
	kr.active = id
	return nil
}

// ActiveKeyID returns the id of the key that signs new commands.
func (kr *Keyring) ActiveKeyID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}

// Rotate makes a new signing key active and returns its id. Earlier keys stay
// in the keyring and in [Keyring.VerificationKeys] so that commands they signed
// still verify. Agents refuse commands under a key id they have not been given
// (ReasonUnknownKey), so they must hold the new public key before the commands
// it signs reach them.
func (kr *Keyring) Rotate() (keyID string, err error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	id, err := kr.addKey()
	if err != nil {
		return "", fmt.Errorf("rotating signing key: %w", err)
	}
	return id, nil
}

// VerificationKeys returns the public half of every key in the keyring,
// sorted by key id, for agents to verify commands with.
func (kr *Keyring) VerificationKeys() []*agentv1.VerificationKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([]*agentv1.VerificationKey, 0, len(kr.keys))
	for id, key := range kr.keys {
		pub := key.Public().(ed25519.PublicKey)
		out = append(out, &agentv1.VerificationKey{KeyId: id, PublicKey: append([]byte(nil), pub...)})
	}
	slices.SortFunc(out, func(a, b *agentv1.VerificationKey) int { return strings.Compare(a.GetKeyId(), b.GetKeyId()) })
	return out
}

// Sign encodes body deterministically and signs it with the active key,
// returning the envelope to send. It refuses a body that no agent would
// accept whatever its clock and state: missing or invalid ids, sequence 0, an
// unknown kind, a lock or policy update without policy, an expiry not after
// the issue time, or an encoding over MaxCommandBodySize.
func (kr *Keyring) Sign(body *agentv1.CommandBody) (*agentv1.SignedCommand, error) {
	if err := checkSignable(body); err != nil {
		return nil, fmt.Errorf("signing command: %w", err)
	}
	encoded, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	if len(encoded) > MaxCommandBodySize {
		return nil, fmt.Errorf("signing command: body is %d bytes; at most %d allowed", len(encoded), MaxCommandBodySize)
	}
	kr.mu.RLock()
	id, key := kr.active, kr.keys[kr.active]
	kr.mu.RUnlock()
	return &agentv1.SignedCommand{
		KeyId:        id,
		Body:         encoded,
		Signature:    ed25519.Sign(key, signedMessage(encoded)),
		SequenceHint: body.GetSequence(),
	}, nil
}

// checkSignable is the part of verification that depends only on the body.
func checkSignable(body *agentv1.CommandBody) error {
	if body == nil {
		return errors.New("no body")
	}
	if err := (DeviceIdentity{OrgID: body.GetOrgId(), DeviceID: body.GetDeviceId()}).Validate(); err != nil {
		return err
	}
	if body.GetSequence() == 0 {
		return errors.New("sequence 0; sequences start at 1")
	}
	if re := checkKind(body); re != nil {
		return errors.New(re.Detail)
	}
	if body.GetExpiresAtUnixNano() <= body.GetIssuedAtUnixNano() {
		return fmt.Errorf("expires at %d, not after issued at %d", body.GetExpiresAtUnixNano(), body.GetIssuedAtUnixNano())
	}
	return nil
}
