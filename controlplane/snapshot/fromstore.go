package snapshot

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/store"
)

// This file maps the store's pipeline records to the snapshot's input, so
// that what "confirmed" or "missing" means is decided in one place.

// RevocationFromRecord turns a provider revocation record (with the
// providers.Revocation JSON it holds) into the snapshot's form, saying why
// there is no confirmation when there is none.
func RevocationFromRecord(r store.ProviderRevocation) (Revocation, error) {
	out := Revocation{
		Provider: r.Provider, State: string(r.State), Attempts: r.Attempts,
		Error: r.LastError, UpdatedAt: r.UpdatedAt,
	}
	if len(r.Confirmation) > 0 && string(r.Confirmation) != "null" {
		var c providers.Revocation
		if err := json.Unmarshal(r.Confirmation, &c); err != nil {
			return Revocation{}, fmt.Errorf("reading %s confirmation: %w", r.Provider, err)
		}
		out.UserFound = c.UserFound
		for _, a := range c.Actions {
			out.Resources = append(out.Resources, RevokedResource{
				Kind: a.Kind, Resource: a.Resource, Scope: a.Scope, Outcome: a.Outcome,
				RequestID: a.RequestID, Status: a.Status, At: a.At, Error: a.Error,
			})
		}
	}
	switch r.State {
	case store.RevocationConfirmed:
		if !out.UserFound && len(out.Resources) == 0 {
			out.Missing = "the provider had no member with this email, so there was nothing to revoke"
		}
	case store.RevocationUnconfirmed:
		out.Missing = fmt.Sprintf("gave up after %d attempts; the last error is above", r.Attempts)
	default:
		out.Missing = fmt.Sprintf("not confirmed when the snapshot was made (%d attempts so far; still retrying)", r.Attempts)
	}
	return out, nil
}

// DeviceLocksFromRecords pairs the user's devices with the lock commands
// issued for the lockout (store.ListCommandsByLockout), one entry per
// device in the order given, then any command whose device is not among
// them. A device's latest lock command counts; a device without one, or
// without an answer, says why.
func DeviceLocksFromRecords(devices []store.Device, cmds []store.Command) []DeviceLock {
	latest := map[string]store.Command{}
	var order []string
	for _, c := range cmds {
		if c.Kind != store.CommandLock {
			continue
		}
		if _, seen := latest[c.DeviceID]; !seen {
			order = append(order, c.DeviceID)
		}
		if prev, ok := latest[c.DeviceID]; !ok || c.Seq > prev.Seq {
			latest[c.DeviceID] = c
		}
	}
	var out []DeviceLock
	listed := map[string]bool{}
	for _, d := range devices {
		listed[d.ID] = true
		l := DeviceLock{DeviceID: d.ID, Hostname: d.Hostname, OS: d.OS}
		c, ok := latest[d.ID]
		if !ok {
			l.Missing = "no lock command was issued to this device"
			if d.RevokedAt != nil {
				l.Missing += "; it was revoked at " + fmtTime(*d.RevokedAt)
			}
			out = append(out, l)
			continue
		}
		out = append(out, withCommand(l, c, d.LastSeenAt))
	}
	for _, id := range order {
		if !listed[id] {
			out = append(out, withCommand(DeviceLock{DeviceID: id}, latest[id], nil))
		}
	}
	return out
}

func withCommand(l DeviceLock, c store.Command, lastSeen *time.Time) DeviceLock {
	l.Seq, l.Status, l.IssuedAt = c.Seq, string(c.State), c.CreatedAt
	l.Reason, l.Detail = c.Reason, c.Detail
	if c.AckedAt != nil {
		l.AckedAt = *c.AckedAt
	}
	switch c.State {
	case store.CommandPending:
		l.Missing = "not delivered: the device has not connected since the command was issued"
		if lastSeen != nil {
			l.Missing += "; last seen " + fmtTime(*lastSeen)
		}
	case store.CommandDelivered:
		l.Missing = "delivered"
		if c.DeliveredAt != nil {
			l.Missing += " at " + fmtTime(*c.DeliveredAt)
		}
		l.Missing += "; the device has not acknowledged it yet"
	}
	return l
}

// TriggerFromRecord turns a stored lockout trigger into the snapshot's form.
func TriggerFromRecord(t store.LockoutTrigger) Trigger {
	return Trigger{Source: t.Source, At: t.At, Evidence: t.Evidence}
}
