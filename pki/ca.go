package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// DefaultDeviceCertLifetime is how long a device certificate lives when the
	// caller asks for no particular lifetime. Agents renew well before it ends.
	DefaultDeviceCertLifetime = 30 * 24 * time.Hour

	// DefaultServerCertLifetime is how long a server certificate lives when the
	// caller asks for no particular lifetime.
	DefaultServerCertLifetime = 90 * 24 * time.Hour

	// CACertFile holds the CA certificate in the CA's directory, PEM, mode 0644.
	CACertFile = "ca.pem"
	// CAKeyFile holds the CA's private key, PKCS#8 PEM, mode 0600.
	CAKeyFile = "ca-key.pem"
)

// caLifetime is how long a newly created CA certificate is valid.
const caLifetime = 10 * 365 * 24 * time.Hour

// maxCSRSize bounds the certificate requests SignDeviceCSR parses; a P-256 or
// Ed25519 CSR is a few hundred bytes.
const maxCSRSize = 16 << 10

// CA is the control plane's device certificate authority. It issues device
// client certificates from agents' CSRs and the server's TLS certificate.
// It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pin     string
}

// LoadOrCreateCA loads the CA kept in dir (ca.pem and ca-key.pem), or creates
// one there when neither file exists. dir is created with mode 0700 if missing.
// It refuses a key file that group or others can access, a key that does not
// match the certificate, a CA that has expired at now, and a directory holding
// only one of the two files (which a crash during creation can leave; remove it
// to start over). Two processes creating a CA in the same directory at the same
// time is not supported.
func LoadOrCreateCA(dir string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating ca directory: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	haveCert, err := fileExists(certPath)
	if err != nil {
		return nil, err
	}
	haveKey, err := fileExists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case haveCert && haveKey:
		ca, err := loadCA(certPath, keyPath, now)
		if err != nil {
			return nil, fmt.Errorf("loading ca from %s: %w", dir, err)
		}
		return ca, nil
	case haveCert:
		return nil, fmt.Errorf("loading ca from %s: %s exists without %s", dir, CACertFile, CAKeyFile)
	case haveKey:
		return nil, fmt.Errorf("loading ca from %s: %s exists without %s (remove it to create a new ca)", dir, CAKeyFile, CACertFile)
	}
	ca, keyPEM, err := newCA(now)
	if err != nil {
		return nil, fmt.Errorf("creating ca: %w", err)
	}
	// The key goes first: a crash between the two writes then leaves a key
	// without a certificate, which nobody can have trusted yet.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("storing ca key: %w", err)
	}
	if err := writeFileAtomic(certPath, ca.certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("storing ca certificate: %w", err)
	}
	return ca, nil
}

// newCA makes a fresh P-256 CA valid from now (less the clock skew allowance)
// for caLifetime, and returns it with its key in PKCS#8 PEM.
func newCA(now time.Time) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		return nil, nil, fmt.Errorf("generating name: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// A random suffix keeps two CAs (say, a test install and production)
		// from sharing a subject, which would confuse chain building.
		Subject:               pkix.Name{CommonName: "Toktra Device CA " + hex.EncodeToString(suffix), Organization: []string{"Toktra"}},
		NotBefore:             now.Add(-MaxClockSkew),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing new certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return newCAFrom(cert, key), keyPEM, nil
}

func newCAFrom(cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	return &CA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:     key,
		pin:     pinOf(cert),
	}
}

func loadCA(certPath, keyPath string, now time.Time) (*CA, error) {
	keyPEM, err := readPrivateFile(keyPath)
	if err != nil {
		return nil, err
	}
	keyDER, err := decodeOnePEM(keyPEM, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", CAKeyFile, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", CAKeyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s holds a %T; want an ECDSA P-256 key", CAKeyFile, parsed)
	}
	certPEM, err := readPublicFile(certPath)
	if err != nil {
		return nil, err
	}
	certDER, err := decodeOnePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", CACertFile, err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", CACertFile, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a ca certificate", CACertFile)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the key in %s", CAKeyFile, CACertFile)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("%s is not validly self-signed: %w", CACertFile, err)
	}
	if !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("ca certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return newCAFrom(cert, key), nil
}

// decodeOnePEM returns the bytes of the single PEM block of type typ in data,
// refusing anything else around it.
func decodeOnePEM(data []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM %s block", typ)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("PEM block is %q; want %q", block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the PEM %s block", typ)
	}
	return block.Bytes, nil
}

