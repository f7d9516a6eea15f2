package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/toktra/toktra/internal/clock"
)

func TestLocalTokensPassOpenSSL(t *testing.T) {
	t.Parallel()
	requireOpenSSL(t)
	l := newLocal(t)
	url := serve(t, l)
	c := newClient(t, ClientConfig{PrimaryURL: url, Roots: l.Roots()})
	for _, tc := range []struct {
		name string
		get  func(digest []byte) (*Token, error)
	}{
		{"client over http", func(d []byte) (*Token, error) { return c.Timestamp(context.Background(), d) }},
		{"in process", func(d []byte) (*Token, error) { return l.Timestamp(context.Background(), d) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			digest := digestOf("node " + tc.name)
			tok, err := tc.get(digest)
			if err != nil {
				t.Fatalf("Timestamp = %v", err)
			}
			if out, ok := opensslVerifyToken(t, tok.DER, digest, l.RootPEM()); !ok {
				t.Fatalf("openssl ts -verify refused a local token:\n%s", out)
			}
			if out, ok := opensslVerifyToken(t, tok.DER, digestOf("another node"), l.RootPEM()); ok {
				t.Fatalf("openssl ts -verify accepted the token for another digest:\n%s", out)
			}
			other := newLocal(t)
			if out, ok := opensslVerifyToken(t, tok.DER, digest, other.RootPEM()); ok {
				t.Fatalf("openssl ts -verify accepted the token under another root:\n%s", out)
			}
		})
	}
}

// TestOpenSSLClientAgainstLocal has openssl make the request and check the
// reply, so the local TSA is judged by an implementation that is not ours.
func TestOpenSSLClientAgainstLocal(t *testing.T) {
	t.Parallel()
	requireOpenSSL(t)
	l := newLocal(t)
	dir := t.TempDir()
	data := writeFile(t, dir, "evidence.txt", []byte("lockout of alice@example.com\n"))
	query := filepath.Join(dir, "q.tsq")
	if out, err := exec.Command("openssl", "ts", "-query", "-data", data, "-sha256", "-cert", "-out", query).CombinedOutput(); err != nil {
		t.Fatalf("openssl ts -query: %v\n%s", err, out)
	}
	q, err := os.ReadFile(query)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(serve(t, l), ContentTypeQuery, bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentTypeReply {
		t.Errorf("Content-Type = %q; want %q", ct, ContentTypeReply)
	}
	reply, _ := io.ReadAll(resp.Body)
	replyPath := writeFile(t, dir, "r.tsr", reply)
	ca := writeFile(t, dir, "root.pem", l.RootPEM())
	out, err := exec.Command("openssl", "ts", "-verify", "-data", data, "-in", replyPath, "-CAfile", ca).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl ts -verify -data refused the local reply: %v\n%s", err, out)
	}
	// -queryfile also checks that the nonce and imprint match the query.
	out, err = exec.Command("openssl", "ts", "-verify", "-queryfile", query, "-in", replyPath, "-CAfile", ca).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl ts -verify -queryfile refused the local reply: %v\n%s", err, out)
	}
	text, err := exec.Command("openssl", "ts", "-reply", "-in", replyPath, "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl ts -reply -text: %v\n%s", err, text)
	}
	for _, want := range []string{"Status: Granted.", "Policy OID: 1.3.6.1.4.1.32473.3161.1", "Accuracy: 0x01 seconds", "Nonce: 0x"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("openssl ts -reply -text lacks %q:\n%s", want, text)
		}
	}
}

func TestCertificateEKURules(t *testing.T) {
	t.Parallel()
	requireOpenSSL(t)
	ekuTS, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamping})
	ekuTwo, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamping, {1, 3, 6, 1, 5, 5, 7, 3, 1}})
	for _, tc := range []struct {
		name   string
		mutate func(*x509.Certificate)
		ok     bool
	}{
		{"critical timeStamping", nil, true},
		{"non-critical timeStamping", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: oidExtKeyUsage, Value: ekuTS}}
		}, false},
		{"no extended key usage", func(c *x509.Certificate) { c.ExtraExtensions = nil }, false},
		{"timeStamping and serverAuth", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: ekuTwo}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLocalWithSigner(t, tc.mutate)
			digest := digestOf(tc.name)
			resp, err := l.Respond(mustRequest(t, digest, big.NewInt(7)))
			if err != nil {
				t.Fatal(err)
			}
			der, err := ParseResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Verify(der, digest, l.Roots())
			if (err == nil) != tc.ok {
				t.Errorf("Verify(%s) = %v; want ok=%v", tc.name, err, tc.ok)
			}
			if out, ok := opensslVerifyToken(t, der, digest, l.RootPEM()); ok != tc.ok {
				t.Errorf("openssl ts -verify (%s) ok=%v; want %v:\n%s", tc.name, ok, tc.ok, out)
			}
		})
	}
}

