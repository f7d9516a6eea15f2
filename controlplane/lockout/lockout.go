// Package lockout turns "this person has left" into signed lock commands
// for every device they have enrolled, and the deliberate admin override
// back into unlock commands.
package lockout

import (
	"context"
	"encoding/json"
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

// Pipeline starts a new lockout's durable steps inside the transaction
// that created it, and is told when that transaction committed
// (pipeline.Pipeline).
type Pipeline interface {
	Begin(ctx context.Context, st store.Store, tx any, l store.Lockout) error
	Committed(l store.Lockout)
}

// Service locks users out and overrides lockouts.
type Service struct {
	store    store.Store
	issuer   *fleet.Issuer
	pipeline Pipeline
	clock    clock.Clock
	log      *slog.Logger
}

// NewService returns a lockout Service.
func NewService(st store.Store, issuer *fleet.Issuer, pl Pipeline, clk clock.Clock, log *slog.Logger) *Service {
	return &Service{store: st, issuer: issuer, pipeline: pl, clock: clk, log: log}
}

// Result is a lockout with everything done for it.
type Result struct {
	Lockout     store.Lockout
	User        store.User
	Commands    []store.Command
	Steps       []store.LockoutStep
	Revocations []store.ProviderRevocation
	Captures    []store.UsageCapture
	Triggers    []store.LockoutTrigger
	// Created is false when the user already had an open lockout.
	Created bool
}

// LockUser opens a lockout for the user with that email and starts its
// pipeline, or, when the user already has an open lockout, records the new
// trigger on it and returns it. evidence is the trigger's own record
// (JSON; nil for none).
func (s *Service) LockUser(ctx context.Context, orgID, email, trigger string, evidence json.RawMessage) (Result, error) {
	user, err := s.store.GetUserByEmail(ctx, orgID, strings.ToLower(email))
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("locking %s: %w", email, ErrUnknownUser)
	}
	if err != nil {
		return Result{}, fmt.Errorf("looking up user %s: %w", email, err)
	}
	var (
		l       store.Lockout
		created bool
	)
	err = s.store.InTx(ctx, func(st store.Store, tx any) error {
		var err error
		l, created, err = s.LockUserTx(ctx, st, tx, user, trigger, evidence)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	s.Started(l, created)
	res, err := s.Get(ctx, orgID, l.ID)
	res.Created = created
	return res, err
}

// LockUserTx opens a lockout for the user and starts its pipeline, or,
// when the user already has an open lockout, records the new trigger on
// it, inside the caller's transaction (st and tx as InTx gives them), so a
// trigger can record its own progress in the same commit. Once that
// transaction has committed, the caller must call Started.
func (s *Service) LockUserTx(ctx context.Context, st store.Store, tx any, user store.User, trigger string, evidence json.RawMessage) (l store.Lockout, created bool, err error) {
	now := s.clock.Now()
	l, created, err = st.CreateLockout(ctx, store.CreateLockoutParams{OrgID: user.OrgID, UserID: user.ID, Trigger: trigger, CreatedAt: now})
	if err != nil {
		return store.Lockout{}, false, fmt.Errorf("opening lockout for user %s: %w", user.ID, err)
	}
	if err := st.AddLockoutTrigger(ctx, store.AddLockoutTriggerParams{OrgID: user.OrgID, LockoutID: l.ID, Source: trigger, Evidence: evidence, At: now}); err != nil {
		return store.Lockout{}, false, fmt.Errorf("recording trigger of lockout %s: %w", l.ID, err)
	}
	if created {
		if err := s.pipeline.Begin(ctx, st, tx, l); err != nil {
			return store.Lockout{}, false, err
		}
	}
	return l, created, nil
}

// Started is told that a LockUserTx's transaction committed: a new
// lockout's pipeline is told too.
func (s *Service) Started(l store.Lockout, created bool) {
	if created {
		s.pipeline.Committed(l)
		s.log.Info("user locked out", "org", l.OrgID, "lockout", l.ID, "user", l.UserID, "trigger", l.Trigger)
	} else {
		s.log.Info("lockout already open; trigger recorded", "org", l.OrgID, "lockout", l.ID)
	}
}

// Override closes an open lockout and sends each of the user's devices a
// signed unlock command, in one transaction. The reason is recorded with
// the actor. Provider revocations are not undone: access to the providers
// is granted again by their own admins.
func (s *Service) Override(ctx context.Context, orgID, lockoutID, reason, actor string) (Result, error) {
	err := s.store.InTx(ctx, func(st store.Store, tx any) error {
		l, err := st.OverrideLockout(ctx, store.OverrideLockoutParams{
			OrgID: orgID, ID: lockoutID, Reason: reason, Actor: actor, At: s.clock.Now(),
		})
		if err != nil {
			return fmt.Errorf("overriding lockout %s: %w", lockoutID, err)
		}
		return s.issuer.SendToUserDevices(ctx, st, l, store.CommandUnlock)
	})
	if err != nil {
		return Result{}, err
	}
	s.log.Info("lockout overridden", "org", orgID, "lockout", lockoutID, "actor", actor)
	return s.Get(ctx, orgID, lockoutID)
}

// Get returns a lockout with its user, commands, steps, provider
// revocations and triggers.
func (s *Service) Get(ctx context.Context, orgID, lockoutID string) (Result, error) {
	l, err := s.store.GetLockout(ctx, orgID, lockoutID)
	if err != nil {
		return Result{}, fmt.Errorf("loading lockout %s: %w", lockoutID, err)
	}
	res := Result{Lockout: l}
	if res.User, err = s.store.GetUser(ctx, orgID, l.UserID); err != nil {
		return Result{}, fmt.Errorf("loading user of lockout %s: %w", lockoutID, err)
	}
	if res.Commands, err = s.store.ListCommandsByLockout(ctx, orgID, l.ID); err != nil {
		return Result{}, fmt.Errorf("listing commands of lockout %s: %w", lockoutID, err)
	}
	if res.Steps, err = s.store.ListLockoutSteps(ctx, orgID, l.ID); err != nil {
		return Result{}, fmt.Errorf("listing steps of lockout %s: %w", lockoutID, err)
	}
	if res.Revocations, err = s.store.ListProviderRevocations(ctx, orgID, l.ID); err != nil {
		return Result{}, fmt.Errorf("listing revocations of lockout %s: %w", lockoutID, err)
	}
	if res.Captures, err = s.store.ListUsageCaptures(ctx, orgID, l.ID); err != nil {
		return Result{}, fmt.Errorf("listing usage captures of lockout %s: %w", lockoutID, err)
	}
	if res.Triggers, err = s.store.ListLockoutTriggers(ctx, orgID, l.ID); err != nil {
		return Result{}, fmt.Errorf("listing triggers of lockout %s: %w", lockoutID, err)
	}
	return res, nil
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
