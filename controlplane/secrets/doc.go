// Package secrets envelope-encrypts the credentials Toktra keeps at rest
// (provider admin keys, HRIS credentials).
//
// Every secret gets its own random 256-bit data key. The data key encrypts
// the secret with AES-256-GCM, bound to caller-supplied additional
// authenticated data (aad) such as "org_x/provider/openai", so a ciphertext
// copied to another org or row does not open. The data key is then wrapped
// by a key-encryption key (KEK): a [LocalKEK] kept in key files on disk, or a
// [KMSKEK] held by AWS KMS. The result is a versioned, self-describing
// envelope that names its KEK, so a [Sealer] can open secrets sealed under
// any KEK it still knows and re-wrap them under the active one after a
// rotation without touching the secret itself.
//
// The [Secret] type keeps plaintext out of logs and JSON by accident: every
// way of printing it yields "[REDACTED]" unless the caller asks for
// [Secret.Reveal].
package secrets
