package agent

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/toktra/toktra/internal/atomicfile"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// The agent's state dir holds these files, none readable by others.
const (
	identityFile = "identity.json"
	// credFile holds the device certificate and its private key together,
	// so that renewal replaces both in one atomic rename.
	credFile   = "device.pem"
	caFile     = "ca.pem"
	stateFile  = "state.json"
	statusFile = "status.json"
)

// ErrNotEnrolled means the state dir holds no identity yet.
var ErrNotEnrolled = errors.New("not enrolled: run `toktra-agent enroll` first")

// Identity is who the device is to the control plane.
type Identity struct {
	Server      string            `json:"server"`
	ServerName  string            `json:"server_name"`
	OrgID       string            `json:"org_id"`
	DeviceID    string            `json:"device_id"`
	UserEmail   string            `json:"user_email"`
	CommandKeys []CommandKey      `json:"command_keys"`
	EnrolledAt  time.Time         `json:"enrolled_at"`
	Facts       map[string]string `json:"facts,omitempty"`
}

// CommandKey is a public key that may sign this device's commands.
type CommandKey struct {
	KeyID     string `json:"key_id"`
	PublicKey []byte `json:"public_key"`
}

func (id Identity) verificationKeys() []*agentv1.VerificationKey {
	out := make([]*agentv1.VerificationKey, 0, len(id.CommandKeys))
	for _, k := range id.CommandKeys {
		out = append(out, &agentv1.VerificationKey{KeyId: k.KeyID, PublicKey: k.PublicKey})
	}
	return out
}

// State is what the agent must remember across restarts and reboots.
type State struct {
	Locked         bool           `json:"locked"`
	LockoutID      string         `json:"lockout_id,omitempty"`
	LastAppliedSeq uint64         `json:"last_applied_sequence"`
	Policy         *PolicyState   `json:"policy,omitempty"`
	Resolved       []ResolvedAddr `json:"resolved,omitempty"`
	RecentAcks     []RecordedAck  `json:"recent_acks,omitempty"`
	LastCommand    *CommandRecord `json:"last_command,omitempty"`
}

// PolicyState is the policy of the last lock or policy update.
type PolicyState struct {
	Version uint64   `json:"version"`
	Domains []string `json:"domains"`
	CIDRs   []string `json:"cidrs"`
}

// platformPolicy is the policy as the resolver takes it. The control plane
// validated the CIDRs; one that does not parse here is skipped, not fatal.
func (p *PolicyState) platformPolicy() platform.Policy {
	out := platform.Policy{Domains: p.Domains}
	for _, c := range p.CIDRs {
		if pfx, err := platform.ParseCIDR(c); err == nil {
			out.CIDRs = append(out.CIDRs, pfx)
		}
	}
	return out
}

// ResolvedAddr is an address a policy domain resolved to, kept so that a
// lock is in force at boot before DNS is reachable.
type ResolvedAddr struct {
	Prefix    netip.Prefix `json:"prefix"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// RecordedAck remembers the answer to a command, by the hash of its whole
// envelope, so a command re-sent after a lost ack gets the same answer.
type RecordedAck struct {
	EnvelopeHash []byte `json:"envelope_hash"`
	Sequence     uint64 `json:"sequence"`
	Applied      bool   `json:"applied"`
	Reason       string `json:"reason,omitempty"`
	Detail       string `json:"detail,omitempty"`
	AtUnixNano   int64  `json:"at_unix_nano"`
}

// CommandRecord describes the last command the agent handled.
type CommandRecord struct {
	Sequence uint64    `json:"sequence"`
	Kind     string    `json:"kind"`
	Applied  bool      `json:"applied"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

const maxRecentAcks = 64

func (s *State) recordAck(a RecordedAck) {
	s.RecentAcks = append(s.RecentAcks, a)
	if n := len(s.RecentAcks); n > maxRecentAcks {
		s.RecentAcks = append([]RecordedAck(nil), s.RecentAcks[n-maxRecentAcks:]...)
	}
}

// StateDir is the agent's directory of identity and state files.
type StateDir string

func (d StateDir) path(name string) string { return filepath.Join(string(d), name) }

func (d StateDir) ensure() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	return os.Chmod(string(d), 0o700)
}

func (d StateDir) writeJSON(name string, v any, perm fs.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return atomicfile.WriteFile(d.path(name), data, perm)
}

func (d StateDir) readJSON(name string, v any) error {
	data, err := os.ReadFile(d.path(name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decoding %s: %w", d.path(name), err)
	}
	return nil
}

// LoadIdentity reads the enrolled identity.
func (d StateDir) LoadIdentity() (Identity, error) {
	var id Identity
	if err := d.readJSON(identityFile, &id); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Identity{}, ErrNotEnrolled
		}
		return Identity{}, err
	}
	return id, nil
}

// LoadState reads the durable state; a missing file is the zero state.
func (d StateDir) LoadState() (State, error) {
	var st State
	err := d.readJSON(stateFile, &st)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	return st, err
}

// SaveState writes the state atomically (temp file, fsync, rename).
func (d StateDir) SaveState(st State) error {
	return d.writeJSON(stateFile, st, 0o600)
}

// clientCert loads the device key and certificate for mTLS.
func (d StateDir) clientCert() (tls.Certificate, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(d.path(credFile), d.path(credFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loading device certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parsing device certificate: %w", err)
	}
	return cert, leaf, nil
}

func (d StateDir) caDER() ([]byte, error) {
	data, err := os.ReadFile(d.path(caFile))
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", d.path(caFile))
	}
	return block.Bytes, nil
}

// saveCredentials writes a device key and its certificate in one file, atomically.
func (d StateDir) saveCredentials(key *ecdsa.PrivateKey, certDER []byte) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding device key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return atomicfile.WriteFile(d.path(credFile), data, 0o600)
}
