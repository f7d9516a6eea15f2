// Package pgtest gives tests a real, throwaway PostgreSQL: one cluster per
// test binary, started on first use on a free loopback port, and a fresh
// database for every test that asks.
//
// A package whose tests use it calls Main from TestMain, which stops the
// cluster and removes its files when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t)
//		...
//	}
//
// The server binaries are looked up in /usr/lib/postgresql/*/bin (newest
// first), then in PATH. Without them a test is skipped, unless the CI
// environment variable is set: CI must never silently skip. Running as root,
// the cluster runs as the "postgres" OS user, since PostgreSQL refuses root.
// It works on Unix systems; on Linux the server also dies with the test
// binary if Main never gets to stop it.
//
// Databases are per test, but roles belong to the cluster: the first
// migration to create one (the Postgres store's toktra_app) races every
// other test database migrating at the same moment, so such a migration
// must accept that the role exists or is being created (see the store's
// migration 004 and its TestAppRoleCreationRace).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	mainCalled atomic.Bool

	once    sync.Once
	shared  *cluster
	initErr error
	skipMsg string

	dbCounter atomic.Int64
)

// Main runs the tests, stops the cluster if one was started, and exits.
// Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has its own cleanup to do: it runs the
// tests, stops the cluster, and returns the exit code.
func Run(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping postgres: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// NewDatabase creates an empty database in the shared cluster and returns a
// DSN for it; the database is dropped when t ends. It skips t when no
// PostgreSQL is installed (fails under CI) and fails t when the cluster
// cannot start.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return shared.dsn(newDatabase(t))
}

// NewDatabaseUnix is NewDatabase with a DSN over the cluster's Unix socket,
// for a server under test that runs in another network namespace (sockets
// in the file system are reachable from every namespace; 127.0.0.1 is not).
func NewDatabaseUnix(t testing.TB) string {
	t.Helper()
	name := newDatabase(t)
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", name, url.QueryEscape(filepath.Join(shared.dir, "sock")), shared.port)
}

func newDatabase(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain, so the cluster is stopped when the tests end")
	}
	once.Do(func() { shared, skipMsg, initErr = startCluster() })
	if skipMsg != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: %s (CI is set: refusing to skip)", skipMsg)
		}
		t.Skip("pgtest: " + skipMsg)
	}
	if initErr != nil {
		t.Fatalf("pgtest: starting postgres: %v", initErr)
	}
	name := fmt.Sprintf("toktra_test_%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := shared.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := shared.exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return name
}

// cluster is a running postgres server and the directory it lives in.
type cluster struct {
	dir  string // removed on stop; holds data/, sock/ and postgres.log
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd's exit status, set before done closes

	mu    sync.Mutex
	admin *pgx.Conn // to the "postgres" database, for CREATE/DROP DATABASE
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

func (c *cluster) exec(ctx context.Context, sql string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.admin.Exec(ctx, sql)
	return err
}

// findBinDir returns the directory holding initdb and postgres, or "" when
// PostgreSQL is not installed.
func findBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	initdb, err1 := exec.LookPath("initdb")
	postgres, err2 := exec.LookPath("postgres")
	if err1 == nil && err2 == nil && filepath.Dir(initdb) == filepath.Dir(postgres) {
		return filepath.Dir(initdb)
	}
	return ""
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// startCluster initializes and starts a cluster. It returns a skip message
// instead when PostgreSQL is not installed.
func startCluster() (c *cluster, skip string, err error) {
	bin := findBinDir()
	if bin == "" {
		return nil, "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH", nil
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, "", err
	}
	// Not under t.TempDir(): the postgres user cannot enter the 0700
	// directories the test framework creates for root.
	parent := clusterParent()
	removeStale(parent)
	dir, err := os.MkdirTemp(parent, dirPrefix)
	if err != nil {
		return nil, "", fmt.Errorf("creating cluster directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, "", fmt.Errorf("recording the cluster's owner: %w", err)
	}
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, "", fmt.Errorf("creating socket directory: %w", err)
	}
	if cred != nil {
		if err := makeTraversable(filepath.Dir(dir)); err != nil {
			return nil, "", err
		}
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, "", fmt.Errorf("handing %s to the postgres user: %w", p, err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = serverEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("initdb: %w\n%s", err, out)
	}

	// A port picked by the kernel can be taken again before postgres binds
	// it; try a few.
	for attempt := 1; ; attempt++ {
		c, err = startServer(bin, dir, data, sock, cred)
		if err == nil || attempt == 3 {
			break
		}
	}
	if err != nil {
		return nil, "", err
	}
	return c, "", nil
}

const (
	dirPrefix = "toktra-pg-"
	// ownerFile holds the pid of the test binary that made the cluster.
	ownerFile = "owner.pid"
)

// removeStale removes the cluster directories of test binaries that died
// without reaching Main's cleanup (a -timeout panic, a kill): on Linux their
// servers died with them, but the files stay, in memory on /dev/shm.
func removeStale(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// clusterParent is where cluster directories go: /dev/shm when it is there
// with room to spare (memory-backed, so CREATE DATABASE takes milliseconds,
// not a disk's hundreds; containers often give it only 64 MiB, too little),
// else the temporary directory.
func clusterParent() string {
	const (
		shm     = "/dev/shm"
		minFree = 1 << 30
	)
	fi, err := os.Stat(shm)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o002 == 0 {
		return os.TempDir()
	}
	if free, err := freeBytes(shm); err != nil || free < minFree {
		return os.TempDir()
	}
	return shm
}

// serverCredential says which user runs the server: nil for the current
// user, or the postgres OS user when running as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres OS user to run the server as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeTraversable lets other users pass through dir and its parents
// (search permission only), so the postgres user can reach its directory.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("letting the postgres user through %s: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// serverEnv is a minimal environment: the server must not inherit PG*
// variables meant for clients, nor a HOME it cannot read.
func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer(bin, dir, data, sock string, cred *syscall.Credential) (*cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating server log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-p", strconv.Itoa(port),
		"-k", sock,
		"-c", "listen_addresses=127.0.0.1",
		// A throwaway cluster: durability buys nothing, speed does.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = serverEnv()
	cmd.SysProcAttr = serverSysProcAttr(cred)
	c := &cluster{dir: dir, port: port, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// On Linux the server dies with the thread that started it (see
		// serverSysProcAttr): keep this goroutine on its thread for as long
		// as the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.dsn("postgres"))
		if err == nil {
			c.admin = conn
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("postgres exited during start-up (%v):\n%s", c.err, tail(logPath))
		case <-ctx.Done():
			c.kill()
			return nil, fmt.Errorf("postgres not ready after 60s: %w\n%s", err, tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the end of the server log, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	const limit = 4 << 10
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(bytes.TrimSpace(b))
}

func (c *cluster) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// stop shuts the server down ("fast" mode: disconnect clients, no
// checkpoint wait) and removes its directory.
func (c *cluster) stop() error {
	c.mu.Lock()
	if c.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.admin.Close(ctx)
		cancel()
	}
	c.mu.Unlock()
	var errs []error
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		errs = append(errs, fmt.Errorf("signalling postgres: %w", err))
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		errs = append(errs, errors.New("postgres still running 30s after SIGINT; killed"))
		c.kill()
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", c.dir, err))
	}
	return errors.Join(errs...)
}
