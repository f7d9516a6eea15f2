package secrets

import "errors"

// Errors returned by this package, to be checked with errors.Is.
var (
	// ErrMalformed means the bytes are not a well-formed envelope: too
	// short, wrong magic, or inconsistent lengths.
	ErrMalformed = errors.New("malformed secret envelope")
	// ErrUnsupportedVersion means the envelope names a format version this
	// build does not know.
	ErrUnsupportedVersion = errors.New("unsupported secret envelope version")
	// ErrUnknownKEK means the envelope was sealed under a key-encryption key
	// that the keyring does not hold.
	ErrUnknownKEK = errors.New("unknown key-encryption key")
	// ErrAuthentication means decryption failed its integrity check: the aad
	// differs from the one used to seal (the secret was moved to another
	// org or row) or the envelope was tampered with. The two cases are
	// deliberately indistinguishable.
	ErrAuthentication = errors.New("secret authentication failed (wrong aad or tampered envelope)")
	// ErrKEKAccessDenied means the key service refused the caller, e.g.
	// AWS KMS answered AccessDeniedException: fix the IAM or key policy.
	ErrKEKAccessDenied = errors.New("access to key-encryption key denied")
	// ErrKEKUnavailable means the key-encryption key exists nowhere usable:
	// not found, disabled, pending deletion, or otherwise unusable.
	ErrKEKUnavailable = errors.New("key-encryption key unavailable")
	// ErrInsecureKeyFile means a local key file or its directory can be
	// read or written by users other than its owner, or is not a plain file.
	ErrInsecureKeyFile = errors.New("insecure key file permissions")
)
