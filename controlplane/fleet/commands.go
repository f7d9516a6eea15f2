// Package fleet is the control plane's side of the agents: enrollment, the
// mTLS command stream, and the signed commands that lock and unlock devices.
package fleet

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/pki"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// DefaultCommandLifetime is how long a signed command stays valid. A command
// still unacknowledged when it expires is re-issued with a new sequence when
// its device next connects, so an offline device is still locked on return.
const DefaultCommandLifetime = 24 * time.Hour

// Issuer signs commands and stores them for delivery.
type Issuer struct {
	store    store.Store
	keys     *pki.Keyring
	clock    clock.Clock
	lifetime time.Duration
}

// NewIssuer returns an Issuer that signs with keys and stores in st.
func NewIssuer(st store.Store, keys *pki.Keyring, clk clock.Clock) *Issuer {
	return &Issuer{store: st, keys: keys, clock: clk, lifetime: DefaultCommandLifetime}
}

// EffectivePolicy is the org's policy as the agent must enforce it: the
// maintained default destinations plus the org's own.
func EffectivePolicy(p store.Policy) *agentv1.Policy {
	domains := append(platform.DefaultDomains(), p.Domains...)
	slices.Sort(domains)
	domains = slices.Compact(domains)
	cidrs := slices.Clone(p.CIDRs)
	slices.Sort(cidrs)
	cidrs = slices.Compact(cidrs)
	return &agentv1.Policy{Version: p.Version, Domains: domains, Cidrs: cidrs}
}

// Issue signs and stores one command of the given kind for a device. Lock
// and policy-update commands carry the org's effective policy.
func (is *Issuer) Issue(ctx context.Context, orgID, deviceID, lockoutID string, kind store.CommandKind) (store.Command, error) {
	return is.IssueIn(ctx, is.store, orgID, deviceID, lockoutID, kind)
}

// IssueIn is Issue through st, e.g. a Store inside a transaction.
func (is *Issuer) IssueIn(ctx context.Context, st store.Store, orgID, deviceID, lockoutID string, kind store.CommandKind) (store.Command, error) {
	var (
		wireKind agentv1.CommandKind
		policy   *agentv1.Policy
	)
	switch kind {
	case store.CommandLock, store.CommandPolicyUpdate:
		p, err := st.GetPolicy(ctx, orgID)
		if err != nil {
			return store.Command{}, fmt.Errorf("loading policy of org %s: %w", orgID, err)
		}
		policy = EffectivePolicy(p)
		wireKind = agentv1.CommandKind_COMMAND_KIND_LOCK
		if kind == store.CommandPolicyUpdate {
			wireKind = agentv1.CommandKind_COMMAND_KIND_POLICY_UPDATE
		}
	case store.CommandUnlock:
		wireKind = agentv1.CommandKind_COMMAND_KIND_UNLOCK
	default:
		return store.Command{}, fmt.Errorf("issuing command: unknown kind %q", kind)
	}
	now := is.clock.Now()
	expires := now.Add(is.lifetime)
	cmd, err := st.InsertCommand(ctx, store.InsertCommandParams{
		OrgID:     orgID,
		DeviceID:  deviceID,
		Kind:      kind,
		LockoutID: lockoutID,
		CreatedAt: now,
		ExpiresAt: expires,
		Sign: func(seq uint64) ([]byte, error) {
			sc, err := is.keys.Sign(&agentv1.CommandBody{
				OrgId:             orgID,
				DeviceId:          deviceID,
				Sequence:          seq,
				IssuedAtUnixNano:  now.UnixNano(),
				ExpiresAtUnixNano: expires.UnixNano(),
				Kind:              wireKind,
				Policy:            policy,
				LockoutId:         lockoutID,
			})
			if err != nil {
				return nil, err
			}
			return proto.MarshalOptions{Deterministic: true}.Marshal(sc)
		},
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("issuing %s command for device %s: %w", kind, deviceID, err)
	}
	return cmd, nil
}

// SendToUserDevices issues a command of kind for the lockout to each of its
// user's devices that has not had one yet, through st, so a repeated
// trigger or a retried job never sends a device the same step twice.
func (is *Issuer) SendToUserDevices(ctx context.Context, st store.Store, l store.Lockout, kind store.CommandKind) error {
	devices, err := st.ListDevices(ctx, store.ListDevicesParams{OrgID: l.OrgID, UserID: l.UserID})
	if err != nil {
		return fmt.Errorf("listing devices of user %s: %w", l.UserID, err)
	}
	cmds, err := st.ListCommandsByLockout(ctx, l.OrgID, l.ID)
	if err != nil {
		return fmt.Errorf("listing commands of lockout %s: %w", l.ID, err)
	}
	has := map[string]bool{}
	for _, c := range cmds {
		if c.Kind == kind {
			has[c.DeviceID] = true
		}
	}
	for _, d := range devices {
		if has[d.ID] {
			continue
		}
		if _, err := is.IssueIn(ctx, st, l.OrgID, d.ID, l.ID, kind); err != nil {
			return err
		}
	}
	return nil
}
