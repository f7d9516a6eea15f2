package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/toktra/toktra/internal/atomicfile"
	"github.com/toktra/toktra/internal/clock"
)

// Files of a local TSA's directory.
const (
	// RootCertFile is the local TSA root certificate, PEM, mode 0644: what
	// verifiers (and `openssl ts -verify -CAfile`) trust.
	RootCertFile = "tsa-root.pem"
	// RootKeyFile is the root's private key, PKCS#8 PEM, mode 0600.
	RootKeyFile = "tsa-root-key.pem"
	// SignerCertFile is the TSA signing certificate, PEM, mode 0644.
	SignerCertFile = "tsa.pem"
	// SignerKeyFile is the signing key, PKCS#8 PEM, mode 0600.
	SignerKeyFile = "tsa-key.pem"
)

// LocalPolicyOID is the TSA policy of the local TSA's tokens. It lies under
// IANA's enterprise number 32473, reserved for documentation (RFC 5612):
// the local TSA makes no claim of a public policy.
var LocalPolicyOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 3161, 1}

const (
	// rootLifetime and signerLifetime are long because evidence is kept 7
	// years and `openssl ts -verify` judges the chain at the time it runs:
	// a signer is replaced once less than signerMinRemaining is left, so
	// every token it made still verifies for at least that long.
	rootLifetime       = 30 * 365 * 24 * time.Hour
	signerLifetime     = 12 * 365 * 24 * time.Hour
	signerMinRemaining = 8 * 365 * 24 * time.Hour
	clockSkew          = 5 * time.Minute
	// localAccuracy is what the local TSA claims for its clock.
	localAccuracy = time.Second
	// maxRequestSize bounds a time-stamp request; a SHA-512 request with a
	// nonce and a policy is under 200 bytes.
	maxRequestSize = 4 << 10
	maxKeyFileSize = 64 << 10
)

var oidExtKeyUsageTS = func() []byte {
	v, err := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamping})
	if err != nil {
		panic(err)
	}
	return v
}()

// Local is a time-stamping authority in this process: it answers RFC 3161
// requests over HTTP (it is an http.Handler) with tokens signed by a TSA
// certificate issued by its own root. It is safe for concurrent use.
type Local struct {
	root    *x509.Certificate
	rootPEM []byte
	signer  *x509.Certificate
	key     *ecdsa.PrivateKey
	clock   clock.Clock
	log     *slog.Logger
}

// LoadOrCreateLocal loads the local TSA kept in dir, or creates its root
// there when dir holds none. The signing certificate is reissued from the
// root when missing or close to expiry. dir is created 0700 if missing; key
// files readable by group or others are refused.
func LoadOrCreateLocal(dir string, clk clock.Clock, log *slog.Logger) (*Local, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local tsa: creating %s: %w", dir, err)
	}
	now := clk.Now()
	root, rootKey, err := loadOrCreateRoot(dir, now)
	if err != nil {
		return nil, fmt.Errorf("local tsa: %w", err)
	}
	signer, key, err := loadSigner(dir, root, now)
	if err != nil {
		log.Info("issuing a new local TSA signing certificate", "reason", err)
		signer, key, err = issueSigner(dir, root, rootKey, now)
		if err != nil {
			return nil, fmt.Errorf("local tsa: %w", err)
		}
	}
	return &Local{
		root:    root,
		rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}),
		signer:  signer,
		key:     key,
		clock:   clk,
		log:     log,
	}, nil
}

// RootPEM is the local TSA root certificate in PEM, for verifiers.
func (l *Local) RootPEM() []byte { return bytes.Clone(l.rootPEM) }

// Roots is a pool holding just the local TSA root.
func (l *Local) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.root)
	return p
}

// SignerCertificate is the certificate the local TSA signs with.
func (l *Local) SignerCertificate() *x509.Certificate { return l.signer }

