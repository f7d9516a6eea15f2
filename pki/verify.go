package pki

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
	"google.golang.org/protobuf/proto"
)

const (
	// MaxCommandBodySize is the largest command body, in bytes, that is signed
	// or verified. Larger bodies are refused before their signature is checked.
	MaxCommandBodySize = 64 << 10

	// MaxClockSkew is how far a command's issue time may lie in the verifier's
	// future, and how far certificates are backdated, to tolerate clocks that
	// disagree.
	MaxClockSkew = 5 * time.Minute
)

// commandDomain is prepended to a command body before signing so that a
// command signature can never be valid for any other message.
const commandDomain = "toktra-command-v1\x00"

// Stable reasons for refusing a command. Agents send them in CommandAck.reason;
// they never change meaning.
const (
	// ReasonMalformed: the envelope or the body is not well formed (sizes,
	// encoding, or an impossible validity window).
	ReasonMalformed = "malformed"
	// ReasonUnknownKey: the key id names no key the verifier holds.
	ReasonUnknownKey = "unknown_key"
	// ReasonBadSignature: the signature does not verify.
	ReasonBadSignature = "bad_signature"
	// ReasonWrongOrg: the command is for another org.
	ReasonWrongOrg = "wrong_org"
	// ReasonWrongDevice: the command is for another device.
	ReasonWrongDevice = "wrong_device"
	// ReasonReplayed: the sequence is not greater than the last applied.
	ReasonReplayed = "replayed_sequence"
	// ReasonExpired: the command's expiry has passed.
	ReasonExpired = "expired"
	// ReasonNotYetValid: the command was issued further in the future than
	// MaxClockSkew allows.
	ReasonNotYetValid = "not_yet_valid"
	// ReasonBadKind: the kind is unspecified or unknown, or a kind that needs
	// a policy has none.
	ReasonBadKind = "bad_kind"
)

// RejectError is why a command was refused. Reason is one of the Reason
// constants, for machines; Detail is for people.
type RejectError struct {
	Reason string
	Detail string
}

// Error describes the rejection.
func (e *RejectError) Error() string {
	return "command rejected: " + e.Reason + ": " + e.Detail
}

// RejectReason returns the stable reason of a rejection anywhere in err's
// chain, and whether there was one.
func RejectReason(err error) (reason string, ok bool) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason, true
	}
	return "", false
}

func reject(reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Verifier checks signed commands on behalf of one device. Build it with
// [NewVerifier]; a Verifier built by hand with a key of the wrong size refuses
// every command under that key.
type Verifier struct {
	// OrgID and DeviceID are the device's identity; commands for anyone else
	// are refused.
	OrgID, DeviceID string
	// Keys are the public keys trusted to sign commands, by key id.
	Keys map[string]ed25519.PublicKey
}

// NewVerifier returns a Verifier for the device orgID/deviceID that trusts
// keys (as received at enrollment). It refuses invalid ids, an empty key set,
// keys that are not 32 bytes, key ids that are not [KeyID] of their key, and
// duplicate key ids.
func NewVerifier(orgID, deviceID string, keys []*agentv1.VerificationKey) (*Verifier, error) {
	if err := (DeviceIdentity{OrgID: orgID, DeviceID: deviceID}).Validate(); err != nil {
		return nil, fmt.Errorf("creating verifier: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("creating verifier: no verification keys")
	}
	v := &Verifier{OrgID: orgID, DeviceID: deviceID, Keys: make(map[string]ed25519.PublicKey, len(keys))}
	for i, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("creating verifier: key %d is nil", i)
		}
		if n := len(k.GetPublicKey()); n != ed25519.PublicKeySize {
			return nil, fmt.Errorf("creating verifier: key %q is %d bytes; want %d", k.GetKeyId(), n, ed25519.PublicKeySize)
		}
		pub := ed25519.PublicKey(append([]byte(nil), k.GetPublicKey()...))
		if want := KeyID(pub); k.GetKeyId() != want {
			return nil, fmt.Errorf("creating verifier: key id %q does not match its key (want %q)", k.GetKeyId(), want)
		}
		if _, dup := v.Keys[k.GetKeyId()]; dup {
			return nil, fmt.Errorf("creating verifier: duplicate key id %q", k.GetKeyId())
		}
		v.Keys[k.GetKeyId()] = pub
	}
	return v, nil
}

