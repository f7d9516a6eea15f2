package pg

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

var (
	qCreateDevice       = queries.MustGet("CreateDevice")
	qGetDevice          = queries.MustGet("GetDevice")
	qListDevices        = queries.MustGet("ListDevices")
	qSetDeviceCert      = queries.MustGet("SetDeviceCert")
	qRecordDeviceState  = queries.MustGet("RecordDeviceState")
	qSetDeviceConnected = queries.MustGet("SetDeviceConnected")
	qRevokeDevice       = queries.MustGet("RevokeDevice")
)

// CreateDevice records an enrolled device.
func (s *Store) CreateDevice(ctx context.Context, p store.CreateDeviceParams) (store.Device, error) {
	d, err := orgRow(ctx, s, p.OrgID, scanDevice, qCreateDevice,
		store.NewID("dev"), p.OrgID, optString(p.UserID), p.Hostname, p.OS, p.OSVersion, p.Arch,
		p.Serial, p.AgentVersion, ts(p.CreatedAt))
	if err != nil {
		return store.Device{}, fmt.Errorf("creating device %q in org %s: %w", p.Hostname, p.OrgID, translate(err))
	}
	return d, nil
}

// GetDevice returns the org's device with the given id.
func (s *Store) GetDevice(ctx context.Context, orgID, id string) (store.Device, error) {
	d, err := orgRow(ctx, s, orgID, scanDevice, qGetDevice, orgID, id)
	if err != nil {
		return store.Device{}, fmt.Errorf("getting device %s: %w", id, translate(err))
	}
	return d, nil
}

// ListDevices returns the org's devices, oldest first.
func (s *Store) ListDevices(ctx context.Context, p store.ListDevicesParams) ([]store.Device, error) {
	ds, err := orgList(ctx, s, p.OrgID, scanDevice, qListDevices, p.OrgID, p.UserID, p.IncludeRevoked)
	if err != nil {
		return nil, fmt.Errorf("listing devices of org %s: %w", p.OrgID, translate(err))
	}
	return ds, nil
}

// SetDeviceCert records the certificate a device now holds.
func (s *Store) SetDeviceCert(ctx context.Context, p store.SetDeviceCertParams) error {
	if err := s.orgExecOne(ctx, p.OrgID, qSetDeviceCert, p.OrgID, p.DeviceID, p.CertSerial, optTS(p.CertNotAfter)); err != nil {
		return fmt.Errorf("setting certificate of device %s: %w", p.DeviceID, err)
	}
	return nil
}

// RecordDeviceState stores what a device reported.
func (s *Store) RecordDeviceState(ctx context.Context, p store.RecordDeviceStateParams) error {
	enforcers, unsupported, err := encodeCapabilities(p.Enforcers, p.Unsupported)
	if err != nil {
		return fmt.Errorf("recording state of device %s: %w", p.DeviceID, err)
	}
	lock := store.LockStateUnlocked
	if p.Locked {
		lock = store.LockStateLocked
	}
	if err := s.orgExecOne(ctx, p.OrgID, qRecordDeviceState, p.OrgID, p.DeviceID, p.AgentVersion,
		enforcers, unsupported, string(lock), p.EnforcementActive, int64(p.LastAppliedSeq), ts(p.At)); err != nil {
		return fmt.Errorf("recording state of device %s: %w", p.DeviceID, err)
	}
	return nil
}

// SetDeviceConnected records whether the device's stream is open.
func (s *Store) SetDeviceConnected(ctx context.Context, orgID, id string, connected bool, at time.Time) error {
	if err := s.orgExecOne(ctx, orgID, qSetDeviceConnected, orgID, id, connected, ts(at)); err != nil {
		return fmt.Errorf("setting device %s connected=%t: %w", id, connected, err)
	}
	return nil
}

// RevokeDevice marks the device revoked at the given time (the first time wins).
func (s *Store) RevokeDevice(ctx context.Context, orgID, id string, at time.Time) error {
	if err := s.orgExecOne(ctx, orgID, qRevokeDevice, orgID, id, ts(at)); err != nil {
		return fmt.Errorf("revoking device %s: %w", id, err)
	}
	return nil
}

func scanDevice(r rowScanner) (store.Device, error) {
	var (
		d                              store.Device
		userID                         *string
		enforcers, unsupported         []byte
		certNotAfter, lastSeen, revoke *time.Time
		created                        time.Time
		lastApplied, lastSeq           int64
		lockState                      string
	)
	err := r.Scan(&d.ID, &d.OrgID, &userID, &d.Hostname, &d.OS, &d.OSVersion, &d.Arch, &d.Serial,
		&d.AgentVersion, &enforcers, &unsupported, &d.CertSerial, &certNotAfter, &created, &lastSeen,
		&d.Connected, &lockState, &d.EnforcementActive, &lastApplied, &lastSeq, &revoke)
	if err != nil {
		return store.Device{}, err
	}
	if userID != nil {
		d.UserID = *userID
	}
	if d.Enforcers, d.Unsupported, err = decodeCapabilities(enforcers, unsupported); err != nil {
		return store.Device{}, fmt.Errorf("device %s: %w", d.ID, err)
	}
	d.CertNotAfter = fromOptTS(certNotAfter)
	d.CreatedAt = fromTS(created)
	d.LastSeenAt = ptrFromOptTS(lastSeen)
	d.LockState = store.LockState(lockState)
	d.LastAppliedSeq = uint64(lastApplied)
	d.LastSeq = uint64(lastSeq)
	d.RevokedAt = ptrFromOptTS(revoke)
	return d, nil
}

// encodeCapabilities turns a device's reported mechanisms into jsonb.
func encodeCapabilities(enforcers []string, unsupported map[string]string) ([]byte, []byte, error) {
	if enforcers == nil {
		enforcers = []string{}
	}
	if unsupported == nil {
		unsupported = map[string]string{}
	}
	e, err := json.Marshal(enforcers)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding enforcers: %w", err)
	}
	u, err := json.Marshal(unsupported)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding unsupported: %w", err)
	}
	return e, u, nil
}

// decodeCapabilities reverses encodeCapabilities; empty lists and maps come
// back nil.
func decodeCapabilities(enforcers, unsupported []byte) ([]string, map[string]string, error) {
	var e []string
	var u map[string]string
	if err := json.Unmarshal(enforcers, &e); err != nil {
		return nil, nil, fmt.Errorf("decoding enforcers: %w", err)
	}
	if err := json.Unmarshal(unsupported, &u); err != nil {
		return nil, nil, fmt.Errorf("decoding unsupported: %w", err)
	}
	if len(e) == 0 {
		e = nil
	}
	if len(u) == 0 {
		u = nil
	}
	return e, u, nil
}
