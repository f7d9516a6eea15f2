// Package objectstoretest is the conformance suite every objectstore.Store
// backend runs, so the S3 and local stores keep the same promises: no
// overwrite, no delete before retain-until, retention and SHA-256 recorded,
// presigned URLs that serve one exact version.
package objectstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/internal/clock"
)

// Subject is one fresh, empty store under test.
type Subject struct {
	Store objectstore.Store
	// Clock is the store's clock; retain-until times derive from it.
	Clock *clock.Fake
	// Retention is the store's configured retention.
	Retention objectstore.Period
	// Mode is the Mode the backend reports.
	Mode string
	// Fetch GETs a URL PresignGet returned.
	Fetch func(ctx context.Context, url string) (*http.Response, error)
	// MovesTime is true when advancing Clock also moves the time the
	// backend enforces retention and URL expiry by (the local store);
	// false for a real server, whose tests of expiry live beside it.
	MovesTime bool
}

// Exercise runs the suite; open returns a fresh store for each subtest and
// closes it with t.Cleanup.
func Exercise(t *testing.T, open func(t *testing.T) Subject) {
	tests := []struct {
		name string
		run  func(t *testing.T, s Subject)
	}{
		{"PutGetStat", testPutGetStat},
		{"RetentionNeverShorterThanOrgMinimum", testOrgMinimum},
		{"NoOverwrite", testNoOverwrite},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ChecksumMismatch", testChecksumMismatch},
		{"InvalidKeys", testInvalidKeys},
		{"NotFound", testNotFound},
		{"DeleteRefusedBeforeRetainUntil", testDeleteRefused},
		{"DeleteAfterRetainUntil", testDeleteAfter},
		{"PresignGet", testPresignGet},
		{"PresignExpires", testPresignExpires},
		{"CheckWriteOnce", testCheckWriteOnce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

func key(t *testing.T, name string) string {
	k, err := objectstore.SnapshotKey("org-a", "lockout-1", name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func put(t *testing.T, s Subject, p objectstore.PutParams) objectstore.Object {
	t.Helper()
	obj, err := s.Store.Put(context.Background(), p)
	if err != nil {
		t.Fatalf("Put(%s) = %v; want nil", p.Key, err)
	}
	return obj
}

func read(t *testing.T, s Subject, key, version string) ([]byte, objectstore.Object) {
	t.Helper()
	rc, obj, err := s.Store.Get(context.Background(), key, version)
	if err != nil {
		t.Fatalf("Get(%s, %q) = %v; want nil", key, version, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading Get(%s, %q) = %v; want nil", key, version, err)
	}
	return b, obj
}

func testPutGetStat(t *testing.T, s Subject) {
	ctx := context.Background()
	body := []byte("%PDF-1.7 snapshot")
	k := key(t, "s1")
	now := s.Clock.Now()
	obj := put(t, s, objectstore.PutParams{Key: k, Body: body, SHA256: objectstore.Sum(body), ContentType: "application/pdf"})
	want := objectstore.Object{
		Key: k, VersionID: obj.VersionID, SHA256: objectstore.Sum(body), Size: int64(len(body)), ContentType: "application/pdf",
		RetainUntil: objectstore.RetainUntil(now, s.Retention, objectstore.Period{}), Mode: s.Mode,
	}
	if obj.VersionID == "" {
		t.Errorf("Put(%s).VersionID = empty; want the stored version", k)
	}
	if !sameObject(obj, want) {
		t.Errorf("Put(%s) = %+v; want %+v", k, obj, want)
	}
	got, gobj := read(t, s, k, obj.VersionID)
	if !bytes.Equal(got, body) || !sameObject(gobj, want) {
		t.Errorf("Get(%s, %s) = %q, %+v; want %q, %+v", k, obj.VersionID, got, gobj, body, want)
	}
	if got, _ := read(t, s, k, ""); !bytes.Equal(got, body) {
		t.Errorf("Get(%s, current) = %q; want %q", k, got, body)
	}
	st, err := s.Store.Stat(ctx, k, obj.VersionID)
	if err != nil || !sameObject(st, want) {
		t.Errorf("Stat(%s, %s) = %+v, %v; want %+v", k, obj.VersionID, st, err, want)
	}
	// Without a given hash the store computes it.
	k2 := key(t, "s2")
	obj2 := put(t, s, objectstore.PutParams{Key: k2, Body: body})
	if obj2.SHA256 != objectstore.Sum(body) {
		t.Errorf("Put(%s, no sha).SHA256 = %s; want %s", k2, obj2.SHA256, objectstore.Sum(body))
	}
}

// sameObject compares ignoring the retain-until time's location.
func sameObject(a, b objectstore.Object) bool {
	ra, rb := a.RetainUntil, b.RetainUntil
	a.RetainUntil, b.RetainUntil = time.Time{}, time.Time{}
	return a == b && ra.Equal(rb)
}

func testOrgMinimum(t *testing.T, s Subject) {
	body := []byte("x")
	longer := objectstore.Period{Years: s.Retention.Years + 3, Days: s.Retention.Days}
	shorter := objectstore.Period{Days: 1}
	for _, tt := range []struct {
		name   string
		orgMin objectstore.Period
		want   objectstore.Period
	}{
		{"longer", longer, longer},
		{"shorter", shorter, s.Retention},
	} {
		now := s.Clock.Now()
		k := key(t, "min-"+tt.name)
		obj := put(t, s, objectstore.PutParams{Key: k, Body: body, MinRetention: tt.orgMin})
		want := objectstore.RetainUntil(now, tt.want, objectstore.Period{})
		if !obj.RetainUntil.Equal(want) {
			t.Errorf("Put(MinRetention %v).RetainUntil = %v; want %v", tt.orgMin, obj.RetainUntil, want)
		}
		st, err := s.Store.Stat(context.Background(), k, obj.VersionID)
		if err != nil || !st.RetainUntil.Equal(want) {
			t.Errorf("Stat(MinRetention %v).RetainUntil = %v, %v; want %v", tt.orgMin, st.RetainUntil, err, want)
		}
	}
	_, err := s.Store.Put(context.Background(), objectstore.PutParams{Key: key(t, "min-bad"), Body: body, MinRetention: objectstore.Period{Days: -1}})
	if err == nil {
		t.Error("Put(MinRetention -1d) = nil error; want an error")
	}
}

func testNoOverwrite(t *testing.T, s Subject) {
	ctx := context.Background()
	k := key(t, "s1")
	first := []byte("first")
	obj := put(t, s, objectstore.PutParams{Key: k, Body: first, ContentType: "application/pdf"})

	_, err := s.Store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("second"), ContentType: "application/pdf"})
	if !errors.Is(err, objectstore.ErrExists) {
		t.Errorf("Put(%s, other bytes) = %v; want ErrExists", k, err)
	}
	if got, _ := read(t, s, k, obj.VersionID); !bytes.Equal(got, first) {
		t.Errorf("after a refused overwrite Get(%s, %s) = %q; want %q", k, obj.VersionID, got, first)
	}
	if got, _ := read(t, s, k, ""); !bytes.Equal(got, first) {
		t.Errorf("after a refused overwrite Get(%s, current) = %q; want %q", k, got, first)
	}
	// A retry with the same bytes is the same object.
	again, err := s.Store.Put(ctx, objectstore.PutParams{Key: k, Body: first, ContentType: "application/pdf"})
	if err != nil || again.VersionID != obj.VersionID || again.SHA256 != obj.SHA256 {
		t.Errorf("Put(%s, same bytes) = %+v, %v; want %+v", k, again, err, obj)
	}
}

func testConcurrentPuts(t *testing.T, s Subject) {
	ctx := context.Background()
	k := key(t, "race")
	const n = 8
	var wg sync.WaitGroup
	objs := make([]objectstore.Object, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			objs[i], errs[i] = s.Store.Put(ctx, objectstore.PutParams{Key: k, Body: fmt.Appendf(nil, "writer %d", i)})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Put(%s) by writers %d and %d both succeeded; want one", k, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, objectstore.ErrExists):
			t.Errorf("Put(%s) by writer %d = %v; want nil or ErrExists", k, i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("Put(%s) by %d writers: none succeeded", k, n)
	}
	if got, _ := read(t, s, k, ""); string(got) != fmt.Sprintf("writer %d", winner) {
		t.Errorf("Get(%s) = %q; want the winner's %q", k, got, fmt.Sprintf("writer %d", winner))
	}
}

func testChecksumMismatch(t *testing.T, s Subject) {
	ctx := context.Background()
	k := key(t, "s1")
	_, err := s.Store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("body"), SHA256: objectstore.Sum([]byte("other"))})
	if !errors.Is(err, objectstore.ErrChecksumMismatch) {
		t.Errorf("Put(wrong sha-256) = %v; want ErrChecksumMismatch", err)
	}
	if _, err := s.Store.Stat(ctx, k, ""); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Stat after a refused Put = %v; want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s Subject) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "../escape", "orgs/../../x", "a//b", "a/./b", ".hidden", `a\b`, "a b", "é", "k~meta", "k~data"} {
		if _, err := s.Store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("x")}); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v; want ErrInvalidKey", k, err)
		}
		if _, _, err := s.Store.Get(ctx, k, ""); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v; want ErrInvalidKey", k, err)
		}
		if _, err := s.Store.PresignGet(ctx, k, "", time.Hour); !errors.Is(err, objectstore.ErrInvalidKey) {
			t.Errorf("PresignGet(%q) = %v; want ErrInvalidKey", k, err)
		}
	}
}

