package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

const (
	// EvidenceCertFile holds the evidence-signing certificate in the CA's
	// directory, PEM, mode 0644.
	EvidenceCertFile = "evidence.pem"
	// EvidenceKeyFile holds the evidence-signing key, PKCS#8 PEM, mode 0600.
	EvidenceKeyFile = "evidence-key.pem"

	// DefaultEvidenceCertLifetime is how long an evidence-signing
	// certificate lives. A signature outlives it: its RFC 3161 timestamp
	// proves it was made while the certificate was valid.
	DefaultEvidenceCertLifetime = 2 * 365 * 24 * time.Hour

	// evidenceRenewBefore is how long before its expiry the certificate is
	// re-issued (for the same key) when loaded.
	evidenceRenewBefore = 90 * 24 * time.Hour
)

// Extended key usages of the evidence-signing certificate.
var (
	// OIDExtKeyUsageDocumentSigning is id-kp-documentSigning (RFC 9336),
	// the purpose of the evidence key.
	OIDExtKeyUsageDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}
)

// EvidenceSigner is the control plane's key for signing evidence (the
// audit snapshot PDF), with its certificate from the CA. The certificate
// is for document signing only: it has no client-authentication usage and
// no device URI, so it can never pass as a device.
type EvidenceSigner struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	ca   *x509.Certificate
}

// Signer returns the private key.
func (s *EvidenceSigner) Signer() crypto.Signer { return s.key }

// Certificate returns the evidence-signing certificate. Callers must not
// modify it.
func (s *EvidenceSigner) Certificate() *x509.Certificate { return s.cert }

// Chain returns the certificate followed by the CA certificate, which a
// signature embeds so that a verifier trusting the CA can build the path.
func (s *EvidenceSigner) Chain() []*x509.Certificate { return []*x509.Certificate{s.cert, s.ca} }

// LoadOrCreateEvidenceSigner loads the evidence key and certificate kept in
// dir (the CA's directory), creating the key (0600) when it does not exist
// and issuing the certificate from ca when it is missing, not issued by ca
// for that key, or within 90 days of expiry. The key file must be
// accessible by its owner only.
func LoadOrCreateEvidenceSigner(dir string, ca *CA, now time.Time) (*EvidenceSigner, error) {
	keyPath, certPath := filepath.Join(dir, EvidenceKeyFile), filepath.Join(dir, EvidenceCertFile)
	key, err := loadOrCreateEvidenceKey(keyPath)
	if err != nil {
		return nil, err
	}
	haveCert, err := fileExists(certPath)
	if err != nil {
		return nil, err
	}
	if haveCert {
		cert, err := loadEvidenceCert(certPath)
		if err != nil {
			return nil, err
		}
		if ca.currentEvidenceCert(cert, key, now) {
			return &EvidenceSigner{key: key, cert: cert, ca: ca.cert}, nil
		}
	}
	cert, err := ca.IssueEvidenceCert(&key.PublicKey, now, 0)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return nil, fmt.Errorf("storing evidence certificate: %w", err)
	}
	return &EvidenceSigner{key: key, cert: cert, ca: ca.cert}, nil
}

func loadOrCreateEvidenceKey(path string) (*ecdsa.PrivateKey, error) {
	have, err := fileExists(path)
	if err != nil {
		return nil, err
	}
	if !have {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating evidence key: %w", err)
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding evidence key: %w", err)
		}
		if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
			return nil, fmt.Errorf("storing evidence key: %w", err)
		}
		return key, nil
	}
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading evidence key: %w", err)
	}
	der, err := decodeOnePEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", EvidenceKeyFile, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", EvidenceKeyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s holds a %T; want an ECDSA P-256 key", EvidenceKeyFile, parsed)
	}
	return key, nil
}

func loadEvidenceCert(path string) (*x509.Certificate, error) {
	data, err := readPublicFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading evidence certificate: %w", err)
	}
	der, err := decodeOnePEM(data, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", EvidenceCertFile, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", EvidenceCertFile, err)
	}
	return cert, nil
}

// currentEvidenceCert reports whether cert can go on being used: issued by
// this CA for key, for document signing, and not close to expiry. A
// certificate that fails any of these is simply re-issued.
func (ca *CA) currentEvidenceCert(cert *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) bool {
	if !key.PublicKey.Equal(cert.PublicKey) || cert.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	if err := CheckEvidenceCert(cert); err != nil {
		return false
	}
	return now.Add(evidenceRenewBefore).Before(cert.NotAfter) && !now.Before(cert.NotBefore)
}

// IssueEvidenceCert issues an evidence-signing certificate for pub: key
// usages digitalSignature and nonRepudiation (content commitment),
// extended key usages documentSigning (RFC 9336) and emailProtection
// (which NSS, and so poppler's pdfsig, requires of a document signer),
// valid from now less MaxClockSkew for lifetime
// (DefaultEvidenceCertLifetime when zero), never beyond the CA's expiry.
func (ca *CA) IssueEvidenceCert(pub crypto.PublicKey, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if lifetime < 0 {
		return nil, fmt.Errorf("issuing evidence certificate: negative lifetime %s", lifetime)
	}
	if lifetime == 0 {
		lifetime = DefaultEvidenceCertLifetime
	}
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("issuing evidence certificate: %T keys are not accepted; use ECDSA", pub)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issuing evidence certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            pkix.Name{CommonName: "Toktra Evidence Signing", Organization: []string{"Toktra"}},
		NotBefore:          now.Add(-MaxClockSkew),
		NotAfter:           ca.clampNotAfter(now.Add(lifetime)),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{OIDExtKeyUsageDocumentSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing evidence certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new evidence certificate: %w", err)
	}
	return cert, nil
}

// CheckEvidenceCert reports whether cert is an evidence-signing
// certificate: for document signing, not a CA, and usable for nothing
// that authenticates a connection.
func CheckEvidenceCert(cert *x509.Certificate) error {
	if cert.IsCA {
		return errors.New("evidence certificate is a CA certificate")
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("evidence certificate lacks the digitalSignature key usage")
	}
	docSigning := false
	for _, oid := range cert.UnknownExtKeyUsage {
		if oid.Equal(OIDExtKeyUsageDocumentSigning) {
			docSigning = true
		}
	}
	if !docSigning {
		return errors.New("evidence certificate lacks the documentSigning extended key usage")
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return fmt.Errorf("evidence certificate allows extended key usage %v, which authenticates connections", u)
		}
	}
	if len(cert.URIs) > 0 {
		return errors.New("evidence certificate names a URI")
	}
	return nil
}
