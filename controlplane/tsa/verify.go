package tsa

import (
	"bytes"
	"crypto"
	"crypto/sha1" //nolint:gosec // ESSCertID v1 names the signer by SHA-1; it is compared, not trusted alone.
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
)

// MaxTokenSize bounds the tokens Verify parses. A token with DigiCert's
// full chain is about 6 KiB.
const MaxTokenSize = 64 << 10

// ErrVerify is wrapped by every error that means a token or response failed a
// check (as opposed to a transport failure).
var ErrVerify = errors.New("time-stamp verification failed")

var (
	oidSignedData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidTSTInfo             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidSigningCertificate  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidSigningCertV2       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKPTimeStamping      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidSHA256              = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384              = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512              = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA1                = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	errNoESSSigningCertKey = errors.New("token has no ESS signing-certificate attribute")
)

// Token is a verified RFC 3161 time-stamp token.
type Token struct {
	// DER is the TimeStampToken (a CMS ContentInfo), what
	// `openssl ts -verify -token_in` reads.
	DER []byte
	// Time is the TSA's genTime.
	Time time.Time
	// Accuracy is the TSA's stated accuracy of Time (zero when not stated).
	Accuracy time.Duration
	// Serial is the TSA's serial number of this token.
	Serial *big.Int
	// Policy is the TSA policy the token was issued under.
	Policy asn1.ObjectIdentifier
	// Digest is the SHA-256 message imprint.
	Digest []byte
	// Nonce is the requester's nonce echoed by the TSA, if any.
	Nonce *big.Int
	// Signer is the TSA certificate that signed the token.
	Signer *x509.Certificate
}

// TSAName is the signing TSA's subject, for display.
func (t *Token) TSAName() string { return t.Signer.Subject.String() }

// contentInfo and signedDataHead decode just enough of a CMS ContentInfo to
// check what the SignedData encapsulates; pkcs7.Parse does not expose it.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type signedDataHead struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContentInfo struct {
		EContentType asn1.ObjectIdentifier
		EContent     asn1.RawValue `asn1:"explicit,optional,tag:0"`
	}
	Rest asn1.RawValue `asn1:"optional"`
}

type essCertID struct {
	CertHash     []byte
	IssuerSerial asn1.RawValue `asn1:"optional"`
}

type signingCertificate struct {
	Certs    []essCertID
	Policies asn1.RawValue `asn1:"optional"`
}

type essCertIDv2 struct {
	HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
	CertHash      []byte
	IssuerSerial  asn1.RawValue `asn1:"optional"`
}

type signingCertificateV2 struct {
	Certs    []essCertIDv2
	Policies asn1.RawValue `asn1:"optional"`
}

// Verify checks token as a time-stamp over digest (a SHA-256 digest) by a TSA
// whose chain leads to one of roots, and returns what it says. It makes every
// check listed in the package documentation except the nonce, which only the
// requester knows.
func Verify(token, digest []byte, roots *x509.CertPool) (*Token, error) {
	if roots == nil {
		return nil, errors.New("verifying time-stamp: no trusted TSA roots configured")
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("verifying time-stamp: digest is %d bytes; want a %d-byte SHA-256 digest", len(digest), sha256.Size)
	}
	t, err := parseToken(token, roots)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(t.Digest, digest) {
		return nil, fmt.Errorf("%w: token is over digest %x, not %x", ErrVerify, t.Digest, digest)
	}
	return t, nil
}

