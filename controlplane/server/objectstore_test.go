package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/objectstore/s3store/s3test"
	"github.com/toktra/toktra/internal/clock"
)

var gateway *s3test.Gateway

func TestMain(m *testing.M) { s3test.Main(m, &gateway) }

func testConfig(t *testing.T, ev EvidenceConfig) Config {
	t.Helper()
	return Config{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", AgentAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
		TLSHosts: []string{"127.0.0.1"}, Evidence: ev, Logger: slog.New(slog.DiscardHandler), Clock: clock.Real{},
	}
}

// s3Env gives the server's default AWS credential chain the gateway's keys.
func s3Env(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", gateway.Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", gateway.Secret)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

// run runs the server until it is ready (then stops it) or fails.
func run(t *testing.T, cfg Config) (ready bool, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := Open(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer srv.Close()
	err = srv.Run(ctx, func(Addrs) { ready = true; cancel() })
	return ready, err
}

func TestRunRefusesBucketWithoutObjectLock(t *testing.T) {
	s3Env(t)
	ev := EvidenceConfig{Store: EvidenceS3, S3Bucket: gateway.NewBucket(t, false), S3Region: gateway.Region, S3Endpoint: gateway.Endpoint, S3PathStyle: true}
	ready, err := run(t, testConfig(t, ev))
	if ready || !errors.Is(err, objectstore.ErrNotWriteOnce) {
		t.Errorf("Run(bucket without object lock) = ready %v, %v; want refused with ErrNotWriteOnce", ready, err)
	}
}

func TestRunAcceptsObjectLockBucket(t *testing.T) {
	s3Env(t)
	ev := EvidenceConfig{Store: EvidenceS3, S3Bucket: gateway.NewBucket(t, true), S3Region: gateway.Region, S3Endpoint: gateway.Endpoint, S3PathStyle: true}
	ready, err := run(t, testConfig(t, ev))
	if !ready || err != nil {
		t.Errorf("Run(object lock bucket) = ready %v, %v; want ready", ready, err)
	}
}

func TestOpenRefusesUnknownEvidenceStore(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), testConfig(t, EvidenceConfig{Store: "tape"}))
	if err == nil || !strings.Contains(err.Error(), "tape") {
		t.Errorf("Open(evidence store tape) = %v; want an error naming it", err)
	}
}

// TestLocalEvidenceServedByAPI: the embedded default's presigned URL is
// served by the admin API's handler, without an API key.
func TestLocalEvidenceServedByAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, err := Open(ctx, testConfig(t, EvidenceConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.checkEvidenceStore(ctx); err != nil {
		t.Fatalf("checkEvidenceStore(local) = %v", err)
	}
	k, err := objectstore.SnapshotKey("org1", "lockout1", "snap1")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := srv.Objects().Put(ctx, objectstore.PutParams{Key: k, Body: []byte("%PDF-1.7"), ContentType: "application/pdf"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Objects().PresignGet(ctx, obj.Key, obj.VersionID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.api)
	defer api.Close()
	for _, tt := range []struct {
		url      string
		wantCode int
		wantBody string
	}{
		{u, http.StatusOK, "%PDF-1.7"},
		{strings.Replace(u, "signature=", "signature=x", 1), http.StatusForbidden, ""},
	} {
		resp, err := http.Get(api.URL + tt.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantCode || (tt.wantBody != "" && string(body) != tt.wantBody) {
			t.Errorf("GET %s = %d %q; want %d %q", tt.url, resp.StatusCode, body, tt.wantCode, tt.wantBody)
		}
	}
}
