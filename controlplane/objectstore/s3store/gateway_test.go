package s3store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/internal/clock"
)

// The S3 server the tests run against: versitygw in this process, with its
// posix backend and a versioning directory (Object Lock needs versions).
// One gateway per test binary (embedgw allows one per process); each test
// makes its own bucket.
var gateway struct {
	endpoint       string
	access, secret string
	region         string
}

func TestMain(m *testing.M) {
	code, err := runWithGateway(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3store tests: starting the S3 gateway:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithGateway(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "toktra-s3store-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	data, versions := filepath.Join(dir, "data"), filepath.Join(dir, "versions")
	for _, d := range []string{data, versions} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return 0, err
		}
	}
	if err := (meta.XattrMeta{}).Test(data); err != nil {
		return 0, fmt.Errorf("the gateway keeps metadata in xattrs, which %s lacks: %w", data, err)
	}
	// posix.New changes the working directory to data; nothing in this
	// package reads relative paths.
	be, err := posix.New(data, meta.XattrMeta{}, posix.PosixOpts{VersioningDir: versions, Concurrency: 256})
	if err != nil {
		return 0, err
	}
	gateway.access, gateway.secret, gateway.region = "toktra-test", randomHex(16), "us-east-1"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addr string
	var errc chan error
	// The port is picked free and handed over, so another process could
	// take it in between; then the gateway fails at once and we pick again.
	for range 5 {
		addr, err = freeAddr()
		if err != nil {
			return 0, err
		}
		errc = make(chan error, 1)
		go func() {
			errc <- embedgw.RunVersityGW(ctx, be, &embedgw.Config{
				RootUserAccess: gateway.access, RootUserSecret: gateway.secret, Region: gateway.region,
				Ports: []string{addr}, MaxConnections: 1024, MaxRequests: 1024, MultipartMaxParts: 10000,
				Quiet: true, KeepAlive: true,
			})
		}()
		if err = waitListening(addr, errc); err == nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	gateway.endpoint = "http://" + addr
	code := m.Run()
	cancel()
	if err := <-errc; err != nil && ctx.Err() == nil {
		return code, err
	}
	return code, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(addr string, errc <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			return fmt.Errorf("gateway stopped: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("gateway not listening on %s after 20s", addr)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder keeps the headers of every request the SDK sends, so tests
// assert what goes on the wire (the test server does not insist on a
// checksum as AWS does).
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

// find returns the recorded requests with this method whose path ends in suffix.
func (r *recorder) find(method, suffix string) []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*http.Request
	for _, q := range r.reqs {
		if q.Method == method && strings.HasSuffix(q.URL.Path, suffix) {
			out = append(out, q)
		}
	}
	return out
}

type fixture struct {
	store  *Store
	bucket string
	clock  *clock.Fake
	rec    *recorder
	raw    *s3.Client // the same server, bypassing the store
}

func credentialsProvider() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(gateway.access, gateway.secret, "")
}

func rawClient() *s3.Client {
	return s3.New(s3.Options{
		Region: gateway.region, Credentials: credentialsProvider(), BaseEndpoint: aws.String(gateway.endpoint), UsePathStyle: true,
	})
}

// newBucket creates a bucket for one test, with Object Lock unless told.
func newBucket(t *testing.T, objectLock bool) string {
	t.Helper()
	name := "toktra-" + randomHex(8)
	_, err := rawClient().CreateBucket(context.Background(), &s3.CreateBucketInput{
		Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(objectLock),
	})
	if err != nil {
		t.Fatalf("CreateBucket(%s, object lock %v) = %v", name, objectLock, err)
	}
	return name
}

func setup(t *testing.T, objectLock bool) fixture {
	t.Helper()
	return setupWithClock(t, objectLock, clock.NewFake(time.Now()))
}

func setupWithClock(t *testing.T, objectLock bool, clk *clock.Fake) fixture {
	t.Helper()
	bucket := newBucket(t, objectLock)
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	st, err := Open(context.Background(), Config{
		Bucket: bucket, Region: gateway.region, Endpoint: gateway.endpoint, PathStyle: true,
		Credentials: credentialsProvider(), HTTPClient: &http.Client{Transport: rec},
		Clock: clk, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return fixture{store: st, bucket: bucket, clock: clk, rec: rec, raw: rawClient()}
}

func fetch(ctx context.Context, u string) (*http.Response, error) {
	if _, err := url.Parse(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

var _ objectstore.Store = (*Store)(nil)
