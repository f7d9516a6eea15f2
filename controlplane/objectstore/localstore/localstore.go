// Package localstore is the embedded default objectstore.Store: a local
// directory that this program keeps write-once.
//
// Layout under the directory (0700, files 0400):
//
//	objects/<key>~meta  JSON sidecar: version, SHA-256, size, retain-until
//	objects/<key>~data  the content
//	tmp/                files being written
//	presign.key         HMAC key of presigned URLs (0600)
//
// '~' never occurs in a valid key, so a key's files can never collide with
// another key's directories. Every file is written in tmp/, synced, then
// hard-linked to its final name: link(2) fails if the name exists, so no
// file is ever overwritten and no reader sees a partial one; the directory
// is synced after. The sidecar is linked before the data, so content never
// exists without its retention record, and the sidecar is itself
// write-once. Retention is enforced by this package's Delete; the
// machine's root can still remove the files, which is what S3 Object Lock
// in COMPLIANCE mode (package s3store) protects against.
package localstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/internal/clock"
)

// DefaultURLPrefix is where the API server mounts Handler.
const DefaultURLPrefix = "/v1/evidence/"

const (
	objectsDir     = "objects"
	tmpDir         = "tmp"
	presignKeyFile = "presign.key"
	metaSuffix     = "~meta"
	dataSuffix     = "~data"
	maxMetaBytes   = 64 << 10
	sidecarFormat  = 1
)

// Config configures a local store.
type Config struct {
	// Dir holds the objects; created 0700 if missing.
	Dir string
	// Retention is how long objects are kept at least (zero: 7 years).
	Retention objectstore.Period
	// URLPrefix is the path Handler is mounted at on the API server
	// (default DefaultURLPrefix); presigned URLs start with it.
	URLPrefix string
	Clock     clock.Clock
	Logger    *slog.Logger
}

// Store is a write-once directory.
type Store struct {
	root       *os.Root
	retention  objectstore.Period
	prefix     string
	presignKey []byte
	clock      clock.Clock
	log        *slog.Logger
}

var _ objectstore.Store = (*Store)(nil)

