package pki

import (
	"crypto/tls"
	"crypto/x509"
)

// ServerTLSConfig returns the TLS configuration of the control plane's gRPC
// listener: TLS 1.3 only, serverCert (from [CA.IssueServerCert], chain
// included) and client certificates verified against ca alone.
//
// Client certificates are optional at the TLS layer (VerifyClientCertIfGiven)
// because enrollment, on the same listener, happens before the device has one.
// A certificate that is presented must verify, or the handshake fails. Every
// handler that acts for a device must therefore get its identity from
// [PeerIdentity], which refuses a connection without a verified certificate.
func ServerTLSConfig(ca *CA, serverCert tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
}

// AgentTLSConfig returns the TLS configuration of an enrolled agent's
// connection: TLS 1.3 only, the device certificate clientCert, and the server
// verified for serverName against the control plane's CA (caCertDER, as
// received at enrollment) and nothing else, not the system roots. If
// caCertDER does not parse, the configuration trusts no server at all, so
// callers should parse it when they store it.
func AgentTLSConfig(caCertDER []byte, clientCert tls.Certificate, serverName string) *tls.Config {
	pool := x509.NewCertPool()
	if ca, err := x509.ParseCertificate(caCertDER); err == nil {
		pool.AddCert(ca)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: serverName,
	}
	if len(clientCert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{clientCert}
	}
	return cfg
}

// EnrollmentTLSConfig returns the TLS configuration of an agent's enrollment
// call, made before it knows the CA: TLS 1.3 only, no client certificate, and
// the server accepted only by [VerifyPinnedChain] for pin and serverName.
// Normal verification is switched off because it needs the CA as a root;
// the pinned check replaces it, and session resumption, which would skip
// it, is disabled.
func EnrollmentTLSConfig(pin, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ServerName:             serverName,
		InsecureSkipVerify:     true, // replaced by VerifyPeerCertificate below
		VerifyPeerCertificate:  VerifyPinnedChain(pin, serverName),
		SessionTicketsDisabled: true,
	}
}
