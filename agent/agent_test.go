package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// recordingEnforcer stands in for the OS firewall in these unit tests of
// the agent's decisions; the real nftables enforcer is exercised by the
// platform tests and the end-to-end tests.
type recordingEnforcer struct {
	mu      sync.Mutex
	applied []platform.Targets
	removed int
	active  bool
}

func (r *recordingEnforcer) Name() string { return "recording" }
func (r *recordingEnforcer) Apply(_ context.Context, t platform.Targets) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, t)
	r.active = true
	return nil
}
func (r *recordingEnforcer) Remove(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed++
	r.active = false
	return nil
}
func (r *recordingEnforcer) Active(context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active, nil
}
func (r *recordingEnforcer) Close() error { return nil }
func (r *recordingEnforcer) applies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

// fixedResolver resolves every domain to one documentation address.
type fixedResolver struct{}

func (fixedResolver) Resolve(_ context.Context, p platform.Policy) (platform.Resolution, error) {
	var t platform.Targets
	if len(p.Domains) > 0 {
		t.Entries = append(t.Entries, platform.Entry{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Minute})
	}
	for _, c := range p.CIDRs {
		t.Entries = append(t.Entries, platform.Entry{Prefix: c})
	}
	return platform.Resolution{Targets: t}, nil
}

type fixture struct {
	agent *Agent
	enf   *recordingEnforcer
	keys  *pki.Keyring
	clk   *clock.Fake
	dir   StateDir
}

const (
	testOrg    = "org_test"
	testDevice = "dev_test"
)

func setup(t *testing.T) *fixture {
	t.Helper()
	keys, err := pki.LoadOrCreateSigningKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := StateDir(t.TempDir())
	id := Identity{Server: "cp.test:8444", ServerName: "cp.test", OrgID: testOrg, DeviceID: testDevice, UserEmail: "a@example.com"}
	for _, k := range keys.VerificationKeys() {
		id.CommandKeys = append(id.CommandKeys, CommandKey{KeyID: k.GetKeyId(), PublicKey: k.GetPublicKey()})
	}
	if err := dir.writeJSON(identityFile, id, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fixture{enf: &recordingEnforcer{}, keys: keys, clk: clock.NewFake(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)), dir: dir}
	f.agent = f.newAgent(t)
	return f
}

func (f *fixture) newAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Options{
		StateDir: f.dir, Enforcer: f.enf, Resolver: fixedResolver{}, Clock: f.clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) body(seq uint64, kind agentv1.CommandKind) *agentv1.CommandBody {
	now := f.clk.Now()
	b := &agentv1.CommandBody{
		OrgId: testOrg, DeviceId: testDevice, Sequence: seq, Kind: kind,
		IssuedAtUnixNano: now.UnixNano(), ExpiresAtUnixNano: now.Add(time.Hour).UnixNano(), LockoutId: "lck_1",
	}
	if kind != agentv1.CommandKind_COMMAND_KIND_UNLOCK {
		b.Policy = &agentv1.Policy{Version: 1, Domains: []string{"api.openai.com"}, Cidrs: []string{"203.0.113.0/24"}}
	}
	return b
}

