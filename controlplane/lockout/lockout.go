// Package lockout turns "this person has left" into signed lock commands
// for every device they have enrolled, and the deliberate admin override
// back into unlock commands.
package lockout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/toktra/toktra/controlplane/fleet"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/internal/clock"
)

// ErrUnknownUser means no user with that email exists in the org.
var ErrUnknownUser = errors.New("unknown user")

// Service locks users out and overrides lockouts.
type Service struct {
	store  store.Store
	issuer *fleet.Issuer
	clock  clock.Clock
	log    *slog.Logger
}

// NewService returns a lockout Service.
func NewService(st store.Store, issuer *fleet.Issuer, clk clock.Clock, log *slog.Logger) *Service {
	return &Service{store: st, issuer: issuer, clock: clk, log: log}
}

// Result is a lockout with the commands sent for it.
type Result struct {
	Lockout  store.Lockout
	User     store.User
	Commands []store.Command
	// Created is false when the user already had an open lockout.
	Created bool
}

// LockUser opens a lockout for the user with that email (or returns the
// open one) and sends a lock command to each of their devices that has
// none for this lockout yet.
func (s *Service) LockUser(ctx context.Context, orgID, email, trigger string) (Result, error) {
	user, err := s.store.GetUserByEmail(ctx, orgID, strings.ToLower(email))
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("locking %s: %w", email, ErrUnknownUser)
	}
	if err != nil {
		return Result{}, fmt.Errorf("looking up user %s: %w", email, err)
	}
	l, created, err := s.store.CreateLockout(ctx, store.CreateLockoutParams{
		OrgID: orgID, UserID: user.ID, Trigger: trigger, CreatedAt: s.clock.Now(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("opening lockout for user %s: %w", user.ID, err)
	}
	if !created {
		s.log.Info("lockout already open", "org", orgID, "lockout", l.ID, "trigger", trigger)
	}
	if err := s.sendToDevices(ctx, l, store.CommandLock); err != nil {
		return Result{}, err
	}
	cmds, err := s.store.ListCommandsByLockout(ctx, orgID, l.ID)
	if err != nil {
		return Result{}, fmt.Errorf("listing commands of lockout %s: %w", l.ID, err)
	}
	s.log.Info("user locked out", "org", orgID, "lockout", l.ID, "user", user.ID, "devices", len(cmds), "trigger", trigger)
	return Result{Lockout: l, User: user, Commands: cmds, Created: created}, nil
}

// Override closes an open lockout and sends each of the user's devices a
// signed unlock command. The reason is recorded with the actor.
func (s *Service) Override(ctx context.Context, orgID, lockoutID, reason, actor string) (Result, error) {
	l, err := s.store.OverrideLockout(ctx, store.OverrideLockoutParams{
		OrgID: orgID, ID: lockoutID, Reason: reason, Actor: actor, At: s.clock.Now(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("overriding lockout %s: %w", lockoutID, err)
	}
	if err := s.sendToDevices(ctx, l, store.CommandUnlock); err != nil {
		return Result{}, err
	}
	s.log.Info("lockout overridden", "org", orgID, "lockout", l.ID, "actor", actor)
	return s.Get(ctx, orgID, l.ID)
}

// Get returns a lockout with its user and commands.
func (s *Service) Get(ctx context.Context, orgID, lockoutID string) (Result, error) {
	l, err := s.store.GetLockout(ctx, orgID, lockoutID)
	if err != nil {
		return Result{}, fmt.Errorf("loading lockout %s: %w", lockoutID, err)
	}
	user, err := s.store.GetUser(ctx, orgID, l.UserID)
	if err != nil {
		return Result{}, fmt.Errorf("loading user of lockout %s: %w", lockoutID, err)
	}
	cmds, err := s.store.ListCommandsByLockout(ctx, orgID, l.ID)
	if err != nil {
		return Result{}, fmt.Errorf("listing commands of lockout %s: %w", lockoutID, err)
	}
	return Result{Lockout: l, User: user, Commands: cmds}, nil
}

// PolicyChanged sends the new policy to every device that is locked now,
// so what they block follows the org's list.
func (s *Service) PolicyChanged(ctx context.Context, orgID string) error {
	lockouts, err := s.store.ListLockouts(ctx, orgID)
	if err != nil {
		return fmt.Errorf("listing lockouts: %w", err)
	}
	for _, l := range lockouts {
		if l.State != store.LockoutOpen {
			continue
		}
		devices, err := s.store.ListDevices(ctx, store.ListDevicesParams{OrgID: orgID, UserID: l.UserID})
		if err != nil {
			return fmt.Errorf("listing devices of user %s: %w", l.UserID, err)
		}
		for _, d := range devices {
			if _, err := s.issuer.Issue(ctx, orgID, d.ID, l.ID, store.CommandPolicyUpdate); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendToDevices issues a command of kind for the lockout to each of the
// user's devices that has not had one yet, so a repeated trigger or a
// retry never sends a device the same step twice.
func (s *Service) sendToDevices(ctx context.Context, l store.Lockout, kind store.CommandKind) error {
	devices, err := s.store.ListDevices(ctx, store.ListDevicesParams{OrgID: l.OrgID, UserID: l.UserID})
	if err != nil {
		return fmt.Errorf("listing devices of user %s: %w", l.UserID, err)
	}
	cmds, err := s.store.ListCommandsByLockout(ctx, l.OrgID, l.ID)
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
		if _, err := s.issuer.Issue(ctx, l.OrgID, d.ID, l.ID, kind); err != nil {
			return err
		}
	}
	return nil
}
