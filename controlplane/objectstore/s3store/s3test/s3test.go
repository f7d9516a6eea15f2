// Package s3test runs a real S3 server with Object Lock for tests:
// versitygw in this process, with its posix backend and a versioning
// directory, listening on loopback. One gateway per test binary (versitygw
// allows one per process); each test makes its own bucket.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
)

// Gateway is a running S3 server.
type Gateway struct {
	// Endpoint is its base URL, http://127.0.0.1:port; address buckets
	// path-style.
	Endpoint string
	// Access and Secret are the root user's keys.
	Access, Secret string
	Region         string
}

// Main starts the gateway, runs the package's tests and exits; call it
// from TestMain. *g is set before the tests run.
//
// The posix backend changes the process's working directory to its data
// directory, so tests of a package using this must not read relative
// paths (testdata) afterwards.
func Main(m *testing.M, g **Gateway) {
	code, err := run(m, g)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the S3 gateway:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M, gp **Gateway) (int, error) {
	dir, err := os.MkdirTemp("", "toktra-s3test-")
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
	be, err := posix.New(data, meta.XattrMeta{}, posix.PosixOpts{VersioningDir: versions, Concurrency: 256})
	if err != nil {
		return 0, err
	}
	g := &Gateway{Access: "toktra-test", Secret: randomHex(16), Region: "us-east-1"}

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
				RootUserAccess: g.Access, RootUserSecret: g.Secret, Region: g.Region,
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
	g.Endpoint = "http://" + addr
	*gp = g
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

// Credentials are the root user's, for an SDK client.
func (g *Gateway) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(g.Access, g.Secret, "")
}

// Client is a plain S3 client of the gateway, bypassing any store.
func (g *Gateway) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: g.Region, Credentials: g.Credentials(), BaseEndpoint: aws.String(g.Endpoint), UsePathStyle: true,
	})
}

// NewBucket creates a bucket with a fresh name, with Object Lock (and so
// versioning) enabled unless objectLock is false.
func (g *Gateway) NewBucket(t testing.TB, objectLock bool) string {
	t.Helper()
	name := "toktra-" + randomHex(8)
	_, err := g.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{
		Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(objectLock),
	})
	if err != nil {
		t.Fatalf("CreateBucket(%s, object lock %v) = %v", name, objectLock, err)
	}
	return name
}

// Env is the environment for a CLI client (awscli) of the gateway that
// ignores the user's own AWS configuration.
func (g *Gateway) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + g.Access, "AWS_SECRET_ACCESS_KEY=" + g.Secret, "AWS_DEFAULT_REGION=" + g.Region,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
	}
}