func (f *fixture) sign(t *testing.T, b *agentv1.CommandBody) *agentv1.SignedCommand {
	t.Helper()
	sc, err := f.keys.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestLockAppliesAndPersists(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ack := f.agent.HandleCommand(context.Background(), f.sign(t, f.body(1, agentv1.CommandKind_COMMAND_KIND_LOCK)))
	if ack.GetStatus() != agentv1.AckStatus_ACK_STATUS_APPLIED || ack.GetSequence() != 1 {
		t.Fatalf("HandleCommand(lock #1) = %v; want applied #1", ack)
	}
	if got := f.enf.applies(); got != 1 {
		t.Errorf("enforcer applies = %d; want 1", got)
	}
	st, err := f.dir.LoadState()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Locked || st.LastAppliedSeq != 1 || st.Policy == nil || len(st.Resolved) != 1 {
		t.Errorf("persisted state = %+v; want locked, seq 1, policy, 1 resolved address", st)
	}

	// A restarted agent re-applies the lock from disk before any network.
	f.enf.active = false
	restarted := f.newAgent(t)
	if err := restarted.restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.enf.applies(); got != 2 {
		t.Errorf("enforcer applies after restart = %d; want 2", got)
	}
	last := f.enf.applied[1]
	if len(last.Entries) != 2 {
		t.Errorf("restored entries = %v; want the resolved address and the CIDR", last.Entries)
	}

	unlock := f.agent.HandleCommand(context.Background(), f.sign(t, f.body(2, agentv1.CommandKind_COMMAND_KIND_UNLOCK)))
	if unlock.GetStatus() != agentv1.AckStatus_ACK_STATUS_APPLIED {
		t.Fatalf("HandleCommand(unlock #2) = %v; want applied", unlock)
	}
	if f.enf.removed != 1 || f.agent.Locked() {
		t.Errorf("after unlock: removed=%d locked=%v; want 1, false", f.enf.removed, f.agent.Locked())
	}
}

func TestDuplicateCommandGetsSameAnswer(t *testing.T) {
	t.Parallel()
	f := setup(t)
	sc := f.sign(t, f.body(1, agentv1.CommandKind_COMMAND_KIND_LOCK))
	first := f.agent.HandleCommand(context.Background(), sc)
	second := f.agent.HandleCommand(context.Background(), sc)
	if first.GetStatus() != agentv1.AckStatus_ACK_STATUS_APPLIED || second.GetStatus() != agentv1.AckStatus_ACK_STATUS_APPLIED {
		t.Fatalf("acks = %v, %v; want applied twice (a re-sent command after a lost ack)", first, second)
	}
	if got := f.enf.applies(); got != 1 {
		t.Errorf("enforcer applies = %d; want 1", got)
	}
}

func TestRejectedCommandsApplyNothing(t *testing.T) {
	t.Parallel()
	lock := agentv1.CommandKind_COMMAND_KIND_LOCK
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		make   func(t *testing.T, f *fixture) *agentv1.SignedCommand
		reason string
	}{
		{"bad signature", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			sc := f.sign(t, f.body(5, lock))
			sc.Signature[0] ^= 0xff
			return sc
		}, pki.ReasonBadSignature},
		{"tampered body", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			sc := f.sign(t, f.body(5, lock))
			sc.Body[len(sc.Body)-1] ^= 0x01
			return sc
		}, pki.ReasonBadSignature},
		{"unknown key id", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			sc := f.sign(t, f.body(5, lock))
			sc.KeyId = pki.KeyID(otherKey.Public().(ed25519.PublicKey))
			return sc
		}, pki.ReasonUnknownKey},
		{"other device", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			b := f.body(5, lock)
			b.DeviceId = "dev_other"
			return f.sign(t, b)
		}, pki.ReasonWrongDevice},
		{"other org", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			b := f.body(5, lock)
			b.OrgId = "org_other"
			return f.sign(t, b)
		}, pki.ReasonWrongOrg},
		{"replayed sequence", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			return f.sign(t, f.body(3, lock)) // last applied is 3
		}, pki.ReasonReplayed},
		{"older sequence", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			return f.sign(t, f.body(2, lock))
		}, pki.ReasonReplayed},
		{"expired", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			b := f.body(5, lock)
			b.IssuedAtUnixNano = f.clk.Now().Add(-2 * time.Hour).UnixNano()
			b.ExpiresAtUnixNano = f.clk.Now().Add(-time.Hour).UnixNano()
			return f.sign(t, b)
		}, pki.ReasonExpired},
		{"empty envelope", func(t *testing.T, f *fixture) *agentv1.SignedCommand {
			return &agentv1.SignedCommand{}
		}, pki.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			// Get to last-applied 3 with an unlock so no enforcement happened yet.
			for seq := uint64(1); seq <= 3; seq++ {
				if ack := f.agent.HandleCommand(context.Background(), f.sign(t, f.body(seq, agentv1.CommandKind_COMMAND_KIND_UNLOCK))); ack.GetStatus() != agentv1.AckStatus_ACK_STATUS_APPLIED {
					t.Fatalf("setup unlock #%d = %v", seq, ack)
				}
			}
			removed := f.enf.removed
			ack := f.agent.HandleCommand(context.Background(), tc.make(t, f))
			if ack.GetStatus() != agentv1.AckStatus_ACK_STATUS_REJECTED || ack.GetReason() != tc.reason {
				t.Errorf("HandleCommand(%s) = %v %q; want rejected %q", tc.name, ack.GetStatus(), ack.GetReason(), tc.reason)
			}
			if ack.GetDetail() == "" {
				t.Errorf("HandleCommand(%s) detail is empty; want the reason explained", tc.name)
			}
			if f.enf.applies() != 0 || f.enf.removed != removed || f.agent.Locked() {
				t.Errorf("after rejecting %s: applies=%d removed=%d locked=%v; want nothing applied", tc.name, f.enf.applies(), f.enf.removed-removed, f.agent.Locked())
			}
			st, _ := f.dir.LoadState()
			if st.LastAppliedSeq != 3 || st.Locked {
				t.Errorf("after rejecting %s: state seq=%d locked=%v; want 3, false", tc.name, st.LastAppliedSeq, st.Locked)
			}
		})
	}
}