func mustRequest(t *testing.T, digest []byte, nonce *big.Int) []byte {
	t.Helper()
	b, err := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Certificates: true, Nonce: nonce}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamperingTSA answers with the local TSA after changing the request, the
// way a broken or hostile TSA (or a man in the middle) would.
func tamperingTSA(l *Local, change func(*timestamp.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		change(req)
		req.ExtraExtensions = req.Extensions
		b, _ := req.Marshal()
		resp, err := l.Respond(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentTypeReply)
		w.Write(resp)
	})
}

func replyWith(status int, contentType string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		w.Write(body)
	})
}

func TestClientRefuses(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	untrusted := newLocal(t)
	nonCritical := newLocalWithSigner(t, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: oidExtKeyUsage, Value: oidExtKeyUsageTS}}
	})
	noEKU := newLocalWithSigner(t, func(c *x509.Certificate) { c.ExtraExtensions = nil })
	rejection, _ := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.SystemFailure)
	good, err := l.Respond(mustRequest(t, digestOf("x"), big.NewInt(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		handler http.Handler
		roots   *x509.CertPool
		want    error
		errText string
	}{
		{"wrong nonce", tamperingTSA(l, func(r *timestamp.Request) { r.Nonce = new(big.Int).Add(r.Nonce, big.NewInt(1)) }), nil, ErrVerify, "nonce"},
		{"nonce dropped", tamperingTSA(l, func(r *timestamp.Request) { r.Nonce = nil }), nil, ErrVerify, "omits the nonce"},
		{"wrong hash", tamperingTSA(l, func(r *timestamp.Request) { r.HashedMessage = digestOf("something else") }), nil, ErrVerify, "not"},
		{"no certificates", tamperingTSA(l, func(r *timestamp.Request) { r.Certificates = false }), nil, ErrVerify, "certificate"},
		{"untrusted chain", untrusted, nil, ErrVerify, "certificate"},
		{"non-critical EKU", nonCritical, nonCritical.Roots(), ErrVerify, "not marked critical"},
		{"missing EKU", noEKU, noEKU.Roots(), ErrVerify, "no extended key usage"},
		{"rejection status", replyWith(200, ContentTypeReply, rejection), nil, ErrVerify, "systemFailure"},
		{"oversized response", replyWith(200, ContentTypeReply, make([]byte, 200<<10)), nil, ErrResponseTooLarge, ""},
		{"html page", replyWith(200, "text/html", []byte("<html>throttled</html>")), nil, nil, "content type"},
		{"http 503", replyWith(503, "text/plain", nil), nil, nil, "503"},
		{"trailing data", replyWith(200, ContentTypeReply, append(bytes.Clone(good), 0)), nil, ErrVerify, "trailing"},
		{"garbage", replyWith(200, ContentTypeReply, []byte{0x30, 0x03, 0x02, 0x01}), nil, ErrVerify, ""},
		{"someone else's reply", replyWith(200, ContentTypeReply, good), nil, ErrVerify, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			roots := tc.roots
			if roots == nil {
				roots = l.Roots()
			}
			c := newClient(t, ClientConfig{PrimaryURL: serve(t, tc.handler), Roots: roots, MaxAttempts: 1})
			tok, err := c.Timestamp(context.Background(), digestOf("evidence"))
			if err == nil {
				t.Fatalf("Timestamp(%s) = token %v; want an error", tc.name, tok.Serial)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Timestamp(%s) = %v; want %v", tc.name, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("Timestamp(%s) = %v; want it to mention %q", tc.name, err, tc.errText)
			}
		})
	}
}

// countingHandler counts requests before passing them on.
type countingHandler struct {
	n atomic.Int32
	h http.Handler
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.h.ServeHTTP(w, r)
}

