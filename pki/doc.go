// Package pki is Toktra's trust machinery: the device CA, the Ed25519 keys that
// sign commands, and the verification of those commands that the agent runs.
//
// # Device identity and TLS
//
// The control plane holds one ECDSA P-256 CA ([LoadOrCreateCA]). At enrollment
// the agent sends a PKCS#10 request for a key it made itself; [CA.SignDeviceCSR]
// ignores every name in the request and issues a short-lived client
// certificate whose only identity is one URI SAN,
// toktra://org/<org id>/device/<device id> ([DeviceIdentity]).
//
// The agent does not know the CA before enrollment; the MDM gives it the CA's
// pin instead ([CA.Pin], "sha256:" and the hex SHA-256 of the CA's
// SubjectPublicKeyInfo). [EnrollmentTLSConfig] and [VerifyPinnedChain] check
// that the server's chain holds a certificate with that key and that the leaf
// verifies against it as the only root. For this to work the server's TLS
// chain must include the CA certificate, which [CA.IssueServerCert] arranges.
//
// After enrollment everything is mutual TLS 1.3 ([ServerTLSConfig],
// [AgentTLSConfig]) trusting only this CA. The server's listener accepts
// connections without a client certificate because enrollment has none;
// handlers that need a device (the stream) must call [PeerIdentity], which
// fails when no verified client certificate was presented.
//
// # Evidence signing
//
// The same CA issues the control plane's evidence-signing certificate
// ([LoadOrCreateEvidenceSigner], evidence.pem and evidence-key.pem, 0600, in
// the CA's directory), which signs the audit snapshot PDF. It is for
// document signing only: documentSigning (RFC 9336) and emailProtection
// (which NSS, and so poppler's pdfsig, requires of a signer) extended key
// usages, digitalSignature and nonRepudiation, no client or server
// authentication and no device URI, so it can never pass as a device. It is
// re-issued for the same key 90 days before it expires.
//
// # Signed commands
//
// A [Keyring] holds Ed25519 signing keys by key id, one of them active.
// [Keyring.Sign] encodes a CommandBody deterministically and signs
//
//	"toktra-command-v1\x00" || body
//
// so that a signature over a command can never be mistaken for a signature over
// anything else. Old keys stay in the keyring after [Keyring.Rotate] so that
// agents keep accepting commands signed before the rotation.
//
// [Verifier.Verify] checks, in this order and never parsing what is not yet
// authenticated: the envelope's sizes, the key id, the signature, then the body's
// encoding, its org and device, its kind, its sequence (strictly greater than
// the last one applied) and its validity window. Every refusal is a
// [*RejectError] whose Reason is one of the stable Reason constants that the
// agent reports in its acknowledgement.
//
// The verification half (verify.go and the identity helpers) has no server-only
// dependencies; the agent imports this package too.
package pki
