package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

type lockoutDevice struct {
	DeviceID string     `json:"device_id"`
	Hostname string     `json:"hostname"`
	Kind     string     `json:"kind"`
	Sequence uint64     `json:"sequence"`
	State    string     `json:"state"`
	Reason   string     `json:"reason"`
	AckedAt  *time.Time `json:"acked_at"`
}

type lockout struct {
	ID   string `json:"id"`
	User struct {
		Email string `json:"email"`
	} `json:"user"`
	State          string          `json:"state"`
	Trigger        string          `json:"trigger"`
	CreatedAt      time.Time       `json:"created_at"`
	OverrideReason string          `json:"override_reason"`
	Devices        []lockoutDevice `json:"devices"`
	Steps          []struct {
		Step     string `json:"step"`
		State    string `json:"state"`
		Attempts int    `json:"attempts"`
		Note     string `json:"note"`
	} `json:"steps"`
	Providers []struct {
		Provider  string `json:"provider"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error"`
	} `json:"providers"`
}

func (l lockout) settled() bool {
	for _, s := range l.Steps {
		if s.State == "pending" || s.State == "running" {
			return false
		}
	}
	for _, d := range l.Devices {
		if d.State == "pending" || d.State == "delivered" {
			return false
		}
	}
	return true
}

type list[T any] struct {
	Data []T `json:"data"`
}

func printLockout(w io.Writer, raw json.RawMessage) error {
	var l lockout
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	fmt.Fprintf(w, "Lockout\t%s\n", l.ID)
	fmt.Fprintf(w, "User\t%s\n", l.User.Email)
	fmt.Fprintf(w, "State\t%s\n", l.State)
	fmt.Fprintf(w, "Trigger\t%s\n", l.Trigger)
	fmt.Fprintf(w, "Created\t%s\n", l.CreatedAt.Format(time.RFC3339))
	if l.OverrideReason != "" {
		fmt.Fprintf(w, "Override reason\t%s\n", l.OverrideReason)
	}
	fmt.Fprintln(w, "\nSTEP\tSTATE\tATTEMPTS\tNOTE")
	for _, st := range l.Steps {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", st.Step, st.State, st.Attempts, st.Note)
	}
	fmt.Fprintln(w, "\nPROVIDER\tSTATE\tATTEMPTS\tLAST ERROR")
	if len(l.Providers) == 0 {
		fmt.Fprintln(w, "(no providers connected)")
	}
	for _, p := range l.Providers {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", p.Provider, p.State, p.Attempts, p.LastError)
	}
	fmt.Fprintln(w, "\nDEVICE\tHOSTNAME\tCOMMAND\tSEQ\tSTATE\tREASON")
	if len(l.Devices) == 0 {
		fmt.Fprintln(w, "(no enrolled devices)")
	}
	for _, d := range l.Devices {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.DeviceID, d.Hostname, d.Kind, d.Sequence, d.State, d.Reason)
	}
	return nil
}

func printLockouts(w io.Writer, raw json.RawMessage) error {
	var ls list[lockout]
	if err := json.Unmarshal(raw, &ls); err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tUSER\tSTATE\tCREATED\tDEVICES")
	for _, l := range ls.Data {
		applied := 0
		for _, d := range l.Devices {
			if d.State == "applied" {
				applied++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d applied\n", l.ID, l.User.Email, l.State, l.CreatedAt.Format(time.RFC3339), applied, len(l.Devices))
	}
	return nil
}

func printUsers(w io.Writer, raw json.RawMessage) error {
	var us list[struct {
		ID, Email, Name string
		CreatedAt       time.Time `json:"created_at"`
	}]
	if err := json.Unmarshal(raw, &us); err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tEMAIL\tNAME\tCREATED")
	for _, u := range us.Data {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Name, u.CreatedAt.Format(time.RFC3339))
	}
	return nil
}

type device struct {
	ID                string     `json:"id"`
	UserID            string     `json:"user_id"`
	Hostname          string     `json:"hostname"`
	OS                string     `json:"os"`
	AgentVersion      string     `json:"agent_version"`
	Online            bool       `json:"online"`
	LastSeenAt        *time.Time `json:"last_seen_at"`
	LockState         string     `json:"lock_state"`
	EnforcementActive bool       `json:"enforcement_active"`
	Enforcers         []string   `json:"enforcers"`
	RevokedAt         *time.Time `json:"revoked_at"`
}

func (d device) lock() string {
	if d.LockState == "locked" && !d.EnforcementActive {
		return "locked (not in force)"
	}
	return d.LockState
}

func (d device) seen() string {
	switch {
	case d.RevokedAt != nil:
		return "revoked"
	case d.Online:
		return "online"
	case d.LastSeenAt != nil:
		return "last seen " + d.LastSeenAt.Format(time.RFC3339)
	}
	return "never connected"
}

func printDevices(w io.Writer, raw json.RawMessage) error {
	var ds list[device]
	if err := json.Unmarshal(raw, &ds); err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tHOSTNAME\tOS\tAGENT\tSTATUS\tLOCK")
	for _, d := range ds.Data {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Hostname, d.OS, d.AgentVersion, d.seen(), d.lock())
	}
	return nil
}