func testNotFound(t *testing.T, s Subject) {
	ctx := context.Background()
	a := put(t, s, objectstore.PutParams{Key: key(t, "a"), Body: []byte("a")})
	b := put(t, s, objectstore.PutParams{Key: key(t, "b"), Body: []byte("b")})
	if _, _, err := s.Store.Get(ctx, key(t, "missing"), ""); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Get(missing) = %v; want ErrNotFound", err)
	}
	if _, err := s.Store.Stat(ctx, key(t, "missing"), ""); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Stat(missing) = %v; want ErrNotFound", err)
	}
	// Another key's version is not this key's.
	if _, _, err := s.Store.Get(ctx, a.Key, b.VersionID); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Get(%s, version of %s) = %v; want ErrNotFound", a.Key, b.Key, err)
	}
	if err := s.Store.Delete(ctx, key(t, "missing"), b.VersionID); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Delete(missing) = %v; want ErrNotFound", err)
	}
}

func testDeleteRefused(t *testing.T, s Subject) {
	ctx := context.Background()
	obj := put(t, s, objectstore.PutParams{Key: key(t, "s1"), Body: []byte("kept")})
	if s.MovesTime {
		// One second before retain-until is still too early.
		s.Clock.Set(obj.RetainUntil.Add(-time.Second))
	}
	if err := s.Store.Delete(ctx, obj.Key, obj.VersionID); !errors.Is(err, objectstore.ErrRetained) {
		t.Errorf("Delete(%s, %s) before %v = %v; want ErrRetained", obj.Key, obj.VersionID, obj.RetainUntil, err)
	}
	if err := s.Store.Delete(ctx, obj.Key, ""); err == nil {
		t.Errorf("Delete(%s, no version) = nil; want an error", obj.Key)
	}
	if got, _ := read(t, s, obj.Key, obj.VersionID); string(got) != "kept" {
		t.Errorf("after refused deletes Get(%s) = %q; want %q", obj.Key, got, "kept")
	}
}