// Open opens (creating if needed) the store in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("local object store: a directory is required")
	}
	if cfg.Retention == (objectstore.Period{}) {
		cfg.Retention = objectstore.DefaultRetention
	}
	if err := cfg.Retention.Validate(); err != nil {
		return nil, err
	}
	if cfg.URLPrefix == "" {
		cfg.URLPrefix = DefaultURLPrefix
	}
	if !strings.HasPrefix(cfg.URLPrefix, "/") || !strings.HasSuffix(cfg.URLPrefix, "/") {
		return nil, fmt.Errorf("local object store: url prefix %q must start and end with /", cfg.URLPrefix)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the evidence directory: %w", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening the evidence directory: %w", err)
	}
	s := &Store{root: root, retention: cfg.Retention, prefix: cfg.URLPrefix, clock: cfg.Clock, log: cfg.Logger}
	if err := s.init(); err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init() error {
	for _, d := range []string{objectsDir, tmpDir} {
		if err := s.root.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	// Files a crash left half-written; none is linked anywhere else.
	entries, err := fs.ReadDir(s.root.FS(), tmpDir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", tmpDir, err)
	}
	for _, e := range entries {
		if err := s.root.Remove(path.Join(tmpDir, e.Name())); err != nil {
			return fmt.Errorf("removing a stale temporary file: %w", err)
		}
	}
	if err := s.syncDir("."); err != nil {
		return err
	}
	key, err := s.root.ReadFile(presignKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		err = s.writeOnce(presignKeyFile, key, 0o600)
		if errors.Is(err, fs.ErrExist) {
			key, err = s.root.ReadFile(presignKeyFile)
		}
	}
	if err != nil {
		return fmt.Errorf("loading the presign key: %w", err)
	}
	if len(key) != 32 {
		return fmt.Errorf("presign key %s: %d bytes; want 32", presignKeyFile, len(key))
	}
	s.presignKey = key
	return nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.root.Close() }

// sidecar is the write-once record of an object beside its content.
type sidecar struct {
	Format      int                `json:"format"`
	Key         string             `json:"key"`
	VersionID   string             `json:"version_id"`
	SHA256      objectstore.Digest `json:"sha256"`
	Size        int64              `json:"size"`
	ContentType string             `json:"content_type"`
	RetainUntil time.Time          `json:"retain_until"`
	CreatedAt   time.Time          `json:"created_at"`
}

func (m sidecar) object() objectstore.Object {
	return objectstore.Object{
		Key: m.Key, VersionID: m.VersionID, SHA256: m.SHA256, Size: m.Size, ContentType: m.ContentType,
		RetainUntil: m.RetainUntil, Mode: objectstore.ModeLocal,
	}
}

func metaName(key string) string { return path.Join(objectsDir, key) + metaSuffix }
func dataName(key string) string { return path.Join(objectsDir, key) + dataSuffix }

// Put writes a new object; see objectstore.Store.
func (s *Store) Put(ctx context.Context, p objectstore.PutParams) (objectstore.Object, error) {
	if err := objectstore.ValidateKey(p.Key); err != nil {
		return objectstore.Object{}, err
	}
	sum, err := objectstore.CheckBody(p)
	if err != nil {
		return objectstore.Object{}, err
	}
	if p.MinRetention != (objectstore.Period{}) {
		if err := p.MinRetention.Validate(); err != nil {
			return objectstore.Object{}, fmt.Errorf("org minimum: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return objectstore.Object{}, err
	}
	ct := p.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	// Two rounds at most: a Put that loses the race for the sidecar reads
	// the winner's and either matches it or reports ErrExists.
	for range 2 {
		m, err := s.readMeta(p.Key)
		switch {
		case err == nil:
			if m.SHA256 != sum || m.Size != int64(len(p.Body)) {
				return objectstore.Object{}, fmt.Errorf("%s (version %s, sha-256 %s): %w", p.Key, m.VersionID, m.SHA256, objectstore.ErrExists)
			}
			// The same bytes: a retry, perhaps of a Put that stopped
			// between the sidecar and the content.
			return s.linkData(m, p.Body)
		case !errors.Is(err, objectstore.ErrNotFound):
			return objectstore.Object{}, err
		}
		if err := s.mkdirs(path.Dir(metaName(p.Key))); err != nil {
			return objectstore.Object{}, err
		}
		now := s.clock.Now()
		m = sidecar{
			Format: sidecarFormat, Key: p.Key, VersionID: newVersionID(), SHA256: sum, Size: int64(len(p.Body)),
			ContentType: ct, RetainUntil: objectstore.RetainUntil(now, s.retention, p.MinRetention), CreatedAt: now.UTC(),
		}
		data, err := json.Marshal(m)
		if err != nil {
			return objectstore.Object{}, err
		}
		err = s.writeOnce(metaName(p.Key), data, 0o400)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return objectstore.Object{}, fmt.Errorf("writing the retention record of %s: %w", p.Key, err)
		}
		return s.linkData(m, p.Body)
	}
	return objectstore.Object{}, fmt.Errorf("%s: sidecar appeared and vanished while writing", p.Key)
}

// linkData writes the content of a recorded object, or checks the content
// already there.
func (s *Store) linkData(m sidecar, body []byte) (objectstore.Object, error) {
	err := s.writeOnce(dataName(m.Key), body, 0o400)
	if errors.Is(err, fs.ErrExist) {
		rc, err := s.openData(m)
		if err != nil {
			return objectstore.Object{}, err
		}
		defer rc.Close()
		if _, err := io.Copy(io.Discard, rc); err != nil {
			return objectstore.Object{}, err
		}
		return m.object(), nil
	}
	if err != nil {
		return objectstore.Object{}, fmt.Errorf("writing %s: %w", m.Key, err)
	}
	return m.object(), nil
}

// writeOnce creates name with data, failing with fs.ErrExist if it exists:
// the bytes go to a synced temporary file that is then hard-linked to name
// (link(2) never replaces), and name's directory is synced.
func (s *Store) writeOnce(name string, data []byte, perm os.FileMode) error {
	tmp := path.Join(tmpDir, "w-"+newVersionID())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer s.root.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // not left to the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := s.root.Link(tmp, name); err != nil {
		return err
	}
	return s.syncDir(path.Dir(name))
}

// mkdirs creates dir and its parents 0700, syncing each parent that got a
// new entry so the directory survives a crash.
func (s *Store) mkdirs(dir string) error {
	cur := ""
	for part := range strings.SplitSeq(dir, "/") {
		parent := cur
		if cur == "" {
			cur, parent = part, "."
		} else {
			cur += "/" + part
		}
		err := s.root.Mkdir(cur, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating %s: %w", cur, err)
		}
		if err := s.syncDir(parent); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

func (s *Store) readMeta(key string) (sidecar, error) {
	f, err := s.root.Open(metaName(key))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return sidecar{}, fmt.Errorf("%s: %w", key, objectstore.ErrNotFound)
	}
	if err != nil {
		return sidecar{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetaBytes+1))
	if err != nil {
		return sidecar{}, err
	}
	var m sidecar
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if len(data) > maxMetaBytes || dec.Decode(&m) != nil || m.Format != sidecarFormat || m.Key != key ||
		!validVersionID(m.VersionID) || m.Size < 0 || m.RetainUntil.IsZero() {
		return sidecar{}, fmt.Errorf("%s: retention record unreadable: %w", key, objectstore.ErrCorrupt)
	}
	return m, nil
}

// lookup finds the recorded version of key; versionID "" means the only one.
func (s *Store) lookup(key, versionID string) (sidecar, error) {
	if err := objectstore.ValidateKey(key); err != nil {
		return sidecar{}, err
	}
	m, err := s.readMeta(key)
	if err != nil {
		return sidecar{}, err
	}
	if versionID != "" && versionID != m.VersionID {
		return sidecar{}, fmt.Errorf("%s version %q: %w", key, versionID, objectstore.ErrNotFound)
	}
	return m, nil
}

func (s *Store) openData(m sidecar) (io.ReadCloser, error) {
	f, err := s.root.Open(dataName(m.Key))
	if errors.Is(err, fs.ErrNotExist) {
		// A Put stopped after the sidecar; a retry completes it.
		return nil, fmt.Errorf("%s: content not written: %w", m.Key, objectstore.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return objectstore.VerifyingReader(f, m.Key, m.Size, m.SHA256), nil
}

// Get returns an object's content, verified against its SHA-256 as it is read.
func (s *Store) Get(ctx context.Context, key, versionID string) (io.ReadCloser, objectstore.Object, error) {
	m, err := s.lookup(key, versionID)
	if err != nil {
		return nil, objectstore.Object{}, err
	}
	rc, err := s.openData(m)
	if err != nil {
		return nil, objectstore.Object{}, err
	}
	return rc, m.object(), nil
}

// Stat describes an object.
func (s *Store) Stat(ctx context.Context, key, versionID string) (objectstore.Object, error) {
	m, err := s.lookup(key, versionID)
	if err != nil {
		return objectstore.Object{}, err
	}
	fi, err := s.root.Stat(dataName(key))
	if errors.Is(err, fs.ErrNotExist) {
		return objectstore.Object{}, fmt.Errorf("%s: content not written: %w", key, objectstore.ErrNotFound)
	}
	if err != nil {
		return objectstore.Object{}, err
	}
	if fi.Size() != m.Size {
		return objectstore.Object{}, fmt.Errorf("%s: %d bytes, recorded %d: %w", key, fi.Size(), m.Size, objectstore.ErrCorrupt)
	}
	return m.object(), nil
}

// Delete removes an object whose retention has ended.
func (s *Store) Delete(ctx context.Context, key, versionID string) error {
	if versionID == "" {
		return fmt.Errorf("%s: deleting needs the version id: %w", key, objectstore.ErrNotFound)
	}
	m, err := s.lookup(key, versionID)
	if err != nil {
		return err
	}
	if now := s.clock.Now(); now.Before(m.RetainUntil) {
		return fmt.Errorf("%s version %s retained until %s: %w", key, versionID, m.RetainUntil.Format(time.RFC3339), objectstore.ErrRetained)
	}
	// Content first: it never exists without its record.
	if err := s.root.Remove(dataName(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.root.Remove(metaName(key)); err != nil {
		return err
	}
	return s.syncDir(path.Dir(metaName(key)))
}

// CheckWriteOnce checks that the directory is private to this user and
// that the filesystem refuses to link over an existing name, which the
// no-overwrite guarantee rests on.
func (s *Store) CheckWriteOnce(ctx context.Context) error {
	fi, err := s.root.Stat(".")
	if err != nil {
		return fmt.Errorf("%w: %v", objectstore.ErrNotWriteOnce, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: evidence directory %s has mode %v; others must have no access (chmod 700)", objectstore.ErrNotWriteOnce, s.root.Name(), perm)
	}
	probe := path.Join(tmpDir, "probe-"+newVersionID())
	if err := s.writeOnce(probe, []byte("probe"), 0o400); err != nil {
		return fmt.Errorf("%w: writing a probe file: %v", objectstore.ErrNotWriteOnce, err)
	}
	defer s.root.Remove(probe)
	err = s.writeOnce(probe, []byte("other"), 0o400)
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: the filesystem does not refuse to link over an existing file (got %v)", objectstore.ErrNotWriteOnce, err)
	}
	if got, err := s.root.ReadFile(probe); err != nil || string(got) != "probe" {
		return fmt.Errorf("%w: the probe file changed", objectstore.ErrNotWriteOnce)
	}
	return nil
}

// PresignGet returns a path on the API server, signed with the store's
// HMAC key, that serves this version until ttl passes. An empty versionID
// is resolved so the URL names the exact version.
func (s *Store) PresignGet(ctx context.Context, key, versionID string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > objectstore.MaxPresignTTL {
		return "", fmt.Errorf("presign ttl %v: must be positive and at most %v", ttl, objectstore.MaxPresignTTL)
	}
	m, err := s.lookup(key, versionID)
	if err != nil {
		return "", err
	}
	exp := strconv.FormatInt(s.clock.Now().Add(ttl).Unix(), 10)
	q := url.Values{"version": {m.VersionID}, "expires": {exp}, "signature": {s.sign(key, m.VersionID, exp)}}
	return s.prefix + key + "?" + q.Encode(), nil
}

func (s *Store) sign(key, versionID, expires string) string {
	mac := hmac.New(sha256.New, s.presignKey)
	fmt.Fprintf(mac, "toktra-evidence-get-v1\n%s\n%s\n%s", key, versionID, expires)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Handler serves the URLs PresignGet makes: it checks the signature and
// expiry, reads the object verifying its SHA-256, and serves it (ranges
// included). Mount it at the store's URL prefix on the API server; it
// needs no API key, the signature is the authorization.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, s.prefix)
	if !ok || objectstore.ValidateKey(key) != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if len(q["version"]) != 1 || len(q["expires"]) != 1 || len(q["signature"]) != 1 {
		http.Error(w, "a signed URL needs one version, expires and signature", http.StatusForbidden)
		return
	}
	version, expires, sig := q.Get("version"), q.Get("expires"), q.Get("signature")
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(s.sign(key, version, expires))) {
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	if s.clock.Now().Unix() >= exp {
		http.Error(w, "this link has expired", http.StatusForbidden)
		return
	}
	rc, obj, err := s.Get(r.Context(), key, version)
	if errors.Is(err, objectstore.ErrNotFound) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var body []byte
	if err == nil {
		body, err = io.ReadAll(rc)
		rc.Close()
	}
	if err != nil {
		s.log.Error("serving evidence", "key", key, "version", version, "err", err)
		http.Error(w, "the stored object could not be read intact", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", obj.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(key)))
	h.Set("Cache-Control", "private, no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("ETag", `"`+obj.SHA256.String()+`"`)
	h.Set("Repr-Digest", "sha-256=:"+obj.SHA256.Base64()+":")
	h.Set("X-Toktra-Version-Id", obj.VersionID)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func newVersionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func validVersionID(v string) bool {
	if len(v) != 32 {
		return false
	}
	_, err := hex.DecodeString(v)
	return err == nil && strings.ToLower(v) == v
}