// Verify checks a signed command for this device and returns its body if the
// command may be applied. lastApplied is the sequence of the last command the
// device applied (0 before the first); the caller records the new sequence once
// the command is in force. now is the device's current time.
//
// The checks run in an order that never lets unauthenticated bytes reach the
// protobuf parser: envelope sizes, key id, signature, and only then the body's
// decoding, org and device, kind and policy, sequence, and validity window.
// Every error is a *RejectError (see [RejectReason]).
func (v *Verifier) Verify(sc *agentv1.SignedCommand, lastApplied uint64, now time.Time) (*agentv1.CommandBody, error) {
	// (a) Envelope sanity.
	if sc == nil {
		return nil, reject(ReasonMalformed, "no command")
	}
	body, sig := sc.GetBody(), sc.GetSignature()
	if len(body) == 0 {
		return nil, reject(ReasonMalformed, "empty body")
	}
	if len(body) > MaxCommandBodySize {
		return nil, reject(ReasonMalformed, "body is %d bytes; at most %d allowed", len(body), MaxCommandBodySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, reject(ReasonMalformed, "signature is %d bytes; want %d", len(sig), ed25519.SignatureSize)
	}

	// (b) Key id.
	var pub ed25519.PublicKey
	if v != nil {
		pub = v.Keys[sc.GetKeyId()]
	}
	if pub == nil {
		return nil, reject(ReasonUnknownKey, "key id %s is not trusted", quoteShort(sc.GetKeyId()))
	}
	if len(pub) != ed25519.PublicKeySize {
		// ed25519.Verify panics on a bad key size; a hand-built Verifier
		// could hold one.
		return nil, reject(ReasonUnknownKey, "key id %s has an invalid %d-byte key", quoteShort(sc.GetKeyId()), len(pub))
	}

	// (c) Signature over the domain-separated body.
	if !ed25519.Verify(pub, signedMessage(body), sig) {
		return nil, reject(ReasonBadSignature, "signature by %s does not verify", quoteShort(sc.GetKeyId()))
	}

	// (d) Only now is the body trusted enough to parse. Unknown fields are
	// kept, not discarded, and do not fail the parse.
	cmd := new(agentv1.CommandBody)
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(body, cmd); err != nil {
		return nil, reject(ReasonMalformed, "decoding body: %v", err)
	}

	// (e) Binding to this device.
	if cmd.GetOrgId() == "" || cmd.GetOrgId() != v.OrgID {
		return nil, reject(ReasonWrongOrg, "command is for org %s, not %s", quoteShort(cmd.GetOrgId()), quoteShort(v.OrgID))
	}
	if cmd.GetDeviceId() == "" || cmd.GetDeviceId() != v.DeviceID {
		return nil, reject(ReasonWrongDevice, "command is for device %s, not %s", quoteShort(cmd.GetDeviceId()), quoteShort(v.DeviceID))
	}

	// (f) Kind and policy.
	if re := checkKind(cmd); re != nil {
		return nil, re
	}

	// (g) Strictly increasing sequence.
	if cmd.GetSequence() <= lastApplied {
		return nil, reject(ReasonReplayed, "sequence %d is not greater than last applied %d", cmd.GetSequence(), lastApplied)
	}

	// (h) Validity window.
	issued, expires := cmd.GetIssuedAtUnixNano(), cmd.GetExpiresAtUnixNano()
	if expires <= issued {
		return nil, reject(ReasonMalformed, "expires at %d, not after issued at %d", expires, issued)
	}
	// Compare as time.Time, not as nanoseconds, so that no clock value can
	// overflow into a pass.
	issuedAt, expiresAt := time.Unix(0, issued), time.Unix(0, expires)
	if !now.Before(expiresAt) {
		return nil, reject(ReasonExpired, "expired at %s; now %s", formatTime(expiresAt), formatTime(now))
	}
	if issuedAt.After(now.Add(MaxClockSkew)) {
		return nil, reject(ReasonNotYetValid, "issued at %s, more than %s after now %s", formatTime(issuedAt), MaxClockSkew, formatTime(now))
	}
	return cmd, nil
}

// checkKind refuses an unspecified or unknown kind, and a lock or policy
// update without a policy.
func checkKind(cmd *agentv1.CommandBody) *RejectError {
	switch k := cmd.GetKind(); k {
	case agentv1.CommandKind_COMMAND_KIND_LOCK, agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE:
		if cmd.GetPolicy() == nil {
			return reject(ReasonBadKind, "%s command has no policy", k)
		}
		return nil
	case agentv1.CommandKind_COMMAND_KIND_UNLOCK:
		return nil
	default:
		return reject(ReasonBadKind, "kind %s is not a command", k)
	}
}

// signedMessage is what a command signature covers: the domain, then the body.
func signedMessage(body []byte) []byte {
	msg := make([]byte, 0, len(commandDomain)+len(body))
	msg = append(msg, commandDomain...)
	return append(msg, body...)
}

// quoteShort quotes s for an error detail, cut short so that an attacker's
// oversized key id does not flood logs and acks.
func quoteShort(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return fmt.Sprintf("%q...", s[:maxLen])
	}
	return fmt.Sprintf("%q", s)
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