func testDeleteAfter(t *testing.T, s Subject) {
	if !s.MovesTime {
		t.Skip("the server's clock cannot be moved; the backend's own tests wait out a short retention")
	}
	ctx := context.Background()
	obj := put(t, s, objectstore.PutParams{Key: key(t, "s1"), Body: []byte("old")})
	s.Clock.Set(obj.RetainUntil)
	if err := s.Store.Delete(ctx, obj.Key, obj.VersionID); err != nil {
		t.Fatalf("Delete(%s, %s) at retain-until = %v; want nil", obj.Key, obj.VersionID, err)
	}
	if _, _, err := s.Store.Get(ctx, obj.Key, obj.VersionID); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
}

func fetch(t *testing.T, s Subject, u string) (int, []byte) {
	t.Helper()
	resp, err := s.Fetch(context.Background(), u)
	if err != nil {
		t.Fatalf("GET %s = %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading GET %s = %v", u, err)
	}
	return resp.StatusCode, b
}

func testPresignGet(t *testing.T, s Subject) {
	ctx := context.Background()
	body := []byte("%PDF presigned")
	obj := put(t, s, objectstore.PutParams{Key: key(t, "s1"), Body: body, ContentType: "application/pdf"})
	u, err := s.Store.PresignGet(ctx, obj.Key, obj.VersionID, time.Hour)
	if err != nil {
		t.Fatalf("PresignGet = %v", err)
	}
	if code, got := fetch(t, s, u); code != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("GET presigned = %d %q; want 200 %q", code, got, body)
	}
	// A URL for one object opens no other.
	other := put(t, s, objectstore.PutParams{Key: key(t, "s2"), Body: []byte("other")})
	if code, _ := fetch(t, s, strings.Replace(u, obj.Key, other.Key, 1)); code != http.StatusForbidden {
		t.Errorf("GET presigned with the key changed = %d; want 403", code)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	for name := range pu.Query() {
		if !strings.Contains(strings.ToLower(name), "signature") {
			continue
		}
		q := pu.Query()
		sig := q.Get(name)
		q.Set(name, strings.Repeat("0", len(sig)))
		bad := *pu
		bad.RawQuery = q.Encode()
		if code, _ := fetch(t, s, bad.String()); code != http.StatusForbidden {
			t.Errorf("GET presigned with a changed %s = %d; want 403", name, code)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, objectstore.MaxPresignTTL + time.Second} {
		if _, err := s.Store.PresignGet(ctx, obj.Key, obj.VersionID, ttl); err == nil {
			t.Errorf("PresignGet(ttl %v) = nil error; want an error", ttl)
		}
	}
}

func testPresignExpires(t *testing.T, s Subject) {
	if !s.MovesTime {
		t.Skip("the server's clock cannot be moved")
	}
	obj := put(t, s, objectstore.PutParams{Key: key(t, "s1"), Body: []byte("x")})
	u, err := s.Store.PresignGet(context.Background(), obj.Key, obj.VersionID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.Clock.Advance(time.Hour - time.Second)
	if code, _ := fetch(t, s, u); code != http.StatusOK {
		t.Errorf("GET presigned 1s before expiry = %d; want 200", code)
	}
	s.Clock.Advance(time.Second)
	if code, _ := fetch(t, s, u); code != http.StatusForbidden {
		t.Errorf("GET presigned at expiry = %d; want 403", code)
	}
}

func testCheckWriteOnce(t *testing.T, s Subject) {
	if err := s.Store.CheckWriteOnce(context.Background()); err != nil {
		t.Errorf("CheckWriteOnce() = %v; want nil", err)
	}
}