func TestClientFallsBack(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	for _, tc := range []struct {
		name    string
		primary http.Handler
	}{
		{"primary throttles", replyWith(http.StatusTooManyRequests, "text/plain", nil)},
		{"primary untrusted", newLocal(t)},
		{"primary refuses", replyWith(200, ContentTypeReply, mustErrorResponse(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			primary, fallback := &countingHandler{h: tc.primary}, &countingHandler{h: l}
			c := newClient(t, ClientConfig{PrimaryURL: serve(t, primary), FallbackURL: serve(t, fallback), Roots: l.Roots()})
			if _, err := c.Timestamp(context.Background(), digestOf("x")); err != nil {
				t.Fatalf("Timestamp = %v; want the fallback's token", err)
			}
			if p, f := primary.n.Load(), fallback.n.Load(); p != 1 || f != 1 {
				t.Errorf("requests primary=%d fallback=%d; want 1 and 1", p, f)
			}
		})
	}
}

func mustErrorResponse(t *testing.T) []byte {
	t.Helper()
	b, err := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.TimeNotAvailable)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientRetryBudget(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	primary := &countingHandler{h: replyWith(http.StatusServiceUnavailable, "text/plain", nil)}
	fallback := &countingHandler{h: replyWith(http.StatusServiceUnavailable, "text/plain", nil)}
	c := newClient(t, ClientConfig{PrimaryURL: serve(t, primary), FallbackURL: serve(t, fallback), Roots: l.Roots(), MaxAttempts: 5})
	if _, err := c.Timestamp(context.Background(), digestOf("x")); err == nil {
		t.Fatal("Timestamp with both TSAs down succeeded")
	}
	if p, f := primary.n.Load(), fallback.n.Load(); p != 3 || f != 2 {
		t.Errorf("requests primary=%d fallback=%d; want 3 and 2 (a budget of 5, alternating)", p, f)
	}

	// A primary that recovers is used again after the backoff.
	var calls atomic.Int32
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		l.ServeHTTP(w, r)
	})
	c = newClient(t, ClientConfig{PrimaryURL: serve(t, flaky), Roots: l.Roots(), MaxAttempts: 3})
	if _, err := c.Timestamp(context.Background(), digestOf("x")); err != nil {
		t.Fatalf("Timestamp with a recovering primary = %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("requests = %d; want 3", n)
	}
}

func TestClientStopsWithContext(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	down := replyWith(http.StatusServiceUnavailable, "text/plain", nil)
	c := newClient(t, ClientConfig{PrimaryURL: serve(t, down), Roots: l.Roots(), MaxAttempts: 100, BaseDelay: time.Hour, MaxDelay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Timestamp(ctx, digestOf("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Timestamp = %v; want context.DeadlineExceeded", err)
	}
}

func TestNewClientRefuses(t *testing.T) {
	t.Parallel()
	roots := x509.NewCertPool()
	for _, cfg := range []ClientConfig{
		{PrimaryURL: DigiCertURL},
		{PrimaryURL: "", Roots: roots},
		{PrimaryURL: "ftp://tsa.example", Roots: roots},
		{PrimaryURL: DigiCertURL, FallbackURL: "not a url", Roots: roots},
	} {
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("NewClient(%+v) = nil error; want one", cfg)
		}
	}
	pool, err := ParseRootsPEM(DigiCertRootPEM)
	if err != nil {
		t.Fatalf("ParseRootsPEM(DigiCertRootPEM) = %v", err)
	}
	if _, err := NewClient(ClientConfig{PrimaryURL: DigiCertURL, Roots: pool}); err != nil {
		t.Errorf("NewClient(DigiCert defaults) = %v", err)
	}
}

func TestLocalTokenFields(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	seen := map[string]bool{}
	for i := range 100 {
		digest := digestOf(string(rune(i)))
		before := time.Now().Add(-time.Second)
		tok, err := l.Timestamp(context.Background(), digest)
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.Serial.String()] {
			t.Fatalf("serial %v issued twice", tok.Serial)
		}
		seen[tok.Serial.String()] = true
		if !tok.Policy.Equal(LocalPolicyOID) {
			t.Errorf("Policy = %v; want %v", tok.Policy, LocalPolicyOID)
		}
		if tok.Accuracy != time.Second {
			t.Errorf("Accuracy = %v; want 1s", tok.Accuracy)
		}
		if tok.Time.Before(before) || tok.Time.After(time.Now()) {
			t.Errorf("Time = %v; want about now", tok.Time)
		}
		if !bytes.Equal(tok.Digest, digest) {
			t.Errorf("Digest = %x; want %x", tok.Digest, digest)
		}
		if tok.Nonce == nil {
			t.Error("Nonce = nil; want the request's nonce echoed")
		}
	}
}