func printDevice(w io.Writer, raw json.RawMessage) error {
	var d device
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	fmt.Fprintf(w, "Device\t%s\nHostname\t%s\nOS\t%s\nAgent\t%s\nStatus\t%s\nLock\t%s\nEnforcers\t%s\n",
		d.ID, d.Hostname, d.OS, d.AgentVersion, d.seen(), d.lock(), strings.Join(d.Enforcers, ", "))
	return nil
}

type secret struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Secret    string     `json:"secret"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func printSecret(w io.Writer, raw json.RawMessage) error {
	var s secret
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	fmt.Fprintf(w, "ID\t%s\nName\t%s\nExpires\t%s\nSecret\t%s\n\n(shown only once)\n", s.ID, s.Name, s.ExpiresAt.Format(time.RFC3339), s.Secret)
	return nil
}

func printSecrets(w io.Writer, raw json.RawMessage) error {
	var ss list[secret]
	if err := json.Unmarshal(raw, &ss); err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tNAME\tEXPIRES\tSTATE")
	for _, s := range ss.Data {
		state := "active"
		if s.RevokedAt != nil {
			state = "revoked"
		} else if time.Now().After(s.ExpiresAt) {
			state = "expired"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.ID, s.Name, s.ExpiresAt.Format(time.RFC3339), state)
	}
	return nil
}

func printPolicy(w io.Writer, raw json.RawMessage) error {
	var p struct {
		Version        uint64   `json:"version"`
		Domains        []string `json:"domains"`
		CIDRs          []string `json:"cidrs"`
		DefaultDomains []string `json:"default_domains"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	fmt.Fprintf(w, "Version\t%d\nOrg domains\t%s\nOrg CIDRs\t%s\nDefault domains\t%d maintained by Toktra\n",
		p.Version, strings.Join(p.Domains, ", "), strings.Join(p.CIDRs, ", "), len(p.DefaultDomains))
	return nil
}

type apiKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	Secret    string     `json:"secret"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func printNewAPIKey(w io.Writer, raw json.RawMessage) error {
	var k apiKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return err
	}
	fmt.Fprintf(w, "ID\t%s\nName\t%s\nScope\t%s\nExpires\t%s\nKey\t%s\n\n(shown only once)\n", k.ID, k.Name, k.Scope, k.ExpiresAt.Format(time.RFC3339), k.Secret)
	return nil
}

func printAPIKeys(w io.Writer, raw json.RawMessage) error {
	var ks list[apiKey]
	if err := json.Unmarshal(raw, &ks); err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tNAME\tSCOPE\tEXPIRES\tSTATE")
	for _, k := range ks.Data {
		state := "active"
		if k.RevokedAt != nil {
			state = "revoked"
		} else if time.Now().After(k.ExpiresAt) {
			state = "expired"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Scope, k.ExpiresAt.Format(time.RFC3339), state)
	}
	return nil
}

type providerConn struct {
	Provider    string    `json:"provider"`
	KeyHint     string    `json:"key_hint"`
	ValidatedAt time.Time `json:"validated_at"`
}

func printProvider(w io.Writer, raw json.RawMessage) error {
	var p providerConn
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	fmt.Fprintf(w, "Provider\t%s\nAdmin key\t%s\nChecked\t%s\n", p.Provider, p.KeyHint, p.ValidatedAt.Format(time.RFC3339))
	return nil
}

func printProviders(w io.Writer, raw json.RawMessage) error {
	var ps list[providerConn]
	if err := json.Unmarshal(raw, &ps); err != nil {
		return err
	}
	fmt.Fprintln(w, "PROVIDER\tADMIN KEY\tCHECKED")
	for _, p := range ps.Data {
		fmt.Fprintf(w, "%s\t%s\t%s\n", p.Provider, p.KeyHint, p.ValidatedAt.Format(time.RFC3339))
	}
	return nil
}

func printAudit(w io.Writer, raw json.RawMessage) error {
	var es list[struct {
		Seq    uint64    `json:"seq"`
		At     time.Time `json:"at"`
		Actor  string    `json:"actor"`
		Action string    `json:"action"`
		Target struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		} `json:"target"`
		RemoteIP string `json:"remote_ip"`
	}]
	if err := json.Unmarshal(raw, &es); err != nil {
		return err
	}
	fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tFROM")
	for _, e := range es.Data {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s/%s\t%s\n", e.Seq, e.At.Format(time.RFC3339), e.Actor, e.Action, e.Target.Type, e.Target.ID, e.RemoteIP)
	}
	return nil
}
