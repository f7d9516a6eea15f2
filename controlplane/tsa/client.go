package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/digitorus/timestamp"
)

// DigiCertURL is DigiCert's public RFC 3161 TSA, the production default.
const DigiCertURL = "http://timestamp.digicert.com"

// DigiCertRootPEM is DigiCert Trusted Root G4, the root DigiCert's public
// TSA chains to (from Debian's ca-certificates; SHA-256 fingerprint
// 55:2F:7B:DC:F1:A7:AF:9E:6C:E6:72:01:7F:4F:12:AB:F7:72:40:C7:8E:76:1A:C2:03:D1:D9:D2:0A:C8:99:88).
//
//go:embed roots/digicert-trusted-root-g4.pem
var DigiCertRootPEM []byte

const (
	// ContentTypeQuery is the media type of an RFC 3161 request over HTTP
	// (RFC 3161 section 3.4).
	ContentTypeQuery = "application/timestamp-query"
	// ContentTypeReply is the media type of an RFC 3161 response over HTTP.
	ContentTypeReply = "application/timestamp-reply"

	defaultMaxAttempts     = 6
	defaultBaseDelay       = 500 * time.Millisecond
	defaultMaxDelay        = 10 * time.Second
	defaultAttemptTimeout  = 15 * time.Second
	defaultMaxResponseSize = 64 << 10
)

// ErrResponseTooLarge is returned (wrapped) for a response over the client's
// size bound.
var ErrResponseTooLarge = errors.New("time-stamp response too large")

// ClientConfig configures a Client.
type ClientConfig struct {
	// PrimaryURL is the TSA asked first (DigiCertURL in production).
	PrimaryURL string
	// FallbackURL, if set, is asked when the primary fails; attempts
	// alternate between the two.
	FallbackURL string
	// Roots are the TSA roots tokens must chain to; required.
	Roots *x509.CertPool
	// HTTPClient makes the requests; nil means a client with no overall
	// timeout (each attempt is bounded by AttemptTimeout).
	HTTPClient *http.Client
	// MaxAttempts is the retry budget across both TSAs for one Timestamp
	// call (default 6).
	MaxAttempts int
	// BaseDelay and MaxDelay shape the full-jitter exponential backoff
	// between rounds (defaults 500ms and 10s). A Retry-After header from a
	// throttling TSA is honoured up to MaxDelay.
	BaseDelay, MaxDelay time.Duration
	// AttemptTimeout bounds one HTTP exchange (default 15s).
	AttemptTimeout time.Duration
	// MaxResponseSize bounds a response body (default 64 KiB).
	MaxResponseSize int64
	// Logger receives one line per failed attempt; nil discards.
	Logger *slog.Logger
}

// Client obtains verified time-stamp tokens from remote TSAs. It is safe for
// concurrent use.
type Client struct {
	cfg       ClientConfig
	endpoints []string
	http      *http.Client
	log       *slog.Logger
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Roots == nil {
		return nil, errors.New("tsa client: no trusted TSA roots configured")
	}
	endpoints := []string{cfg.PrimaryURL}
	if cfg.FallbackURL != "" {
		endpoints = append(endpoints, cfg.FallbackURL)
	}
	for _, u := range endpoints {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("tsa client: TSA URL %q is not an http(s) URL", u)
		}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = defaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = defaultMaxDelay
	}
	if cfg.MaxDelay < cfg.BaseDelay {
		cfg.MaxDelay = cfg.BaseDelay
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = defaultAttemptTimeout
	}
	if cfg.MaxResponseSize <= 0 {
		cfg.MaxResponseSize = defaultMaxResponseSize
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, endpoints: endpoints, http: hc, log: log}, nil
}

// TimestampData time-stamps the SHA-256 digest of data.
func (c *Client) TimestampData(ctx context.Context, data []byte) (*Token, error) {
	d := sha256.Sum256(data)
	return c.Timestamp(ctx, d[:])
}

// Timestamp obtains a verified token over digest, a SHA-256 digest, trying
// the primary TSA, then the fallback, then backing off and trying again until
// the retry budget or ctx runs out.
func (c *Client) Timestamp(ctx context.Context, digest []byte) (*Token, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("time-stamping: digest is %d bytes; want a %d-byte SHA-256 digest", len(digest), sha256.Size)
	}
	var errs []error
	var retryAfter time.Duration
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		if attempt > 0 && attempt%len(c.endpoints) == 0 {
			round := attempt / len(c.endpoints)
			if err := sleep(ctx, c.backoff(round, retryAfter)); err != nil {
				return nil, fmt.Errorf("time-stamping: %w (after %w)", err, errors.Join(errs...))
			}
			retryAfter = 0
		}
		endpoint := c.endpoints[attempt%len(c.endpoints)]
		tok, ra, err := c.attempt(ctx, endpoint, digest)
		if err == nil {
			return tok, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("time-stamping: %w (after %w)", ctx.Err(), errors.Join(append(errs, err)...))
		}
		retryAfter = max(retryAfter, ra)
		c.log.Warn("time-stamp attempt failed", "tsa", endpoint, "attempt", attempt+1, "budget", c.cfg.MaxAttempts, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", endpoint, err))
	}
	return nil, fmt.Errorf("time-stamping: %d attempts failed: %w", c.cfg.MaxAttempts, errors.Join(errs...))
}

