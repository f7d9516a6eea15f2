package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// identityScheme is the URI scheme of the SAN that names a device.
const identityScheme = "toktra"

// maxIDLength bounds org and device ids; ours are UUIDs or shorter.
const maxIDLength = 128

// DeviceIdentity is who a device certificate speaks for: one device of one org.
type DeviceIdentity struct {
	OrgID    string
	DeviceID string
}

// Validate reports whether both ids are non-empty, at most 128 characters and
// drawn from [A-Za-z0-9_-], the only ids that may appear in a certificate.
func (id DeviceIdentity) Validate() error {
	if err := validateID(id.OrgID); err != nil {
		return fmt.Errorf("org id: %w", err)
	}
	if err := validateID(id.DeviceID); err != nil {
		return fmt.Errorf("device id: %w", err)
	}
	return nil
}

// URI returns the identity as it appears in a device certificate's URI SAN,
// toktra://org/<org id>/device/<device id>.
func (id DeviceIdentity) URI() *url.URL {
	return &url.URL{Scheme: identityScheme, Host: "org", Path: "/" + id.OrgID + "/device/" + id.DeviceID}
}

// String returns the identity's URI form.
func (id DeviceIdentity) String() string { return id.URI().String() }

// validateID checks an org or device id against the safe charset. Because the
// ids are spliced into a URI and into paths, nothing that could change either's
// structure is allowed.
func validateID(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxIDLength {
		return fmt.Errorf("longer than %d characters", maxIDLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("character %q at offset %d is not in [A-Za-z0-9_-]", c, i)
		}
	}
	return nil
}

// IdentityFromCert returns the device identity a certificate names. It is
// strict: the certificate must carry exactly one URI SAN, and it must be exactly
// toktra://org/<org id>/device/<device id> with valid ids. It does not verify
// the certificate; use it on certificates from a verified chain (see
// [PeerIdentity]).
func IdentityFromCert(cert *x509.Certificate) (DeviceIdentity, error) {
	if cert == nil {
		return DeviceIdentity{}, errors.New("no certificate")
	}
	if n := len(cert.URIs); n != 1 {
		return DeviceIdentity{}, fmt.Errorf("certificate has %d URI SANs; want exactly 1", n)
	}
	u := cert.URIs[0]
	if u.Scheme != identityScheme || u.Host != "org" || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawPath != "" {
		return DeviceIdentity{}, fmt.Errorf("URI SAN %q is not a toktra://org/<org>/device/<device> identity", u.Redacted())
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 4 || parts[0] != "" || parts[2] != "device" {
		return DeviceIdentity{}, fmt.Errorf("URI SAN %q is not a toktra://org/<org>/device/<device> identity", u.Redacted())
	}
	id := DeviceIdentity{OrgID: parts[1], DeviceID: parts[3]}
	if err := id.Validate(); err != nil {
		return DeviceIdentity{}, fmt.Errorf("URI SAN %q: %w", u.Redacted(), err)
	}
	// Round-trip as a final guard against any spelling of the same URI that
	// the checks above did not foresee.
	if got, want := u.String(), id.String(); got != want {
		return DeviceIdentity{}, fmt.Errorf("URI SAN %q is not in canonical form %q", got, want)
	}
	return id, nil
}

// PeerIdentity returns the device identity of a TLS peer whose client
// certificate the handshake verified against the CA (see [ServerTLSConfig]).
// It fails when the peer presented no certificate, which the listener allows
// for enrollment only; every handler that acts for a device must call it.
func PeerIdentity(state tls.ConnectionState) (DeviceIdentity, error) {
	// Only VerifiedChains is trustworthy: PeerCertificates is whatever the
	// peer sent.
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return DeviceIdentity{}, errors.New("peer presented no verified client certificate")
	}
	id, err := IdentityFromCert(state.VerifiedChains[0][0])
	if err != nil {
		return DeviceIdentity{}, fmt.Errorf("reading peer identity: %w", err)
	}
	return id, nil
}