func loadOrCreateRoot(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, RootCertFile), filepath.Join(dir, RootKeyFile)
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, nil, err
	}
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case haveCert && haveKey:
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, err
		}
		if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, nil, fmt.Errorf("%s is not a CA certificate", certPath)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			return nil, nil, fmt.Errorf("%s is not validly self-signed: %w", certPath, err)
		}
		if !now.Before(cert.NotAfter) {
			return nil, nil, fmt.Errorf("TSA root %s expired at %s", certPath, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return cert, key, nil
	case haveCert || haveKey:
		return nil, nil, fmt.Errorf("%s holds only one of %s and %s; restore the other (tokens chain to this root)", dir, RootCertFile, RootKeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Toktra Local TSA Root " + hex.EncodeToString(suffix), Organization: []string{"Toktra"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, err := createCert(tmpl, tmpl, key, key)
	if err != nil {
		return nil, nil, err
	}
	// Key first: a crash between the writes leaves a key without a
	// certificate, which nobody can have trusted yet.
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadSigner loads the signing pair and says why it cannot be used, if so.
func loadSigner(dir string, root *x509.Certificate, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, key, err := loadPair(filepath.Join(dir, SignerCertFile), filepath.Join(dir, SignerKeyFile))
	if err != nil {
		return nil, nil, err
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		return nil, nil, fmt.Errorf("signing certificate was not issued by the current root: %w", err)
	}
	if err := checkTimeStampingEKU(cert); err != nil {
		return nil, nil, err
	}
	if cert.NotAfter.Sub(now) < signerMinRemaining {
		return nil, nil, fmt.Errorf("signing certificate expires at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, key, nil
}

func issueSigner(dir string, root *x509.Certificate, rootKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(signerLifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Toktra Local TSA " + now.UTC().Format("2006-01-02"), Organization: []string{"Toktra"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		// RFC 3161 section 2.3: timeStamping alone, critical. crypto/x509
		// never marks the extension critical, so it is written by hand.
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: oidExtKeyUsageTS}},
	}
	cert, err := createCert(tmpl, root, key, rootKey)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(filepath.Join(dir, SignerKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, SignerCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func createCert(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	keyDER, err := readPEMFile(keyPath, "PRIVATE KEY", true)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", keyPath, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s holds a %T; want an ECDSA key", keyPath, parsed)
	}
	certDER, err := readPEMFile(certPath, "CERTIFICATE", false)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", certPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match the key in %s", certPath, keyPath)
	}
	return cert, key, nil
}

// readPEMFile reads the single PEM block of type typ from path, refusing a
// private file that group or others can access.
func readPEMFile(path, typ string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if private && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("private key file %s has mode %#o; run chmod 600 %s", path, info.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFileSize)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != typ || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s does not hold exactly one PEM %s block", path, typ)
	}
	return block.Bytes, nil
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// ServeHTTP answers one RFC 3161 request (POST, application/timestamp-query).
// A malformed or unacceptable request gets an RFC 3161 rejection, as the
// protocol expects; only HTTP-level mistakes get HTTP errors.
func (l *Local) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "time-stamp requests are POSTed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ContentTypeQuery {
		http.Error(w, "content type must be "+ContentTypeQuery, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestSize+1))
	if err != nil {
		http.Error(w, "reading request", http.StatusBadRequest)
		return
	}
	if len(body) > maxRequestSize {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	resp, err := l.Respond(body)
	if err != nil {
		l.log.Error("local tsa: signing failed", "err", err)
		http.Error(w, "time-stamping failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentTypeReply)
	w.Write(resp)
}

// Respond returns the DER TimeStampResp for a DER TimeStampReq: a granted
// token, or a rejection naming what was wrong with the request.
func (l *Local) Respond(reqDER []byte) ([]byte, error) {
	req, err := timestamp.ParseRequest(reqDER)
	if err != nil {
		return timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadDataFormat)
	}
	switch req.HashAlgorithm {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadAlgorithm)
	}
	if len(req.HashedMessage) != req.HashAlgorithm.Size() {
		return timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadDataFormat)
	}
	if len(req.TSAPolicyOID) != 0 && !req.TSAPolicyOID.Equal(LocalPolicyOID) {
		return timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.UnacceptedPolicy)
	}
	for _, ext := range req.Extensions {
		if ext.Critical {
			return timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.UnacceptedExtension)
		}
	}
	ts := timestamp.Timestamp{
		HashAlgorithm: req.HashAlgorithm,
		HashedMessage: req.HashedMessage,
		// GeneralizedTime in DER carries whole seconds here; truncate so
		// what is signed is what the clock said, not a rounding of it.
		Time:              l.clock.Now().UTC().Truncate(time.Second),
		Accuracy:          localAccuracy,
		Policy:            LocalPolicyOID,
		Nonce:             req.Nonce,
		AddTSACertificate: req.Certificates,
	}
	// The serial number is 160 random bits (the library draws it), unique
	// with overwhelming probability without coordination between replicas.
	return ts.CreateResponseWithOpts(l.signer, l.key, crypto.SHA256)
}

// LoopbackServer serves a Local TSA on a loopback port, for in-process users
// (the PDF signer) that speak RFC 3161 over HTTP themselves.
type LoopbackServer struct {
	srv *http.Server
	ln  net.Listener
}

// ServeLoopback starts serving l on 127.0.0.1 at a port the kernel picks.
func ServeLoopback(l *Local) (*LoopbackServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local tsa: listening on loopback: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tsa", l)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &LoopbackServer{srv: srv, ln: ln}, nil
}

// URL is the TSA URL to give RFC 3161 clients.
func (s *LoopbackServer) URL() string { return "http://" + s.ln.Addr().String() + "/tsa" }

// Close stops the server.
func (s *LoopbackServer) Close() error { return s.srv.Close() }

// Timestamp obtains a token over digest (SHA-256) from l without HTTP, with
// the same request, nonce and checks a Client makes, so in-process callers
// and remote TSAs are interchangeable.
func (l *Local) Timestamp(_ context.Context, digest []byte) (*Token, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("time-stamping: digest is %d bytes; want a %d-byte SHA-256 digest", len(digest), sha256.Size)
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	req, err := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}).Marshal()
	if err != nil {
		return nil, err
	}
	resp, err := l.Respond(req)
	if err != nil {
		return nil, fmt.Errorf("local tsa: %w", err)
	}
	return VerifyResponse(resp, digest, nonce, l.Roots())
}