// parseToken makes every check of Verify but the digest comparison.
func parseToken(token []byte, roots *x509.CertPool) (*Token, error) {
	if len(token) == 0 {
		return nil, fmt.Errorf("%w: empty token", ErrVerify)
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token is %d bytes; the limit is %d", ErrVerify, len(token), MaxTokenSize)
	}
	if err := checkEncapsulatesTSTInfo(token); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	p7, ts, err := parsePKCS7(token)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing token: %v", ErrVerify, err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: token has %d signers; want 1", ErrVerify, len(p7.Signers))
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fmt.Errorf("%w: token does not carry its signer's certificate (request it with certReq)", ErrVerify)
	}
	if ts.HashAlgorithm != crypto.SHA256 {
		return nil, fmt.Errorf("%w: message imprint uses %v; want SHA-256", ErrVerify, ts.HashAlgorithm)
	}
	if len(ts.HashedMessage) != sha256.Size {
		return nil, fmt.Errorf("%w: message imprint is %d bytes; want %d", ErrVerify, len(ts.HashedMessage), sha256.Size)
	}
	if err := checkTimeStampingEKU(signer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	if err := checkESSSigningCertificate(p7, signer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	intermediates := x509.NewCertPool()
	for _, c := range p7.Certificates {
		if c != signer {
			intermediates.AddCert(c)
		}
	}
	// The chain is judged at genTime: a token stays valid after its TSA
	// certificate expires, as long as it was valid when the token was made.
	err = p7.VerifyWithOpts(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   ts.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	return &Token{
		DER:      bytes.Clone(token),
		Time:     ts.Time.UTC(),
		Accuracy: ts.Accuracy,
		Serial:   ts.SerialNumber,
		Policy:   ts.Policy,
		Digest:   ts.HashedMessage,
		Nonce:    ts.Nonce,
		Signer:   signer,
	}, nil
}

// pkcs7Mu serializes pkcs7.Parse: its BER normalizer updates a package
// variable (a debugging indent counter) without synchronization.
var pkcs7Mu sync.Mutex

// parsePKCS7 parses token as CMS and as a time-stamp. timestamp.Parse decodes
// the TSTInfo and checks the signature against the carried certificate only;
// the caller checks the chain.
func parsePKCS7(token []byte) (*pkcs7.PKCS7, *timestamp.Timestamp, error) {
	pkcs7Mu.Lock()
	defer pkcs7Mu.Unlock()
	p7, err := pkcs7.Parse(token)
	if err != nil {
		return nil, nil, err
	}
	ts, err := timestamp.Parse(token)
	if err != nil {
		return nil, nil, err
	}
	return p7, ts, nil
}

func checkEncapsulatesTSTInfo(token []byte) error {
	var ci contentInfo
	rest, err := asn1.Unmarshal(token, &ci)
	if err != nil {
		return fmt.Errorf("parsing token: %v", err)
	}
	if len(rest) != 0 {
		return errors.New("trailing data after token")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return fmt.Errorf("token content type is %v; want signedData", ci.ContentType)
	}
	var sd signedDataHead
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return fmt.Errorf("parsing signed data: %v", err)
	}
	if !sd.EncapContentInfo.EContentType.Equal(oidTSTInfo) {
		return fmt.Errorf("token encapsulates %v; want id-ct-TSTInfo", sd.EncapContentInfo.EContentType)
	}
	return nil
}

// checkTimeStampingEKU enforces RFC 3161 section 2.3: the TSA certificate has
// exactly one extended key usage, timeStamping, in a critical extension.
func checkTimeStampingEKU(cert *x509.Certificate) error {
	var ext *pkix.Extension
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(oidExtKeyUsage) {
			if ext != nil {
				return errors.New("TSA certificate has two extended key usage extensions")
			}
			ext = &cert.Extensions[i]
		}
	}
	if ext == nil {
		return errors.New("TSA certificate has no extended key usage; want timeStamping")
	}
	if !ext.Critical {
		return errors.New("TSA certificate's extended key usage is not marked critical")
	}
	var usages []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(ext.Value, &usages); err != nil || len(rest) != 0 {
		return errors.New("TSA certificate's extended key usage is malformed")
	}
	if len(usages) != 1 || !usages[0].Equal(oidKPTimeStamping) {
		return fmt.Errorf("TSA certificate's extended key usage is %v; want timeStamping alone", usages)
	}
	return nil
}

// checkESSSigningCertificate checks that the signed ESS signing-certificate
// attribute (RFC 2634 / RFC 5035) names signer, so a certificate swapped into
// the token cannot pass for the one the TSA meant.
func checkESSSigningCertificate(p7 *pkcs7.PKCS7, signer *x509.Certificate) error {
	var v2 signingCertificateV2
	if err := p7.UnmarshalSignedAttribute(oidSigningCertV2, &v2); err == nil {
		if len(v2.Certs) == 0 {
			return errors.New("ESS signing-certificate-v2 attribute names no certificate")
		}
		id := v2.Certs[0]
		h := crypto.SHA256
		if len(id.HashAlgorithm.Algorithm) != 0 {
			switch {
			case id.HashAlgorithm.Algorithm.Equal(oidSHA256):
			case id.HashAlgorithm.Algorithm.Equal(oidSHA384):
				h = crypto.SHA384
			case id.HashAlgorithm.Algorithm.Equal(oidSHA512):
				h = crypto.SHA512
			case id.HashAlgorithm.Algorithm.Equal(oidSHA1):
				h = crypto.SHA1
			default:
				return fmt.Errorf("ESS signing-certificate-v2 uses unknown hash %v", id.HashAlgorithm.Algorithm)
			}
		}
		if !bytes.Equal(id.CertHash, certHash(h, signer.Raw)) {
			return errors.New("ESS signing-certificate-v2 attribute does not name the signer certificate")
		}
		return nil
	}
	var v1 signingCertificate
	if err := p7.UnmarshalSignedAttribute(oidSigningCertificate, &v1); err == nil {
		if len(v1.Certs) == 0 {
			return errors.New("ESS signing-certificate attribute names no certificate")
		}
		if !bytes.Equal(v1.Certs[0].CertHash, certHash(crypto.SHA1, signer.Raw)) {
			return errors.New("ESS signing-certificate attribute does not name the signer certificate")
		}
		return nil
	}
	return errNoESSSigningCertKey
}

func certHash(h crypto.Hash, der []byte) []byte {
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(der) //nolint:gosec // see import
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(der)
		return s[:]
	case crypto.SHA512:
		s := sha512.Sum512(der)
		return s[:]
	default:
		s := sha256.Sum256(der)
		return s[:]
	}
}

// ParseRootsPEM returns a pool of the certificates in pemData, refusing data
// with no certificate or with anything but certificates in it.
func ParseRootsPEM(pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemData; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("TSA roots: data that is not PEM")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("TSA roots: PEM block %q; want CERTIFICATE", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("TSA roots: %w", err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("TSA roots: no certificate")
	}
	return pool, nil
}