// Certificate returns the CA certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM, as stored in ca.pem.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Pin returns the value agents are configured with to trust this CA before
// enrollment: "sha256:" and the lowercase hex SHA-256 of the CA certificate's
// SubjectPublicKeyInfo. It survives re-issuing the CA certificate for the same key.
func (ca *CA) Pin() string { return ca.pin }

// SignDeviceCSR issues a device client certificate for the key in a PKCS#10
// request (DER). The request must be validly self-signed with an ECDSA P-256 or
// Ed25519 key: agents make their own keys, so nothing else need be accepted, and
// RSA or other curves are refused. Every name in the request is ignored; the
// certificate names only id (subject CN = device id, one URI SAN =
// id.URI()), is for client authentication only, and is valid from now less
// MaxClockSkew for lifetime (DefaultDeviceCertLifetime when zero), but never
// beyond the CA's own expiry.
func (ca *CA) SignDeviceCSR(csrDER []byte, id DeviceIdentity, now time.Time, lifetime time.Duration) (certDER []byte, cert *x509.Certificate, err error) {
	if err := id.Validate(); err != nil {
		return nil, nil, fmt.Errorf("signing device csr: %w", err)
	}
	if lifetime < 0 {
		return nil, nil, fmt.Errorf("signing device csr: negative lifetime %s", lifetime)
	}
	if lifetime == 0 {
		lifetime = DefaultDeviceCertLifetime
	}
	csr, err := ParseDeviceCSR(csrDER)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("signing device csr: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.DeviceID},
		URIs:         []*url.URL{id.URI()},
		NotBefore:    now.Add(-MaxClockSkew),
		NotAfter:     ca.clampNotAfter(now.Add(lifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing device certificate: %w", err)
	}
	cert, err = x509.ParseCertificate(certDER)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing new device certificate: %w", err)
	}
	return certDER, cert, nil
}

// ParseDeviceCSR parses a device's PKCS#10 request and checks what
// SignDeviceCSR requires of it (size, self-signature, key type), so that a
// caller can refuse a bad request before it records anything.
func ParseDeviceCSR(csrDER []byte) (*x509.CertificateRequest, error) {
	if len(csrDER) > maxCSRSize {
		return nil, fmt.Errorf("device csr is %d bytes; at most %d allowed", len(csrDER), maxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parsing device csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("checking device csr signature: %w", err)
	}
	if err := checkDeviceKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("device csr: %w", err)
	}
	return csr, nil
}

// checkDeviceKey accepts the two key types agents make.
func checkDeviceKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on curve %s; only P-256 is accepted", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("%T keys are not accepted; use ECDSA P-256 or Ed25519", pub)
	}
}

// IssueServerCert issues a TLS server certificate for the control plane's
// listener: a fresh ECDSA P-256 key, server authentication only, a SAN per
// host (an IP address if it parses as one, a DNS name otherwise), valid from
// now less MaxClockSkew for lifetime (DefaultServerCertLifetime when zero).
// The returned chain is the leaf followed by the CA certificate: agents
// enrolling with only a pin need the CA in the chain (see [VerifyPinnedChain]).
func (ca *CA) IssueServerCert(hosts []string, now time.Time, lifetime time.Duration) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("issuing server certificate: no hosts")
	}
	if lifetime < 0 {
		return tls.Certificate{}, fmt.Errorf("issuing server certificate: negative lifetime %s", lifetime)
	}
	if lifetime == 0 {
		lifetime = DefaultServerCertLifetime
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-MaxClockSkew),
		NotAfter:     ca.clampNotAfter(now.Add(lifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Zone() != "" {
				return tls.Certificate{}, fmt.Errorf("issuing server certificate: address %q has a zone", h)
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
			continue
		}
		if err := validateDNSName(h); err != nil {
			return tls.Certificate{}, fmt.Errorf("issuing server certificate: %w", err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating server key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing new server certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{der, ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// clampNotAfter keeps an issued certificate from outliving the CA, past which
// it could not be verified anyway.
func (ca *CA) clampNotAfter(t time.Time) time.Time {
	if t.After(ca.cert.NotAfter) {
		return ca.cert.NotAfter
	}
	return t
}

// validateDNSName accepts host names of letters, digits, hyphens and dots
// (no wildcards, no trailing dot), which is all a control plane needs.
func validateDNSName(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host %q is not a valid DNS name", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not a valid DNS name", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("host %q is not a valid DNS name", h)
			}
		}
	}
	return nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
