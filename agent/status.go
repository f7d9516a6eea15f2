package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is what the running agent tells a person at the device, written
// to status.json whenever it changes.
type Status struct {
	PID               int               `json:"pid"`
	Version           string            `json:"version"`
	Server            string            `json:"server"`
	OrgID             string            `json:"org_id"`
	DeviceID          string            `json:"device_id"`
	Connected         bool              `json:"connected"`
	Since             time.Time         `json:"since"`
	LastError         string            `json:"last_error,omitempty"`
	EnforcementActive bool              `json:"enforcement_active"`
	Enforcers         []string          `json:"enforcers"`
	Unsupported       map[string]string `json:"unsupported,omitempty"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

// writeStatus saves the status. Called with a.mu held.
func (a *Agent) writeStatus() {
	a.status.EnforcementActive = a.enforcementActive
	a.status.UpdatedAt = a.clk.Now().UTC()
	if err := a.opts.StateDir.writeJSON(statusFile, a.status, 0o644); err != nil {
		a.log.Warn("writing status", "err", err)
	}
}

func (a *Agent) setConnected(connected bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status.Connected != connected {
		a.status.Since = a.clk.Now().UTC()
	}
	a.status.Connected = connected
	a.status.LastError = ""
	if err != nil && !errors.Is(err, errReconnect) {
		a.status.LastError = err.Error()
	}
	a.writeStatus()
}

// Report is everything `toktra-agent status` shows.
type Report struct {
	Enrolled bool      `json:"enrolled"`
	Identity *Identity `json:"identity,omitempty"`
	State    *State    `json:"state,omitempty"`
	Running  *Status   `json:"running,omitempty"`
}

// ReadReport gathers the identity, the durable state and the running
// agent's last status from the state dir.
func ReadReport(d StateDir) (Report, error) {
	id, err := d.LoadIdentity()
	if errors.Is(err, ErrNotEnrolled) {
		return Report{}, nil
	}
	if err != nil {
		return Report{}, err
	}
	st, err := d.LoadState()
	if err != nil {
		return Report{}, err
	}
	r := Report{Enrolled: true, Identity: &id, State: &st}
	var s Status
	if err := d.readJSON(statusFile, &s); err == nil {
		r.Running = &s
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Report{}, err
	}
	return r, nil
}

// WriteText writes the report for a person.
func (r Report) WriteText(w io.Writer) error {
	if !r.Enrolled {
		_, err := fmt.Fprintln(w, "Not enrolled. Run `toktra-agent enroll` (your MDM normally does).")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	p("Enrolled to", "%s (org %s)", r.Identity.Server, r.Identity.OrgID)
	p("Device", "%s, user %s, since %s", r.Identity.DeviceID, r.Identity.UserEmail, r.Identity.EnrolledAt.Format(time.RFC3339))
	if s := r.Running; s != nil {
		if s.Connected {
			p("Connection", "connected since %s", s.Since.Format(time.RFC3339))
		} else {
			msg := "not connected since " + s.Since.Format(time.RFC3339)
			if s.LastError != "" {
				msg += " (" + s.LastError + ")"
			}
			p("Connection", "%s", msg)
		}
	} else {
		p("Connection", "agent not running")
	}
	st := r.State
	switch {
	case st.Locked && r.Running != nil && r.Running.EnforcementActive:
		p("Lock", "LOCKED: LLM services are blocked on this device (lockout %s)", st.LockoutID)
	case st.Locked:
		p("Lock", "LOCKED, but enforcement is not confirmed in force (lockout %s)", st.LockoutID)
	default:
		p("Lock", "not locked")
	}
	if r.Running != nil {
		enf := strings.Join(r.Running.Enforcers, ", ")
		if enf == "" {
			enf = "none available"
		}
		p("Enforced by", "%s", enf)
		for name, why := range r.Running.Unsupported {
			p("  unavailable", "%s: %s", name, why)
		}
	}
	if st.Policy != nil {
		p("Policy", "version %d: %d domains, %d CIDRs, %d addresses resolved", st.Policy.Version, len(st.Policy.Domains), len(st.Policy.CIDRs), len(st.Resolved))
	}
	if c := st.LastCommand; c != nil {
		res := "applied"
		if !c.Applied {
			res = "rejected: " + c.Reason
		}
		p("Last command", "#%d %s at %s, %s", c.Sequence, c.Kind, c.At.Format(time.RFC3339), res)
	} else {
		p("Last command", "none")
	}
	return tw.Flush()
}