func TestVerifyRefusesTamperedToken(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	digest := digestOf("x")
	tok, err := l.Timestamp(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(tok.DER, digest, l.Roots()); err != nil {
		t.Fatalf("Verify(untouched) = %v", err)
	}
	// Flip each byte in turn: a token that still verifies must attest the
	// same thing (CMS leaves some fields unsigned, such as the SignedData's
	// list of digest algorithms, so "verifies" alone is not the property).
	for i := range tok.DER {
		bad := bytes.Clone(tok.DER)
		bad[i] ^= 0x01
		got, err := Verify(bad, digest, l.Roots())
		if err != nil {
			continue
		}
		if !got.Time.Equal(tok.Time) || got.Serial.Cmp(tok.Serial) != 0 || !bytes.Equal(got.Digest, tok.Digest) ||
			!got.Policy.Equal(tok.Policy) || got.Nonce.Cmp(tok.Nonce) != 0 || !got.Signer.Equal(tok.Signer) {
			t.Fatalf("Verify(token with byte %d flipped) attests %+v; want an error or %+v", i, got, tok)
		}
	}
	if _, err := Verify(tok.DER, digest, nil); err == nil {
		t.Error("Verify with no roots = nil; want an error")
	}
	if _, err := Verify(tok.DER, digest[:20], l.Roots()); err == nil {
		t.Error("Verify with a short digest = nil; want an error")
	}
}

func TestLocalHandlerRejects(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	url := serve(t, l)
	sha1Req, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA1, HashedMessage: make([]byte, 20)}).Marshal()
	policyReq, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digestOf("x"), TSAPolicyOID: asn1.ObjectIdentifier{1, 2, 3}}).Marshal()
	shortReq, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: []byte{1, 2, 3}}).Marshal()
	for _, tc := range []struct {
		name        string
		method, ct  string
		body        []byte
		status      int
		failureName string
	}{
		{"GET", http.MethodGet, ContentTypeQuery, nil, http.StatusMethodNotAllowed, ""},
		{"wrong content type", http.MethodPost, "application/json", []byte("{}"), http.StatusUnsupportedMediaType, ""},
		{"too large", http.MethodPost, ContentTypeQuery, make([]byte, maxRequestSize+1), http.StatusRequestEntityTooLarge, ""},
		{"garbage", http.MethodPost, ContentTypeQuery, []byte("hello"), 200, "badDataFormat"},
		{"sha-1", http.MethodPost, ContentTypeQuery, sha1Req, 200, "badAlg"},
		{"foreign policy", http.MethodPost, ContentTypeQuery, policyReq, 200, "unacceptedPolicy"},
		{"short digest", http.MethodPost, ContentTypeQuery, shortReq, 200, "badDataFormat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tc.method, url, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tc.status)
			}
			if tc.failureName == "" {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			_, err = ParseResponse(body)
			if err == nil || !strings.Contains(err.Error(), tc.failureName) {
				t.Errorf("ParseResponse(reply to %s) = %v; want a rejection naming %s", tc.name, err, tc.failureName)
			}
		})
	}
}

func TestLoadOrCreateLocal(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tsa")
	clk := clock.NewFake(time.Now())
	first, err := LoadOrCreateLocal(dir, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{RootKeyFile, SignerKeyFile} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %#o; want 0600", f, info.Mode().Perm())
		}
	}
	again, err := LoadOrCreateLocal(dir, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.RootPEM(), first.RootPEM()) || !again.signer.Equal(first.signer) {
		t.Error("reloading made a new root or signer; want the stored ones")
	}

	// Five years on, the signer has less than signerMinRemaining left and
	// is replaced under the same root.
	clk.Advance(5 * 365 * 24 * time.Hour)
	later, err := LoadOrCreateLocal(dir, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(later.RootPEM(), first.RootPEM()) {
		t.Error("root changed when the signer was renewed")
	}
	if later.signer.Equal(first.signer) {
		t.Error("signer near expiry was not renewed")
	}
	if err := later.signer.CheckSignatureFrom(first.root); err != nil {
		t.Errorf("renewed signer does not chain to the root: %v", err)
	}

	if err := os.Chmod(filepath.Join(dir, RootKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateLocal(dir, clk, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadOrCreateLocal with a readable root key = %v; want a refusal", err)
	}
	if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateLocal(dir, clk, nil); err == nil {
		t.Error("LoadOrCreateLocal with the root key missing = nil; want a refusal (tokens chain to that root)")
	}
}

func TestServeLoopback(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	srv, err := ServeLoopback(l)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Errorf("URL() = %q; want a loopback URL", srv.URL())
	}
	c := newClient(t, ClientConfig{PrimaryURL: srv.URL(), Roots: l.Roots()})
	if _, err := c.Timestamp(context.Background(), digestOf("x")); err != nil {
		t.Errorf("Timestamp via loopback = %v", err)
	}
}
