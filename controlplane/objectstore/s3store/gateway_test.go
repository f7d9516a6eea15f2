package s3store

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/toktra/toktra/controlplane/objectstore/s3store/s3test"
	"github.com/toktra/toktra/internal/clock"
)

var gateway *s3test.Gateway

func TestMain(m *testing.M) { s3test.Main(m, &gateway) }

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

func setup(t *testing.T, objectLock bool) fixture {
	t.Helper()
	bucket := gateway.NewBucket(t, objectLock)
	clk := clock.NewFake(time.Now())
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	st, err := Open(context.Background(), Config{
		Bucket: bucket, Region: gateway.Region, Endpoint: gateway.Endpoint, PathStyle: true,
		Credentials: gateway.Credentials(), HTTPClient: &http.Client{Transport: rec},
		Clock: clk, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return fixture{store: st, bucket: bucket, clock: clk, rec: rec, raw: gateway.Client()}
}

func fetch(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}
