package pki_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/toktra/toktra/pki"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// The control plane signs a lock command; the agent, holding the verification
// keys it received at enrollment, verifies it, and refuses it the second time.
func ExampleVerifier_Verify() {
	dir, err := os.MkdirTemp("", "toktra-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Control plane.
	keys, err := pki.LoadOrCreateSigningKeys(dir)
	if err != nil {
		log.Fatal(err)
	}
	issued := time.Date(2026, time.March, 1, 9, 0, 0, 0, time.UTC)
	cmd, err := keys.Sign(&agentv1.CommandBody{
		OrgId:             "acme",
		DeviceId:          "laptop-42",
		Sequence:          7,
		IssuedAtUnixNano:  issued.UnixNano(),
		ExpiresAtUnixNano: issued.Add(24 * time.Hour).UnixNano(),
		Kind:              agentv1.CommandKind_COMMAND_KIND_LOCK,
		Policy:            &agentv1.Policy{Version: 1, Domains: []string{"api.openai.com"}},
	})
	if err != nil {
		log.Fatal(err)
	}

	// Agent.
	verifier, err := pki.NewVerifier("acme", "laptop-42", keys.VerificationKeys())
	if err != nil {
		log.Fatal(err)
	}
	now := issued.Add(time.Minute)
	body, err := verifier.Verify(cmd, 6, now)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied", body.GetKind(), "sequence", body.GetSequence())

	// Once sequence 7 is applied, the same command is a replay.
	_, err = verifier.Verify(cmd, body.GetSequence(), now)
	if reason, ok := pki.RejectReason(err); ok {
		fmt.Println("rejected:", reason)
	}
	// Output:
	// applied COMMAND_KIND_LOCK sequence 7
	// rejected: replayed_sequence
}
