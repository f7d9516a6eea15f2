package sqlq

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	src := `-- Queries for the test.

-- name: GetThing
SELECT id
FROM things
WHERE id = $1;

-- Lists every thing.
-- name: ListThings
SELECT id FROM things -- inline comment stays
ORDER BY id;
`
	q, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if got, want := q.Names(), []string{"GetThing", "ListThings"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q; want %q", got, want)
	}
	tests := []struct{ name, want string }{
		{"GetThing", "SELECT id\nFROM things\nWHERE id = $1;"},
		{"ListThings", "SELECT id FROM things -- inline comment stays\nORDER BY id;"},
	}
	for _, tt := range tests {
		if got := q.MustGet(tt.name); got != tt.want {
			t.Errorf("MustGet(%q) = %q; want %q", tt.name, got, tt.want)
		}
	}
	if _, ok := q.Get("Missing"); ok {
		t.Errorf("Get(%q) ok = true; want false", "Missing")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{"duplicate", "-- name: A\nSELECT 1;\n-- name: A\nSELECT 2;\n", "duplicate query name A"},
		{"empty body", "-- name: A\n-- just a comment\n-- name: B\nSELECT 1;\n", "query A has no SQL"},
		{"empty at end", "-- name: A\nSELECT 1;\n-- name: B\n\n", "query B has no SQL"},
		{"bad name", "-- name: A B\nSELECT 1;\n", `invalid query name "A B"`},
		{"missing name", "-- name:\nSELECT 1;\n", `invalid query name ""`},
		{"sql before marker", "SELECT 0;\n-- name: A\nSELECT 1;\n", "before the first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %v; want it to contain %q", tt.src, err, tt.want)
			}
		})
	}
}

func TestMustGetPanics(t *testing.T) {
	t.Parallel()
	q := MustParse("-- name: A\nSELECT 1;\n")
	defer func() {
		if recover() == nil {
			t.Errorf("MustGet(%q) did not panic", "B")
		}
	}()
	q.MustGet("B")
}

func TestLoadMigrations(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"m/002_more.up.sql": {Data: []byte("CREATE TABLE b (id int);")},
		"m/001_init.up.sql": {Data: []byte("CREATE TABLE a (id int);")},
		// A gap: numbers are handed out ahead of the work that fills them.
		"m/007_later.up.sql": {Data: []byte("CREATE TABLE c (id int);")},
	}
	ms, err := LoadMigrations(fsys, "m")
	if err != nil {
		t.Fatalf("LoadMigrations() error = %v", err)
	}
	want := []Migration{
		{Version: 1, Name: "init", SQL: "CREATE TABLE a (id int);"},
		{Version: 2, Name: "more", SQL: "CREATE TABLE b (id int);"},
		{Version: 7, Name: "later", SQL: "CREATE TABLE c (id int);"},
	}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("LoadMigrations() = %+v; want %+v", ms, want)
	}
}

func TestLoadMigrationsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"zero", map[string]string{"000_a.up.sql": "x"}, "repeated or below 1"},
		{"repeat", map[string]string{"001_a.up.sql": "x", "001_b.up.sql": "x"}, "repeated or below 1"},
		{"bad name", map[string]string{"001_a.sql": "x"}, "name must look like"},
		{"empty", map[string]string{"001_a.up.sql": " \n"}, "is empty"},
		{"none", map[string]string{}, "no migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{"m": {Mode: fs.ModeDir | 0o755}}
			for name, data := range tt.files {
				fsys["m/"+name] = &fstest.MapFile{Data: []byte(data)}
			}
			_, err := LoadMigrations(fsys, "m")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadMigrations(%v) error = %v; want it to contain %q", tt.files, err, tt.want)
			}
		})
	}
}
