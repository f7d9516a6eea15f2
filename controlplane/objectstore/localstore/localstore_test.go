package localstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/objectstore/objectstoretest"
	"github.com/toktra/toktra/internal/clock"
)

var epoch = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type fixture struct {
	store *Store
	dir   string
	clock *clock.Fake
	srv   *httptest.Server
}

func setup(t *testing.T) fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "evidence")
	clk := clock.NewFake(epoch)
	st, err := Open(Config{Dir: dir, Clock: clk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { st.Close() })
	mux := http.NewServeMux()
	mux.Handle("GET "+DefaultURLPrefix, st.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return fixture{store: st, dir: dir, clock: clk, srv: srv}
}

func (f fixture) fetch(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+u, nil)
	if err != nil {
		return nil, err
	}
	return f.srv.Client().Do(req)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	objectstoretest.Exercise(t, func(t *testing.T) objectstoretest.Subject {
		f := setup(t)
		return objectstoretest.Subject{
			Store: f.store, Clock: f.clock, Retention: objectstore.DefaultRetention, Mode: objectstore.ModeLocal,
			Fetch: f.fetch, MovesTime: true,
		}
	})
}

func TestFilesAndSidecar(t *testing.T) {
	t.Parallel()
	f := setup(t)
	body := []byte("%PDF")
	obj, err := f.store.Put(context.Background(), objectstore.PutParams{Key: "orgs/o/snapshots/l/s.pdf", Body: body, ContentType: "application/pdf"})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(f.dir, "objects", "orgs", "o", "snapshots", "l", "s.pdf")
	for _, tt := range []struct {
		path string
		mode fs.FileMode
	}{
		{f.dir, fs.ModeDir | 0o700},
		{filepath.Join(f.dir, "objects", "orgs"), fs.ModeDir | 0o700},
		{filepath.Join(f.dir, "objects", "orgs", "o", "snapshots", "l"), fs.ModeDir | 0o700},
		{base + "~data", 0o400},
		{base + "~meta", 0o400},
		{filepath.Join(f.dir, "presign.key"), 0o600},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil || fi.Mode() != tt.mode {
			t.Errorf("Stat(%s).Mode() = %v, %v; want %v", tt.path, fi.Mode(), err, tt.mode)
		}
	}
	if got, err := os.ReadFile(base + "~data"); err != nil || !bytes.Equal(got, body) {
		t.Errorf("content file = %q, %v; want %q", got, err, body)
	}
	raw, err := os.ReadFile(base + "~meta")
	if err != nil {
		t.Fatal(err)
	}
	var m sidecar
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("sidecar %s: %v", raw, err)
	}
	want := sidecar{Format: 1, Key: obj.Key, VersionID: obj.VersionID, SHA256: objectstore.Sum(body), Size: 4,
		ContentType: "application/pdf", RetainUntil: epoch.AddDate(7, 0, 0), CreatedAt: epoch}
	if !m.RetainUntil.Equal(want.RetainUntil) || !m.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("sidecar times = %v, %v; want %v, %v", m.RetainUntil, m.CreatedAt, want.RetainUntil, want.CreatedAt)
	}
	m.RetainUntil, m.CreatedAt, want.RetainUntil, want.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if m != want {
		t.Errorf("sidecar = %+v; want %+v", m, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %d files after Put; want none", len(entries))
	}
}

func TestTamperedContentDetected(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	obj, err := f.store.Put(ctx, objectstore.PutParams{Key: "orgs/o/s.pdf", Body: []byte("original")})
	if err != nil {
		t.Fatal(err)
	}
	// Someone with the machine's root rewrites the file in place.
	p := filepath.Join(f.dir, "objects", "orgs", "o", "s.pdf~data")
	if err := os.WriteFile(p, []byte("origina!"), 0o400); err != nil {
		t.Fatal(err)
	}
	rc, _, err := f.store.Get(ctx, obj.Key, obj.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, objectstore.ErrCorrupt) {
		t.Errorf("reading a tampered object = %v; want ErrCorrupt", err)
	}
	u, err := f.store.PresignGet(ctx, obj.Key, obj.VersionID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.fetch(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET a tampered object = %d; want 500", resp.StatusCode)
	}
	// A same-content retry notices too, rather than reporting success.
	if _, err := f.store.Put(ctx, objectstore.PutParams{Key: obj.Key, Body: []byte("original")}); !errors.Is(err, objectstore.ErrCorrupt) {
		t.Errorf("Put(same bytes) over tampered content = %v; want ErrCorrupt", err)
	}
}

// TestResumeAfterCrash: a Put that stopped after writing the retention
// record but before the content is completed by a retry with the same
// bytes and refuses other bytes.
func TestResumeAfterCrash(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	k := "orgs/o/s.pdf"
	obj, err := f.store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("content")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.dir, "objects", "orgs", "o", "s.pdf~data")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.Get(ctx, k, ""); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Get(half-written) = %v; want ErrNotFound", err)
	}
	if _, err := f.store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("another")}); !errors.Is(err, objectstore.ErrExists) {
		t.Errorf("Put(other bytes) over a half-written object = %v; want ErrExists", err)
	}
	again, err := f.store.Put(ctx, objectstore.PutParams{Key: k, Body: []byte("content")})
	if err != nil || again.VersionID != obj.VersionID {
		t.Fatalf("Put(same bytes) to finish = %+v, %v; want version %s", again, err, obj.VersionID)
	}
	rc, _, err := f.store.Get(ctx, k, obj.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || string(got) != "content" {
		t.Errorf("Get after resuming = %q, %v; want %q", got, err, "content")
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(f.dir, "objects", "orgs")); err != nil {
		t.Fatal(err)
	}
	_, err := f.store.Put(context.Background(), objectstore.PutParams{Key: "orgs/o/s.pdf", Body: []byte("x")})
	if err == nil {
		t.Error("Put through a symlink leading outside the directory = nil error; want an error")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("Put wrote %d entries outside the store", len(entries))
	}
}

