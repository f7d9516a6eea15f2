package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// pinPrefix introduces a pin; the hash is the only one we use.
const pinPrefix = "sha256:"

// maxPeerChainLength bounds how many certificates VerifyPinnedChain parses;
// our server sends two.
const maxPeerChainLength = 8

// pinOf returns the pin of a certificate's public key.
func pinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return pinPrefix + hex.EncodeToString(sum[:])
}

// ParsePin validates a CA pin of the form "sha256:<64 lowercase or uppercase
// hex digits>" and returns the 32-byte hash it names.
func ParsePin(s string) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return nil, fmt.Errorf("parsing pin: %q does not start with %q", s, pinPrefix)
	}
	if len(hexPart) != 2*sha256.Size {
		return nil, fmt.Errorf("parsing pin: want %d hex digits after %q, got %d", 2*sha256.Size, pinPrefix, len(hexPart))
	}
	sum, err := hex.DecodeString(hexPart)
	if err != nil {
		return nil, fmt.Errorf("parsing pin: %w", err)
	}
	return sum, nil
}

// VerifyPinnedChain returns a tls.Config.VerifyPeerCertificate function for an
// agent that knows the control plane only by its CA pin (enrollment), to be
// used with InsecureSkipVerify set, as [EnrollmentTLSConfig] does. It accepts a
// chain only if one of the certificates after the leaf is a CA certificate
// whose public key has the pinned hash, and the leaf then verifies, for server
// authentication and serverName, with that CA as the only root and no
// intermediates. The server must therefore send the CA certificate in its
// chain. An invalid pin makes every chain fail. Validity is checked against the
// system clock, as crypto/tls does.
func VerifyPinnedChain(pin, serverName string) func(rawCerts [][]byte, verifiedChains [][]*x509.Certificate) error {
	return verifyPinnedChain(pin, serverName, nil)
}

// verifyPinnedChain is VerifyPinnedChain with the clock injectable for tests;
// a nil now means the system clock.
func verifyPinnedChain(pin, serverName string, now func() time.Time) func([][]byte, [][]*x509.Certificate) error {
	want, pinErr := ParsePin(pin)
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if pinErr != nil {
			return fmt.Errorf("verifying pinned chain: %w", pinErr)
		}
		if serverName == "" {
			return errors.New("verifying pinned chain: no server name to verify")
		}
		if len(rawCerts) < 2 {
			return fmt.Errorf("verifying pinned chain: server sent %d certificates; want the leaf and the ca", len(rawCerts))
		}
		if len(rawCerts) > maxPeerChainLength {
			return fmt.Errorf("verifying pinned chain: server sent %d certificates; at most %d allowed", len(rawCerts), maxPeerChainLength)
		}
		certs := make([]*x509.Certificate, len(rawCerts))
		for i, raw := range rawCerts {
			c, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("verifying pinned chain: parsing certificate %d: %w", i, err)
			}
			certs[i] = c
		}
		var pinned *x509.Certificate
		for _, c := range certs[1:] {
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			if subtle.ConstantTimeCompare(sum[:], want) == 1 && pinned == nil {
				pinned = c
			}
		}
		if pinned == nil {
			return errors.New("verifying pinned chain: no certificate in the server's chain matches the ca pin")
		}
		if !pinned.BasicConstraintsValid || !pinned.IsCA {
			return errors.New("verifying pinned chain: the pinned certificate is not a ca")
		}
		roots := x509.NewCertPool()
		roots.AddCert(pinned)
		opts := x509.VerifyOptions{
			DNSName:   serverName,
			Roots:     roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if now != nil {
			opts.CurrentTime = now()
		}
		if _, err := certs[0].Verify(opts); err != nil {
			return fmt.Errorf("verifying pinned chain: %w", err)
		}
		return nil
	}
}
