package secrets

import "context"

// KeyEncrypter is a key-encryption key (KEK): it wraps and unwraps the
// per-secret data keys. Implementations must authenticate aad, so a wrapped
// key only unwraps with the aad it was wrapped with.
type KeyEncrypter interface {
	// KeyID names the key stably; it is stored in every envelope so that
	// Open can find the KEK again.
	KeyID() string
	// Wrap encrypts dataKey, binding it to aad.
	Wrap(ctx context.Context, dataKey, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; it fails unless aad matches.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
}

// Keyring supplies a Sealer with its KEKs: the active one that seals new
// secrets, and any KEK, active or retired, that may still be needed to open
// old ones.
type Keyring interface {
	// Active returns the KEK new secrets are sealed under.
	Active() KeyEncrypter
	// Lookup returns the KEK with the given id, if the keyring holds it.
	Lookup(id string) (KeyEncrypter, bool)
}

// NewKeyring returns a Keyring that seals under active and opens with active
// or any of retired. A KEK that is itself a Keyring (such as a *LocalKEK) is
// consulted as a whole, so its own rotations are seen without rebuilding the
// keyring. Use it, for example, to move from a LocalKEK to a KMSKEK:
// NewKeyring(kmsKEK, localKEK).
func NewKeyring(active KeyEncrypter, retired ...KeyEncrypter) Keyring {
	return &staticKeyring{keys: append([]KeyEncrypter{active}, retired...)}
}

type staticKeyring struct {
	keys []KeyEncrypter // keys[0] is active
}

func (r *staticKeyring) Active() KeyEncrypter {
	if ring, ok := r.keys[0].(Keyring); ok {
		return ring.Active()
	}
	return r.keys[0]
}

func (r *staticKeyring) Lookup(id string) (KeyEncrypter, bool) {
	for _, k := range r.keys {
		if ring, ok := k.(Keyring); ok {
			if found, ok := ring.Lookup(id); ok {
				return found, true
			}
			continue
		}
		if k.KeyID() == id {
			return k, true
		}
	}
	return nil, false
}
