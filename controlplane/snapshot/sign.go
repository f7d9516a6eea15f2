package snapshot

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/digitorus/pdf"
	"github.com/digitorus/pdfsign/sign"
	"github.com/digitorus/pdfsign/verify"
	"github.com/digitorus/timestamp"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/toktra/toktra/controlplane/tsa"
)

// Timestamper obtains a verified RFC 3161 time-stamp token over a SHA-256
// digest: *tsa.Client (remote TSAs, with its nonce, imprint and chain
// checks, fallback and backoff) and *tsa.Local (the embedded TSA) are both
// one.
type Timestamper interface {
	Timestamp(ctx context.Context, digest []byte) (*tsa.Token, error)
}

// Signer is what Sign signs with: the evidence key, its certificate chain
// (leaf first, then the CA: see pki.EvidenceSigner), and the time-stamping
// authority that timestamps the signature.
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
	// TSA timestamps the signature value; required.
	TSA Timestamper
	// Reason is the signature's stated reason (optional).
	Reason string
}

// maxTimestampRequest bounds the request pdfsign sends to the relay; an
// RFC 3161 request for a SHA-256 digest is under a hundred bytes.
const maxTimestampRequest = 16 << 10

// Sign signs pdf as a certification signature that allows no later change
// (DocMDP P=1), with the signer's certificate chain and an RFC 3161
// signature timestamp (id-aa-timeStampToken over the signature value)
// embedded, so that pdfsig or Acrobat report any changed byte. It then
// checks its own output: the signature must verify and the timestamp must
// cover it.
//
// The signature is not deterministic (ECDSA, the TSA's time); the PDF
// rendered before it is.
func Sign(ctx context.Context, doc []byte, s Signer) ([]byte, error) {
	if s.Key == nil || len(s.Chain) == 0 || s.Chain[0] == nil {
		return nil, errors.New("signing snapshot: key and certificate chain are required")
	}
	if s.TSA == nil {
		return nil, errors.New("signing snapshot: a timestamp authority is required")
	}
	if pub, ok := s.Chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(s.Key.Public()) {
		return nil, errors.New("signing snapshot: the key does not match the certificate")
	}
	rdr, err := pdf.NewReader(bytes.NewReader(doc), int64(len(doc)))
	if err != nil {
		return nil, fmt.Errorf("signing snapshot: reading pdf: %w", err)
	}

	relay, err := startTimestampRelay(ctx, s.TSA)
	if err != nil {
		return nil, fmt.Errorf("signing snapshot: %w", err)
	}
	defer relay.close()

	reason := s.Reason
	if reason == "" {
		reason = "Toktra audit snapshot"
	}
	var out bytes.Buffer
	err = sign.Sign(bytes.NewReader(doc), &out, rdr, int64(len(doc)), sign.SignData{
		Signature: sign.SignDataSignature{
			CertType:   sign.CertificationSignature,
			DocMDPPerm: sign.DoNotAllowAnyChangesPerms,
			Info: sign.SignDataSignatureInfo{
				Name:   s.Chain[0].Subject.CommonName,
				Reason: reason,
			},
		},
		Signer:            s.Key,
		DigestAlgorithm:   crypto.SHA256,
		Certificate:       s.Chain[0],
		CertificateChains: [][]*x509.Certificate{s.Chain},
		TSA:               sign.TSA{URL: relay.url},
	})
	if tsErr := relay.err(); tsErr != nil {
		return nil, fmt.Errorf("signing snapshot: timestamping the signature: %w", tsErr)
	}
	if err != nil {
		return nil, fmt.Errorf("signing snapshot: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signing snapshot: %w", err)
	}
	signed := out.Bytes()
	if err := checkSigned(signed); err != nil {
		return nil, fmt.Errorf("signing snapshot: checking the signed pdf: %w", err)
	}
	return signed, nil
}

// checkSigned verifies the one signature in a signed PDF and that its
// timestamp covers the signature value; trust in the chain is the reader's
// business (pdfsig with the org's root, toktractl verify).
func checkSigned(doc []byte) error {
	opts := verify.DefaultVerifyOptions()
	opts.EnableExternalRevocationCheck = false
	resp, err := verify.VerifyWithOptions(bytes.NewReader(doc), int64(len(doc)), opts)
	if err != nil {
		return err
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	if len(resp.Signers) != 1 {
		return fmt.Errorf("%d signatures; want 1", len(resp.Signers))
	}
	sg := resp.Signers[0]
	if !sg.ValidSignature {
		return errors.New("the signature does not verify")
	}
	if sg.TimeStamp == nil {
		return errors.New("the signature has no timestamp")
	}
	return nil
}

// SHA256 returns the hex SHA-256 of a PDF: what the pipeline timestamps on
// its own and stores beside it.
func SHA256(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// timestampRelay serves pdfsign's RFC 3161 request on loopback and answers
// it through a Timestamper. pdfsign can only POST to a URL with its own
// http.Client (no context, no timeout, no response checks); the relay gives
// the request the caller's context and the TSA client's checks (and its
// fallback and backoff), and keeps the real TSA's error for the caller.
type timestampRelay struct {
	url    string
	srv    *http.Server
	mu     sync.Mutex
	tsErr  error
	served bool
}

func startTimestampRelay(ctx context.Context, ts Timestamper) (*timestampRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting timestamp relay: %w", err)
	}
	// An unguessable path: nothing else on the machine gets a timestamp
	// through the relay while it is up.
	var secret [16]byte
	if _, err := rand.Read(secret[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("starting timestamp relay: %w", err)
	}
	path := "/" + hex.EncodeToString(secret[:])
	r := &timestampRelay{url: "http://" + ln.Addr().String() + path}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, req *http.Request) {
		token, err := r.timestamp(ctx, req, ts)
		if err != nil {
			r.mu.Lock()
			r.tsErr = err
			r.mu.Unlock()
			http.Error(w, "timestamp failed", http.StatusBadGateway)
			return
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // TimeStampResp
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // PKIStatusInfo
				b.AddASN1Int64(0) // granted
			})
			b.AddBytes(token)
		})
		resp, err := b.Bytes()
		if err != nil {
			http.Error(w, "encoding response", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(resp)
	})
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *timestampRelay) timestamp(ctx context.Context, req *http.Request, ts Timestamper) ([]byte, error) {
	r.mu.Lock()
	again := r.served
	r.served = true
	r.mu.Unlock()
	if again {
		// pdfsign asks once per signature; a second request is not ours.
		return nil, errors.New("unexpected second timestamp request")
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxTimestampRequest+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(body) > maxTimestampRequest {
		return nil, errors.New("request too large")
	}
	tsReq, err := timestamp.ParseRequest(body)
	if err != nil {
		return nil, fmt.Errorf("parsing the request: %w", err)
	}
	if tsReq.HashAlgorithm != crypto.SHA256 || len(tsReq.HashedMessage) != sha256.Size {
		return nil, fmt.Errorf("request is for a %v digest; want SHA-256", tsReq.HashAlgorithm)
	}
	token, err := ts.Timestamp(ctx, tsReq.HashedMessage)
	if err != nil {
		return nil, err
	}
	if token == nil || len(token.DER) == 0 {
		return nil, errors.New("the timestamp authority returned an empty token")
	}
	return token.DER, nil
}

func (r *timestampRelay) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tsErr
}

func (r *timestampRelay) close() { r.srv.Close() }
