// Package sqlq loads the SQL that the store backends embed: named queries
// from .sql files and numbered migrations from a migrations directory.
//
// It stands in for sqlc, which is not available offline: the SQL stays in
// .sql files, one dialect per backend with the same query names in each, and
// the Go code looks every statement up by name once, at package init, so a
// missing or misspelled query stops the program before it serves anything.
//
// A queries file is a sequence of blocks, each opened by a marker line:
//
//	-- name: GetDevice
//	SELECT ... FROM devices WHERE org_id = $1 AND id = $2;
//
// Everything up to the next marker (or the end) is the statement, less any
// comment lines that end it (they usually describe the next query). Before
// the first marker only blank lines and comments are allowed.
package sqlq

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Queries is a set of named SQL statements parsed from a queries file.
type Queries struct {
	byName map[string]string
	names  []string
}

var (
	markerRE = regexp.MustCompile(`^--\s*name:\s*(.*?)\s*$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse splits src into its "-- name:" blocks. It fails on a malformed or
// duplicate name, an empty statement, or SQL before the first marker.
func Parse(src string) (*Queries, error) {
	q := &Queries{byName: make(map[string]string)}
	var (
		cur     string
		curLine int
		body    strings.Builder
	)
	flush := func() error {
		if cur == "" {
			return nil
		}
		stmt := trimTrailingComments(body.String())
		if stmt == "" {
			return fmt.Errorf("line %d: query %s has no SQL", curLine, cur)
		}
		q.byName[cur] = stmt
		q.names = append(q.names, cur)
		body.Reset()
		return nil
	}
	for i, line := range strings.Split(src, "\n") {
		lineNo := i + 1
		if m := markerRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			if err := flush(); err != nil {
				return nil, err
			}
			name := m[1]
			if !nameRE.MatchString(name) {
				return nil, fmt.Errorf("line %d: invalid query name %q", lineNo, name)
			}
			if _, dup := q.byName[name]; dup {
				return nil, fmt.Errorf("line %d: duplicate query name %s", lineNo, name)
			}
			cur, curLine = name, lineNo
			continue
		}
		if cur == "" {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
				return nil, fmt.Errorf("line %d: SQL before the first -- name: marker", lineNo)
			}
			continue
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return q, nil
}

// trimTrailingComments drops the blank and comment lines that end a block:
// they document the next query, and a prepared statement should end at its
// last SQL line.
func trimTrailingComments(block string) string {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	for len(lines) > 0 {
		t := strings.TrimSpace(lines[len(lines)-1])
		if t != "" && !strings.HasPrefix(t, "--") {
			break
		}
		lines = lines[:len(lines)-1]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// MustParse is Parse for package-level variables: it panics on error.
func MustParse(src string) *Queries {
	q, err := Parse(src)
	if err != nil {
		panic("sqlq: parsing queries: " + err.Error())
	}
	return q
}

// Get returns the statement with the given name.
func (q *Queries) Get(name string) (string, bool) {
	s, ok := q.byName[name]
	return s, ok
}

// MustGet returns the statement with the given name and panics if there is
// none; backends call it at init so a missing query fails at start-up.
func (q *Queries) MustGet(name string) string {
	s, ok := q.byName[name]
	if !ok {
		panic("sqlq: no query named " + name)
	}
	return s
}

// Names returns the query names in file order.
func (q *Queries) Names() []string {
	return append([]string(nil), q.names...)
}

// Migration is one numbered schema change, read from NNN_name.up.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var migrationRE = regexp.MustCompile(`^(\d+)_([A-Za-z0-9_]+)\.up\.sql$`)

// LoadMigrations reads the NNN_name.up.sql files in dir of fsys and returns
// them in version order. Versions start at 1 or above and never repeat; gaps
// are allowed, since numbers are assigned to work in progress ahead of time
// and each version is applied (or found applied) on its own.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading migrations directory %s: %w", dir, err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must look like 001_name.up.sql", e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("migration file %s: version: %w", e.Name(), err)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: m[2], SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version < 1 || (i > 0 && m.Version == ms[i-1].Version) {
			return nil, fmt.Errorf("migration %03d_%s: version repeated or below 1", m.Version, m.Name)
		}
		if strings.TrimSpace(m.SQL) == "" {
			return nil, fmt.Errorf("migration %03d_%s is empty", m.Version, m.Name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return ms, nil
}
