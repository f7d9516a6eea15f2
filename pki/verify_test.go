package pki

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	sc := mustSign(t, s.keys, s.body)
	if sc.GetKeyId() != s.keys.ActiveKeyID() {
		t.Errorf("Sign().KeyId = %q; want %q", sc.GetKeyId(), s.keys.ActiveKeyID())
	}
	if sc.GetSequenceHint() != s.body.GetSequence() {
		t.Errorf("Sign().SequenceHint = %d; want %d", sc.GetSequenceHint(), s.body.GetSequence())
	}
	got, err := s.verifier.Verify(sc, 6, testNow)
	if err != nil {
		t.Fatalf("Verify(signed, 6, now) = %v; want nil", err)
	}
	if !proto.Equal(got, s.body) {
		t.Errorf("Verify(signed) = %v; want %v", got, s.body)
	}
}

func TestSignVerifyKinds(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	tests := []struct {
		kind   agentv1.CommandKind
		policy *agentv1.Policy
	}{
		{agentv1.CommandKind_COMMAND_KIND_LOCK, &agentv1.Policy{Version: 1}},
		{agentv1.CommandKind_COMMAND_KIND_UNLOCK, nil},
		{agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE, &agentv1.Policy{Version: 2, Domains: []string{"api.mistral.ai"}}},
	}
	for _, tt := range tests {
		body := lockBody(testOrg, testDevice, 1)
		body.Kind, body.Policy = tt.kind, tt.policy
		if _, err := s.verifier.Verify(mustSign(t, s.keys, body), 0, testNow); err != nil {
			t.Errorf("Verify(%s) = %v; want nil", tt.kind, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	valid := mustSign(t, s.keys, s.body) // sequence 7, issued testNow, expires +1h

	marshal := func(b *agentv1.CommandBody) []byte {
		out, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	edit := func(f func(*agentv1.SignedCommand)) *agentv1.SignedCommand {
		sc := proto.Clone(valid).(*agentv1.SignedCommand)
		f(sc)
		return sc
	}
	editBody := func(f func(*agentv1.CommandBody)) *agentv1.SignedCommand {
		b := proto.Clone(s.body).(*agentv1.CommandBody)
		f(b)
		return signRaw(t, s.keys, marshal(b))
	}
	activeKey := s.keys.keys[s.keys.ActiveKeyID()]

	tests := []struct {
		name        string
		sc          *agentv1.SignedCommand
		lastApplied uint64
		now         time.Time
		want        string
	}{
		{"nil command", nil, 0, testNow, ReasonMalformed},
		{"empty body", edit(func(sc *agentv1.SignedCommand) { sc.Body = nil }), 0, testNow, ReasonMalformed},
		{"oversize body", signRaw(t, s.keys, bytes.Repeat([]byte{0}, MaxCommandBodySize+1)), 0, testNow, ReasonMalformed},
		{"no signature", edit(func(sc *agentv1.SignedCommand) { sc.Signature = nil }), 0, testNow, ReasonMalformed},
		{"short signature", edit(func(sc *agentv1.SignedCommand) { sc.Signature = sc.Signature[:63] }), 0, testNow, ReasonMalformed},
		{"long signature", edit(func(sc *agentv1.SignedCommand) { sc.Signature = append(sc.Signature, 0) }), 0, testNow, ReasonMalformed},
		{"unknown key id", edit(func(sc *agentv1.SignedCommand) { sc.KeyId = "ed25519:0000000000000000" }), 0, testNow, ReasonUnknownKey},
		{"empty key id", edit(func(sc *agentv1.SignedCommand) { sc.KeyId = "" }), 0, testNow, ReasonUnknownKey},
		{"unknown key id with garbage body", edit(func(sc *agentv1.SignedCommand) { sc.KeyId = "x"; sc.Body = []byte{0xff} }), 0, testNow, ReasonUnknownKey},
		{"flipped body byte", edit(func(sc *agentv1.SignedCommand) { sc.Body[len(sc.Body)/2] ^= 0x01 }), 0, testNow, ReasonBadSignature},
		{"flipped signature byte", edit(func(sc *agentv1.SignedCommand) { sc.Signature[10] ^= 0x80 }), 0, testNow, ReasonBadSignature},
		{"signature without domain", edit(func(sc *agentv1.SignedCommand) { sc.Signature = ed25519.Sign(activeKey, sc.Body) }), 0, testNow, ReasonBadSignature},
		{"bad signature checked before binding", withSignature(editBody(func(b *agentv1.CommandBody) { b.DeviceId = "dev-other" }), valid.GetSignature()), 0, testNow, ReasonBadSignature},
		{"signed garbage", signRaw(t, s.keys, []byte{0xff, 0xff, 0xff, 0xff}), 0, testNow, ReasonMalformed},
		{"signed invalid utf-8", signRaw(t, s.keys, protowire.AppendString(protowire.AppendTag(marshal(s.body), 8, protowire.BytesType), "\xff")), 0, testNow, ReasonMalformed},
		{"signed truncated body", signRaw(t, s.keys, marshal(s.body)[:len(marshal(s.body))-1]), 0, testNow, ReasonMalformed},
		{"other org", mustSign(t, s.keys, lockBody("org_other", testDevice, 7)), 0, testNow, ReasonWrongOrg},
		{"no org", editBody(func(b *agentv1.CommandBody) { b.OrgId = "" }), 0, testNow, ReasonWrongOrg},
		{"other device", mustSign(t, s.keys, lockBody(testOrg, "dev-0002", 7)), 0, testNow, ReasonWrongDevice},
		{"no device", editBody(func(b *agentv1.CommandBody) { b.DeviceId = "" }), 0, testNow, ReasonWrongDevice},
		{"unspecified kind", editBody(func(b *agentv1.CommandBody) { b.Kind = agentv1.CommandKind_COMMAND_KIND_UNSPECIFIED }), 0, testNow, ReasonBadKind},
		{"unknown kind", editBody(func(b *agentv1.CommandBody) { b.Kind = 99 }), 0, testNow, ReasonBadKind},
		{"lock without policy", editBody(func(b *agentv1.CommandBody) { b.Policy = nil }), 0, testNow, ReasonBadKind},
		{"policy update without policy", editBody(func(b *agentv1.CommandBody) {
			b.Kind, b.Policy = agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE, nil
		}), 0, testNow, ReasonBadKind},
		{"replayed equal sequence", valid, 7, testNow, ReasonReplayed},
		{"replayed older sequence", valid, 8, testNow, ReasonReplayed},
		{"sequence zero", editBody(func(b *agentv1.CommandBody) { b.Sequence = 0 }), 0, testNow, ReasonReplayed},
		{"expired exactly", valid, 0, testNow.Add(time.Hour), ReasonExpired},
		{"expired", valid, 0, testNow.Add(2 * time.Hour), ReasonExpired},
		{"issued in the future", valid, 0, testNow.Add(-MaxClockSkew - time.Second), ReasonNotYetValid},
		{"expires before issued", editBody(func(b *agentv1.CommandBody) { b.ExpiresAtUnixNano = b.IssuedAtUnixNano - 1 }), 0, testNow, ReasonMalformed},
		{"expires when issued", editBody(func(b *agentv1.CommandBody) { b.ExpiresAtUnixNano = b.IssuedAtUnixNano }), 0, testNow, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, err := s.verifier.Verify(tt.sc, tt.lastApplied, tt.now)
			if body != nil {
				t.Errorf("Verify(%s) returned a body; want nil", tt.name)
			}
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("Verify(%s) = %v; want a *RejectError", tt.name, err)
			}
			if re.Reason != tt.want {
				t.Errorf("Verify(%s) reason = %q (%v); want %q", tt.name, re.Reason, err, tt.want)
			}
			if re.Detail == "" {
				t.Errorf("Verify(%s) detail is empty", tt.name)
			}
		})
	}
}

// withSignature returns a copy of sc with another signature; used to pair a
// valid signature with a body it was not made for.
func withSignature(sc *agentv1.SignedCommand, sig []byte) *agentv1.SignedCommand {
	out := proto.Clone(sc).(*agentv1.SignedCommand)
	out.Signature = bytes.Clone(sig)
	return out
}

func TestVerifyAllowsClockSkew(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	sc := mustSign(t, s.keys, s.body)
	// The command was issued MaxClockSkew after the device's now.
	if _, err := s.verifier.Verify(sc, 0, testNow.Add(-MaxClockSkew)); err != nil {
		t.Errorf("Verify(issued now+MaxClockSkew) = %v; want nil", err)
	}
	// And one nanosecond before expiry is still valid.
	if _, err := s.verifier.Verify(sc, 0, testNow.Add(time.Hour-1)); err != nil {
		t.Errorf("Verify(1ns before expiry) = %v; want nil", err)
	}
}

func TestVerifyHandBuiltVerifier(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	sc := mustSign(t, s.keys, s.body)
	tests := []struct {
		name string
		v    *Verifier
		want string
	}{
		{"nil verifier", nil, ReasonUnknownKey},
		{"short key", &Verifier{OrgID: testOrg, DeviceID: testDevice, Keys: map[string]ed25519.PublicKey{sc.GetKeyId(): make([]byte, 31)}}, ReasonUnknownKey},
		{"no org", &Verifier{DeviceID: testDevice, Keys: s.verifier.Keys}, ReasonWrongOrg},
		{"no device", &Verifier{OrgID: testOrg, Keys: s.verifier.Keys}, ReasonWrongDevice},
	}
	for _, tt := range tests {
		_, err := tt.v.Verify(sc, 0, testNow)
		if got, _ := RejectReason(err); got != tt.want {
			t.Errorf("%s: Verify = %v; want reason %q", tt.name, err, tt.want)
		}
	}
}

func TestVerifyAfterRotation(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	oldID := s.keys.ActiveKeyID()
	oldCmd := mustSign(t, s.keys, s.body)
	newID, err := s.keys.Rotate()
	if err != nil {
		t.Fatalf("Rotate = %v", err)
	}
	if newID == oldID || s.keys.ActiveKeyID() != newID {
		t.Fatalf("Rotate() = %q, ActiveKeyID() = %q; want a new active id, not %q", newID, s.keys.ActiveKeyID(), oldID)
	}
	newCmd := mustSign(t, s.keys, lockBody(testOrg, testDevice, 8))
	if newCmd.GetKeyId() != newID {
		t.Errorf("Sign after Rotate: KeyId = %q; want %q", newCmd.GetKeyId(), newID)
	}

	both, err := NewVerifier(testOrg, testDevice, s.keys.VerificationKeys())
	if err != nil {
		t.Fatalf("NewVerifier(both keys) = %v", err)
	}
	if _, err := both.Verify(oldCmd, 6, testNow); err != nil {
		t.Errorf("Verify(old-key command) with both keys = %v; want nil", err)
	}
	if _, err := both.Verify(newCmd, 7, testNow); err != nil {
		t.Errorf("Verify(new-key command) with both keys = %v; want nil", err)
	}
	// An agent that has not learned the new key refuses what it signs.
	if _, err := s.verifier.Verify(newCmd, 7, testNow); !isReason(err, ReasonUnknownKey) {
		t.Errorf("Verify(new-key command) with old key only = %v; want %q", err, ReasonUnknownKey)
	}
}

func isReason(err error, reason string) bool {
	got, ok := RejectReason(err)
	return ok && got == reason
}

func TestSignDeterministic(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	a := mustSign(t, s.keys, s.body)
	// Same content built afresh, map-free but with fields set in another order.
	b := mustSign(t, s.keys, &agentv1.CommandBody{
		LockoutId: s.body.LockoutId, Policy: s.body.Policy, Kind: s.body.Kind,
		ExpiresAtUnixNano: s.body.ExpiresAtUnixNano, IssuedAtUnixNano: s.body.IssuedAtUnixNano,
		Sequence: s.body.Sequence, DeviceId: s.body.DeviceId, OrgId: s.body.OrgId,
	})
	if !bytes.Equal(a.GetBody(), b.GetBody()) {
		t.Errorf("Sign(body).Body = %x; want %x (same as first)", b.GetBody(), a.GetBody())
	}
	if !bytes.Equal(a.GetSignature(), b.GetSignature()) {
		t.Errorf("Sign(body).Signature = %x; want %x (Ed25519 is deterministic)", b.GetSignature(), a.GetSignature())
	}
}

func TestSignRefuses(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	tests := []struct {
		name string
		edit func(*agentv1.CommandBody)
	}{
		{"no org", func(b *agentv1.CommandBody) { b.OrgId = "" }},
		{"bad device id", func(b *agentv1.CommandBody) { b.DeviceId = "../x" }},
		{"sequence zero", func(b *agentv1.CommandBody) { b.Sequence = 0 }},
		{"unspecified kind", func(b *agentv1.CommandBody) { b.Kind = agentv1.CommandKind_COMMAND_KIND_UNSPECIFIED }},
		{"lock without policy", func(b *agentv1.CommandBody) { b.Policy = nil }},
		{"expires before issued", func(b *agentv1.CommandBody) { b.ExpiresAtUnixNano = b.IssuedAtUnixNano }},
		{"oversize", func(b *agentv1.CommandBody) { b.Policy.Domains = []string{strings.Repeat("a", MaxCommandBodySize)} }},
	}
	for _, tt := range tests {
		b := proto.Clone(s.body).(*agentv1.CommandBody)
		tt.edit(b)
		if sc, err := s.keys.Sign(b); err == nil {
			t.Errorf("Sign(%s) = %v, nil; want an error", tt.name, sc)
		}
	}
	if sc, err := s.keys.Sign(nil); err == nil {
		t.Errorf("Sign(nil) = %v, nil; want an error", sc)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	t.Parallel()
	s := setupSigning(t)
	good := s.keys.VerificationKeys()[0]
	pub := ed25519.PublicKey(good.GetPublicKey())
	tests := []struct {
		name        string
		org, device string
		keys        []*agentv1.VerificationKey
	}{
		{"no keys", testOrg, testDevice, nil},
		{"nil key", testOrg, testDevice, []*agentv1.VerificationKey{nil}},
		{"short key", testOrg, testDevice, []*agentv1.VerificationKey{{KeyId: good.GetKeyId(), PublicKey: pub[:31]}}},
		{"id not of key", testOrg, testDevice, []*agentv1.VerificationKey{{KeyId: "ed25519:0000000000000000", PublicKey: pub}}},
		{"duplicate", testOrg, testDevice, []*agentv1.VerificationKey{good, good}},
		{"empty org", "", testDevice, []*agentv1.VerificationKey{good}},
		{"bad device", testOrg, "dev/1", []*agentv1.VerificationKey{good}},
	}
	for _, tt := range tests {
		if v, err := NewVerifier(tt.org, tt.device, tt.keys); err == nil {
			t.Errorf("NewVerifier(%s) = %v, nil; want an error", tt.name, v)
		}
	}
	// The verifier owns its keys: changing the caller's slice changes nothing.
	keys := s.keys.VerificationKeys()
	v, err := NewVerifier(testOrg, testDevice, keys)
	if err != nil {
		t.Fatalf("NewVerifier = %v", err)
	}
	keys[0].PublicKey[0] ^= 1
	if _, err := v.Verify(mustSign(t, s.keys, s.body), 0, testNow); err != nil {
		t.Errorf("Verify after caller changed its key slice = %v; want nil", err)
	}
}

func TestRejectReason(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("applying command 7: %w", &RejectError{Reason: ReasonExpired, Detail: "x"})
	tests := []struct {
		err    error
		want   string
		wantOK bool
	}{
		{wrapped, ReasonExpired, true},
		{errors.New("other"), "", false},
		{nil, "", false},
	}
	for _, tt := range tests {
		got, ok := RejectReason(tt.err)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("RejectReason(%v) = %q, %v; want %q, %v", tt.err, got, ok, tt.want, tt.wantOK)
		}
	}
}
