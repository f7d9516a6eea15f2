package pki

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
	"google.golang.org/protobuf/proto"
)

var knownReasons = map[string]bool{
	ReasonMalformed: true, ReasonUnknownKey: true, ReasonBadSignature: true,
	ReasonWrongOrg: true, ReasonWrongDevice: true, ReasonReplayed: true,
	ReasonExpired: true, ReasonNotYetValid: true, ReasonBadKind: true,
}

// checkRejection fails the test unless err is a *RejectError with a known reason.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var re *RejectError
	if !errors.As(err, &re) {
		t.Fatalf("Verify = %v; want a *RejectError", err)
	}
	if !knownReasons[re.Reason] {
		t.Fatalf("Verify reason = %q; want one of the Reason constants", re.Reason)
	}
}

// FuzzVerify feeds arbitrary envelopes to a verifier. Nothing the fuzzer makes
// carries a valid signature for this device, so Verify must refuse all of it,
// with a RejectError, and never panic. The seeds that are validly signed are
// for another device, so that the fuzzer starts from bodies that get past the
// signature check.
func FuzzVerify(f *testing.F) {
	kr, err := LoadOrCreateSigningKeys(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(testOrg, testDevice, kr.VerificationKeys())
	if err != nil {
		f.Fatal(err)
	}
	otherDevice, err := kr.Sign(lockBody(testOrg, "dev-other", 5))
	if err != nil {
		f.Fatal(err)
	}
	otherOrg, err := kr.Sign(lockBody("org_other", testDevice, 5))
	if err != nil {
		f.Fatal(err)
	}
	now := testNow.UnixNano()
	for _, sc := range []*agentv1.SignedCommand{otherDevice, otherOrg} {
		f.Add(sc.GetKeyId(), sc.GetBody(), sc.GetSignature(), uint64(0), now)
	}
	f.Add(kr.ActiveKeyID(), otherDevice.GetBody(), make([]byte, ed25519.SignatureSize), uint64(0), now)
	f.Add(kr.ActiveKeyID(), []byte{}, []byte{}, uint64(0), now)
	f.Add("", []byte{0x08}, make([]byte, 63), uint64(1), int64(0))
	f.Add("ed25519:0000000000000000", []byte("\x0a\x03abc"), make([]byte, 64), ^uint64(0), int64(-1))

	f.Fuzz(func(t *testing.T, keyID string, body, sig []byte, lastApplied uint64, nowNano int64) {
		sc := &agentv1.SignedCommand{KeyId: keyID, Body: body, Signature: sig}
		got, err := v.Verify(sc, lastApplied, time.Unix(0, nowNano))
		if err == nil {
			t.Fatalf("Verify(key %q, body %x, sig %x) accepted %v; want a rejection", keyID, body, sig, got)
		}
		if got != nil {
			t.Fatalf("Verify returned a body with error %v", err)
		}
		checkRejection(t, err)
	})
}

// FuzzTrustedBody signs whatever body the fuzzer makes with a trusted key, to
// exercise everything after the signature check: decoding must never panic,
// and any command accepted must satisfy every rule on its own.
func FuzzTrustedBody(f *testing.F) {
	s := setupFromF(f)
	for _, b := range []*agentv1.CommandBody{
		s.body,
		lockBody(testOrg, "dev-other", 9),
		{OrgId: testOrg, DeviceId: testDevice, Sequence: 1, Kind: agentv1.CommandKind_COMMAND_KIND_UNLOCK, ExpiresAtUnixNano: 1},
	} {
		encoded, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(encoded, uint64(0), testNow.UnixNano())
	}
	f.Add([]byte{0xff}, uint64(0), int64(0))

	f.Fuzz(func(t *testing.T, body []byte, lastApplied uint64, nowNano int64) {
		if len(body) == 0 || len(body) > MaxCommandBodySize {
			return // refused before the signature check; FuzzVerify covers it
		}
		s.keys.mu.RLock()
		key := s.keys.keys[s.keys.active]
		s.keys.mu.RUnlock()
		sc := &agentv1.SignedCommand{KeyId: s.keys.ActiveKeyID(), Body: body, Signature: ed25519.Sign(key, signedMessage(body))}
		now := time.Unix(0, nowNano)
		got, err := s.verifier.Verify(sc, lastApplied, now)
		if err != nil {
			checkRejection(t, err)
			return
		}
		switch {
		case got.GetOrgId() != testOrg || got.GetDeviceId() != testDevice:
			t.Fatalf("accepted a command for %s/%s", got.GetOrgId(), got.GetDeviceId())
		case got.GetSequence() <= lastApplied:
			t.Fatalf("accepted sequence %d after %d", got.GetSequence(), lastApplied)
		case got.GetKind() == agentv1.CommandKind_COMMAND_KIND_UNSPECIFIED || agentv1.CommandKind_name[int32(got.GetKind())] == "":
			t.Fatalf("accepted kind %v", got.GetKind())
		case got.GetKind() != agentv1.CommandKind_COMMAND_KIND_UNLOCK && got.GetPolicy() == nil:
			t.Fatalf("accepted %v without a policy", got.GetKind())
		case nowNano >= got.GetExpiresAtUnixNano() || got.GetExpiresAtUnixNano() <= got.GetIssuedAtUnixNano():
			t.Fatalf("accepted a command expiring at %d, issued at %d, now %d", got.GetExpiresAtUnixNano(), got.GetIssuedAtUnixNano(), nowNano)
		case time.Unix(0, got.GetIssuedAtUnixNano()).Sub(now) > MaxClockSkew:
			t.Fatalf("accepted a command issued at %d, now %d", got.GetIssuedAtUnixNano(), nowNano)
		}
	})
}

// setupFromF is setupSigning for a fuzz target.
func setupFromF(f *testing.F) signingSetup {
	f.Helper()
	kr, err := LoadOrCreateSigningKeys(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(testOrg, testDevice, kr.VerificationKeys())
	if err != nil {
		f.Fatal(err)
	}
	return signingSetup{keys: kr, verifier: v, body: lockBody(testOrg, testDevice, 7)}
}