// backoff is a full-jitter exponential delay for round (1, 2, ...), never
// shorter than a TSA's Retry-After, never longer than MaxDelay.
func (c *Client) backoff(round int, retryAfter time.Duration) time.Duration {
	ceiling := c.cfg.BaseDelay << min(round-1, 20)
	if ceiling <= 0 || ceiling > c.cfg.MaxDelay {
		ceiling = c.cfg.MaxDelay
	}
	d := mrand.N(ceiling) + 1
	if retryAfter > d {
		d = min(retryAfter, c.cfg.MaxDelay)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt makes one request to endpoint; it returns the Retry-After the TSA
// asked for, if any, with its error.
func (c *Client) attempt(ctx context.Context, endpoint string, digest []byte) (*Token, time.Duration, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, 0, fmt.Errorf("making nonce: %w", err)
	}
	req := timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}
	body, err := req.Marshal()
	if err != nil {
		return nil, 0, fmt.Errorf("encoding request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	hreq.Header.Set("Content-Type", ContentTypeQuery)
	hreq.Header.Set("Accept", ContentTypeReply)
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("HTTP status %s", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil ||
		(mt != ContentTypeReply && mt != "application/timestamp-response") {
		return nil, 0, fmt.Errorf("response content type %q; want %s", resp.Header.Get("Content-Type"), ContentTypeReply)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading response: %w", err)
	}
	if int64(len(data)) > c.cfg.MaxResponseSize {
		return nil, 0, fmt.Errorf("%w: over %d bytes", ErrResponseTooLarge, c.cfg.MaxResponseSize)
	}
	tok, err := VerifyResponse(data, digest, nonce, c.cfg.Roots)
	return tok, 0, err
}

// parseRetryAfter reads a Retry-After header in seconds; dates and garbage
// count as none.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, 3600)) * time.Second
}

// pkiStatusInfo and timeStampResp decode an RFC 3161 TimeStampResp.
type pkiStatusInfo struct {
	Status       int
	StatusString []string       `asn1:"optional,utf8"`
	FailInfo     asn1.BitString `asn1:"optional"`
}

type timeStampResp struct {
	Status         pkiStatusInfo
	TimeStampToken asn1.RawValue `asn1:"optional"`
}

// failureNames are RFC 3161's PKIFailureInfo bits.
var failureNames = map[int]string{
	0: "badAlg", 2: "badRequest", 5: "badDataFormat", 14: "timeNotAvailable",
	15: "unacceptedPolicy", 16: "unacceptedExtension", 17: "addInfoNotAvailable", 25: "systemFailure",
}

// ParseResponse decodes a DER TimeStampResp, refuses any status but granted
// (0) or grantedWithMods (1), and returns the token it carries, unverified.
func ParseResponse(data []byte) ([]byte, error) {
	if len(data) > MaxTokenSize+4<<10 {
		return nil, fmt.Errorf("%w: %d bytes", ErrResponseTooLarge, len(data))
	}
	var resp timeStampResp
	rest, err := asn1.Unmarshal(data, &resp)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing response: %v", ErrVerify, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing data after response", ErrVerify)
	}
	if s := resp.Status.Status; s != 0 && s != 1 {
		var fails []string
		for bit, name := range failureNames {
			if resp.Status.FailInfo.At(bit) == 1 {
				fails = append(fails, name)
			}
		}
		return nil, fmt.Errorf("%w: TSA refused: status %d (%s) %s %s", ErrVerify, s, timestamp.Status(s),
			strings.Join(fails, ","), strings.Join(resp.Status.StatusString, "; "))
	}
	if len(resp.TimeStampToken.FullBytes) == 0 {
		return nil, fmt.Errorf("%w: granted response carries no token", ErrVerify)
	}
	return resp.TimeStampToken.FullBytes, nil
}

// VerifyResponse checks a DER TimeStampResp received for a request over
// digest with nonce (nil: none sent) and returns its verified token.
func VerifyResponse(data, digest []byte, nonce *big.Int, roots *x509.CertPool) (*Token, error) {
	der, err := ParseResponse(data)
	if err != nil {
		return nil, err
	}
	tok, err := Verify(der, digest, roots)
	if err != nil {
		return nil, err
	}
	switch {
	case nonce == nil:
	case tok.Nonce == nil:
		return nil, fmt.Errorf("%w: response omits the nonce sent", ErrVerify)
	case tok.Nonce.Cmp(nonce) != 0:
		return nil, fmt.Errorf("%w: response nonce %v does not match the nonce sent", ErrVerify, tok.Nonce)
	}
	return tok, nil
}