func TestCheckWriteOnceRefusesOpenDirectory(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if err := os.Chmod(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.store.CheckWriteOnce(context.Background()); !errors.Is(err, objectstore.ErrNotWriteOnce) {
		t.Errorf("CheckWriteOnce() on a 0755 directory = %v; want ErrNotWriteOnce", err)
	}
}

func TestReopenKeepsObjectsAndURLs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	obj, err := f.store.Put(ctx, objectstore.PutParams{Key: "orgs/o/s.pdf", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.store.PresignGet(ctx, obj.Key, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "version="+obj.VersionID) {
		t.Errorf("PresignGet(current) = %s; want the exact version %s in it", u, obj.VersionID)
	}
	stale := filepath.Join(f.dir, "tmp", "w-stale")
	if err := os.WriteFile(stale, []byte("half"), 0o400); err != nil {
		t.Fatal(err)
	}
	f.store.Close()
	st2, err := Open(Config{Dir: f.dir, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file after Open: %v; want removed", err)
	}
	srv := httptest.NewServer(st2.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET a URL signed before reopening = %d; want 200", resp.StatusCode)
	}
	if _, err := st2.Put(ctx, objectstore.PutParams{Key: obj.Key, Body: []byte("y")}); !errors.Is(err, objectstore.ErrExists) {
		t.Errorf("Put over an object after reopening = %v; want ErrExists", err)
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	body := []byte("0123456789")
	obj, err := f.store.Put(ctx, objectstore.PutParams{Key: "orgs/o/s.pdf", Body: body, ContentType: "application/pdf"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.store.PresignGet(ctx, obj.Key, obj.VersionID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := f.store.Handler()
	tests := []struct {
		name     string
		method   string
		target   string
		header   map[string]string
		wantCode int
		wantBody string
	}{
		{"get", http.MethodGet, u, nil, http.StatusOK, string(body)},
		{"head", http.MethodHead, u, nil, http.StatusOK, ""},
		{"range", http.MethodGet, u, map[string]string{"Range": "bytes=2-4"}, http.StatusPartialContent, "234"},
		{"post", http.MethodPost, u, nil, http.StatusMethodNotAllowed, ""},
		{"no signature", http.MethodGet, DefaultURLPrefix + obj.Key, nil, http.StatusForbidden, ""},
		{"repeated param", http.MethodGet, u + "&version=" + obj.VersionID, nil, http.StatusForbidden, ""},
		{"longer expiry", http.MethodGet, strings.Replace(u, "expires=", "expires=9", 1), nil, http.StatusForbidden, ""},
		{"traversal", http.MethodGet, DefaultURLPrefix + "../presign.key", nil, http.StatusNotFound, ""},
		{"other prefix", http.MethodGet, "/elsewhere/" + obj.Key, nil, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.target, nil)
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.wantCode || (tt.wantBody != "" && rec.Body.String() != tt.wantBody) {
			t.Errorf("%s: %s %s = %d %q; want %d %q", tt.name, tt.method, tt.target, rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
		}
		if rec.Code == http.StatusOK {
			for k, want := range map[string]string{
				"Content-Type": "application/pdf", "ETag": `"` + obj.SHA256.String() + `"`,
				"X-Content-Type-Options": "nosniff", "Content-Disposition": `attachment; filename="s.pdf"`,
			} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s: header %s = %q; want %q", tt.name, k, got, want)
				}
			}
		}
	}
}
