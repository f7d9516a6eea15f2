package objectstore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxSegmentLen)
	tests := []struct {
		key string
		ok  bool
	}{
		{"orgs/o1/snapshots/l1/s1.pdf", true},
		{"a", true},
		{"A-b_c.d/0", true},
		{long + "/" + long, true},
		{long + "a", false},
		{"", false},
		{"/abs", false},
		{"trailing/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"a/../b", false},
		{"a/./b", false},
		{".hidden", false},
		{"a/.hidden", false},
		{"-dash", false},
		{"_under", false},
		{`a\b`, false},
		{"a b", false},
		{"a\x00b", false},
		{"a~data", false},
		{"é", false},
		{"a:b", false},
		{"a%2Fb", false},
		{strings.Repeat("a/", MaxKeyDepth-1) + "a", true},
		{strings.Repeat("a/", MaxKeyDepth) + "a", false},
		{strings.Repeat("abcdefgh/", 114), false}, // > 1024 bytes
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v; want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v; want ErrInvalidKey", tt.key, err)
		}
	}
}

func TestKeyBuilders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		f       func() (string, error)
		want    string
		wantErr bool
	}{
		{"snapshot", func() (string, error) { return SnapshotKey("org1", "lo1", "snap1") }, "orgs/org1/snapshots/lo1/snap1.pdf", false},
		{"token", func() (string, error) { return SnapshotTokenKey("org1", "lo1", "snap1") }, "orgs/org1/snapshots/lo1/snap1.tsr", false},
		{"checkpoint", func() (string, error) { return CheckpointKey("org1", 42) }, "orgs/org1/checkpoints/00000000000000000042.note", false},
		{"audit", func() (string, error) { return AuditSegmentKey("org1", 1, 1000) }, "orgs/org1/audit/00000000000000000001-00000000000000001000.jsonl", false},
		{"audit backwards", func() (string, error) { return AuditSegmentKey("org1", 5, 4) }, "", true},
		{"org with slash", func() (string, error) { return SnapshotKey("org1/../org2", "lo1", "s") }, "", true},
		{"lockout adds segment", func() (string, error) { return SnapshotKey("org1", "a/b", "s") }, "", true},
		{"empty snapshot", func() (string, error) { return SnapshotKey("org1", "lo1", "") }, "", true},
		{"dot org", func() (string, error) { return CheckpointKey("..", 1) }, "", true},
	}
	for _, tt := range tests {
		got, err := tt.f()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s = %q, %v; want %q, err=%v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzValidateKey checks that every key ValidateKey accepts is a plain
// relative path that stays inside the directory it is joined to, and is
// the same path on every backend.
func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"orgs/o/snapshots/l/s.pdf", "../x", "a/../../b", "/etc/passwd", "a//b", "a\\b", ".", "a/./b", "é/x", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v; want an ErrInvalidKey", key, err)
			}
			return
		}
		if !utf8.ValidString(key) || len(key) > MaxKeyLen {
			t.Fatalf("ValidateKey(%q) accepted an invalid or too long string", key)
		}
		if !filepath.IsLocal(key) {
			t.Fatalf("ValidateKey(%q) accepted a non-local path", key)
		}
		if filepath.Clean(key) != key {
			t.Fatalf("ValidateKey(%q) accepted a path that cleans to %q", key, filepath.Clean(key))
		}
		root := "/srv/evidence"
		if p := filepath.Join(root, key); !strings.HasPrefix(p, root+"/") {
			t.Fatalf("ValidateKey(%q) accepted a key that joins to %q, outside %s", key, p, root)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") || strings.ContainsAny(seg, "~\\\x00 ") {
				t.Fatalf("ValidateKey(%q) accepted segment %q", key, seg)
			}
		}
	})
}
