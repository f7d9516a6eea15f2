package custody_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// recordingSink keeps what it is handed, failing while fail is set; it
// stands where the write-once bucket is wired in.
type recordingSink struct {
	mu   sync.Mutex
	fail bool
	puts []put
}

type put struct {
	org   string
	size  uint64
	note  []byte
	token []byte
}

func (s *recordingSink) PutCheckpoint(_ context.Context, org string, size uint64, note, token []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("bucket unavailable")
	}
	s.puts = append(s.puts, put{org, size, bytes.Clone(note), bytes.Clone(token)})
	return nil
}

type env struct {
	ctx     context.Context
	dir     string
	dbPath  string
	st      store.Store
	svc     *custody.Service
	local   *tsa.Local
	sink    *recordingSink
	key     *custody.CheckpointKey
	org     store.Org
	lockout store.Lockout
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	e := &env{ctx: ctx, dir: dir, dbPath: filepath.Join(dir, "toktra.db"), sink: &recordingSink{}}
	st, err := sqlite.Open(ctx, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	if e.local, err = tsa.LoadOrCreateLocal(filepath.Join(dir, "tsa"), clock.Real{}, nil); err != nil {
		t.Fatal(err)
	}
	if e.key, err = custody.LoadOrCreateCheckpointKey(filepath.Join(dir, "custody"), "toktra-test"); err != nil {
		t.Fatal(err)
	}
	e.svc, err = custody.NewService(custody.Config{Store: st, TSA: e.local, Key: e.key, Origin: "toktra.example/custody", Sink: e.sink})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if e.org, err = st.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	u, err := st.UpsertUser(ctx, store.UpsertUserParams{OrgID: e.org.ID, Email: "alice@acme.example", CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if e.lockout, _, err = st.CreateLockout(ctx, store.CreateLockoutParams{OrgID: e.org.ID, UserID: u.ID, Trigger: "test", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return e
}

// recordLockout records a lockout's evidence DAG: the lockout, a usage
// capture and a confirmation per provider, a device ack.
func (e *env) recordLockout(t *testing.T) []store.CustodyNode {
	t.Helper()
	rec := func(kind, subject string, payload string, parents ...store.CustodyNode) store.CustodyNode {
		t.Helper()
		var ph [][]byte
		for _, p := range parents {
			ph = append(ph, p.Hash)
		}
		n, err := e.svc.Record(e.ctx, nil, custody.RecordParams{OrgID: e.org.ID, LockoutID: e.lockout.ID, Kind: kind, Subject: subject, Payload: []byte(payload), Parents: ph})
		if err != nil {
			t.Fatalf("Record(%s, %s) = %v", kind, subject, err)
		}
		return n
	}
	root := rec(custody.KindLockout, "", `{"user":"alice@acme.example"}`)
	capture := rec(custody.KindUsageCapture, "openai", `{"events":12}`, root)
	conf := rec(custody.KindProviderConfirmation, "openai", `{"removed":true}`, root, capture)
	ack := rec(custody.KindDeviceAck, "dev_1", `{"applied":true}`, root)
	return []store.CustodyNode{root, capture, conf, ack}
}

// TestNodeHashKnownAnswer pins the encoding the package documentation
// specifies; the expected value was computed with its Python recipe.
func TestNodeHashKnownAnswer(t *testing.T) {
	t.Parallel()
	pa, pb := sha256.Sum256([]byte("parent a")), sha256.Sum256([]byte("parent b"))
	at := time.UnixMicro(1741064767123456).In(time.FixedZone("CET", 3600))
	got := custody.NodeHash("org_1", "lck_1", "provider_confirmation", "openai", [][]byte{pa[:], pb[:]},
		custody.PayloadHash([]byte(`{"removed":true}`)), at)
	const want = "aa6b6cdf7889d96381c5366e38176693ec023c26e71b68dfd0b8835d345fa567"
	if hex.EncodeToString(got) != want {
		t.Errorf("NodeHash = %x; want %s", got, want)
	}
}

func TestRecordIsIdempotentPerEvent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nodes := e.recordLockout(t)
	again, err := e.svc.Record(e.ctx, nil, custody.RecordParams{OrgID: e.org.ID, LockoutID: e.lockout.ID,
		Kind: custody.KindProviderConfirmation, Subject: "openai", Payload: []byte(`{"removed":true,"retry":1}`), Parents: [][]byte{nodes[0].Hash}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Hash, nodes[2].Hash) || again.Index != 2 {
		t.Errorf("Record(retried confirmation) = node %d %x; want node 2 %x", again.Index, again.Hash, nodes[2].Hash)
	}
	if size, _ := e.st.CustodyLogSize(e.ctx, e.org.ID); size != 4 {
		t.Errorf("log size after a retried Record = %d; want 4", size)
	}
	// Inside the caller's transaction, rolled back: nothing stays.
	err = e.st.InTx(e.ctx, func(st store.Store, _ any) error {
		if _, err := e.svc.Record(e.ctx, st, custody.RecordParams{OrgID: e.org.ID, LockoutID: e.lockout.ID, Kind: custody.KindSnapshot, Payload: []byte("pdf")}); err != nil {
			return err
		}
		return errors.New("step failed")
	})
	if err == nil {
		t.Fatal("InTx = nil; want the step's error")
	}
	if size, _ := e.st.CustodyLogSize(e.ctx, e.org.ID); size != 4 {
		t.Errorf("log size after a rolled-back Record = %d; want 4", size)
	}
}

func TestStampedNodesVerify(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nodes := e.recordLockout(t)
	n, err := e.svc.StampPending(e.ctx, e.org.ID, e.lockout.ID)
	if err != nil || n != 4 {
		t.Fatalf("StampPending = %d, %v; want 4 stamped", n, err)
	}
	if n, err := e.svc.StampPending(e.ctx, e.org.ID, ""); err != nil || n != 0 {
		t.Errorf("StampPending again = %d, %v; want 0", n, err)
	}
	rootPEM := filepath.Join(e.dir, "tsa-root.pem")
	if err := os.WriteFile(rootPEM, e.local.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	roots, _ := tsa.ParseRootsPEM(e.local.RootPEM())
	for _, sn := range nodes {
		stored, err := e.st.GetCustodyNode(e.ctx, e.org.ID, sn.Hash)
		if err != nil {
			t.Fatal(err)
		}
		// Published as JSON and read back, as a third party receives it.
		b, err := json.Marshal(custody.NodeFromStore(stored))
		if err != nil {
			t.Fatal(err)
		}
		var pub custody.Node
		if err := json.Unmarshal(b, &pub); err != nil {
			t.Fatal(err)
		}
		tok, err := custody.VerifyNode(pub, nil, roots)
		if err != nil {
			t.Fatalf("VerifyNode(%s) = %v", pub.Kind, err)
		}
		if !tok.Time.Equal(stored.Token.GenTime) {
			t.Errorf("token time %v; stored %v", tok.Time, stored.Token.GenTime)
		}
		tokPath := filepath.Join(e.dir, pub.Hash+".tst")
		if err := os.WriteFile(tokPath, pub.Token, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "ts", "-verify", "-digest", pub.Hash, "-in", tokPath, "-token_in", "-CAfile", rootPEM).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Errorf("openssl ts -verify (%s) = %v\n%s", pub.Kind, err, out)
		}

		// Any change to a published node is caught.
		for name, change := range map[string]func(*custody.Node){
			"kind":    func(n *custody.Node) { n.Kind = "forged" },
			"payload": func(n *custody.Node) { n.Payload = append(bytes.Clone(n.Payload), ' ') },
			"time":    func(n *custody.Node) { n.At = n.At.Add(time.Microsecond) },
			"parents": func(n *custody.Node) { n.Parents = append(n.Parents, pub.Hash) },
			"lockout": func(n *custody.Node) { n.LockoutID = "lck_other" },
		} {
			bad := pub
			bad.Payload, bad.Parents = bytes.Clone(pub.Payload), append([]string(nil), pub.Parents...)
			change(&bad)
			if _, err := custody.VerifyNode(bad, nil, roots); err == nil {
				t.Errorf("VerifyNode(%s node with changed %s) = nil; want an error", pub.Kind, name)
			}
		}
		// A consistent rewrite (hash recomputed) no longer matches its token.
		bad := pub
		bad.Subject = "someone-else"
		h, _ := bad.ComputeHash()
		bad.Hash = hex.EncodeToString(h)
		if _, err := custody.VerifyNode(bad, nil, roots); err == nil {
			t.Errorf("VerifyNode(rewritten %s node with its hash recomputed) = nil; want the token to refuse it", pub.Kind)
		}
	}
}

func TestCheckpointsAndProofs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nodes := e.recordLockout(t)
	cp1, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	origin := e.svc.Origin(e.org.ID)
	parsed, err := custody.VerifyCheckpoint(cp1.Note, origin, e.svc.VerifierKey())
	if err != nil {
		t.Fatalf("VerifyCheckpoint = %v", err)
	}
	if parsed.Size != 4 || !bytes.Equal(parsed.Hash, cp1.RootHash) {
		t.Errorf("checkpoint says size %d root %x; want 4 and %x", parsed.Size, parsed.Hash, cp1.RootHash)
	}
	// The note's own time-stamp, checked by us and by openssl over the note bytes.
	roots, _ := tsa.ParseRootsPEM(e.local.RootPEM())
	digest := sha256.Sum256(cp1.Note)
	if _, err := tsa.Verify(cp1.Token, digest[:], roots); err != nil {
		t.Errorf("checkpoint token: %v", err)
	}
	notePath, tokPath, rootPath := filepath.Join(e.dir, "cp.note"), filepath.Join(e.dir, "cp.tst"), filepath.Join(e.dir, "root.pem")
	for p, b := range map[string][]byte{notePath: cp1.Note, tokPath: cp1.Token, rootPath: e.local.RootPEM()} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("openssl", "ts", "-verify", "-data", notePath, "-in", tokPath, "-token_in", "-CAfile", rootPath).CombinedOutput(); err != nil {
		t.Errorf("openssl ts -verify -data checkpoint: %v\n%s", err, out)
	}
	// Wrong key, wrong origin, a changed byte: refused.
	other, err := custody.LoadOrCreateCheckpointKey(filepath.Join(e.dir, "other"), "toktra-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custody.VerifyCheckpoint(cp1.Note, origin, other.VerifierKey); err == nil {
		t.Error("VerifyCheckpoint with another key = nil; want an error")
	}
	if _, err := custody.VerifyCheckpoint(cp1.Note, origin+"x", e.svc.VerifierKey()); err == nil {
		t.Error("VerifyCheckpoint with another origin = nil; want an error")
	}
	forged := bytes.Replace(cp1.Note, []byte("\n4\n"), []byte("\n3\n"), 1)
	if _, err := custody.VerifyCheckpoint(forged, origin, e.svc.VerifierKey()); err == nil {
		t.Error("VerifyCheckpoint(size changed) = nil; want an error")
	}

	// Nothing new: the same checkpoint, not handed to the sink twice.
	again, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil || !bytes.Equal(again.Note, cp1.Note) {
		t.Fatalf("Checkpoint again = %v; want the same note", err)
	}
	if len(e.sink.puts) != 1 || e.sink.puts[0].size != 4 || !bytes.Equal(e.sink.puts[0].note, cp1.Note) || !bytes.Equal(e.sink.puts[0].token, cp1.Token) {
		t.Fatalf("sink got %d puts; want checkpoint 4 once", len(e.sink.puts))
	}

	// The log grows: a new checkpoint, consistent with the first.
	snap, err := e.svc.Record(e.ctx, nil, custody.RecordParams{OrgID: e.org.ID, LockoutID: e.lockout.ID, Kind: custody.KindSnapshot, Payload: []byte("pdf sha"), Parents: [][]byte{nodes[2].Hash, nodes[3].Hash}})
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil || cp2.Size != 5 {
		t.Fatalf("Checkpoint after growth = size %d, %v; want 5", cp2.Size, err)
	}
	cons, err := e.svc.ConsistencyProof(e.ctx, e.org.ID, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := custody.VerifyConsistency(4, 5, cons, cp1.RootHash, cp2.RootHash); err != nil {
		t.Errorf("VerifyConsistency(4, 5) = %v", err)
	}
	for i, n := range append(nodes, snap) {
		for _, cp := range []store.CustodyCheckpoint{cp1, cp2} {
			if uint64(i) >= cp.Size {
				continue
			}
			p, err := e.svc.InclusionProof(e.ctx, e.org.ID, uint64(i), cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := custody.VerifyInclusion(n.Hash, uint64(i), cp.Size, p, cp.RootHash); err != nil {
				t.Errorf("VerifyInclusion(node %d, size %d) = %v", i, cp.Size, err)
			}
			if err := custody.VerifyInclusion(snap.Hash, uint64(i), cp.Size, p, cp.RootHash); err == nil && i != 4 {
				t.Errorf("VerifyInclusion(another node at %d, size %d) = nil; want an error", i, cp.Size)
			}
		}
	}
	if _, err := e.svc.InclusionProof(e.ctx, e.org.ID, 0, 6); !errors.Is(err, custody.ErrBeyondLog) {
		t.Errorf("InclusionProof(size 6 of 5) = %v; want ErrBeyondLog", err)
	}
	if len(e.sink.puts) != 2 || e.sink.puts[1].size != 5 {
		t.Errorf("sink puts = %d; want the second checkpoint handed over", len(e.sink.puts))
	}
}

// Someone with write access to the database file drops the trigger and
// rewrites a node, recomputing its hash so it looks self-consistent. The
// customer's kept checkpoint and the node's token both catch it.
func TestRewrittenNodeBreaksVerification(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nodes := e.recordLockout(t)
	if _, err := e.svc.StampPending(e.ctx, e.org.ID, ""); err != nil {
		t.Fatal(err)
	}
	kept, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil {
		t.Fatal(err)
	}

	victim := nodes[2]
	payload := []byte(`{"removed":false}`)
	forgedHash := custody.NodeHash(e.org.ID, victim.LockoutID, victim.Kind, victim.Subject, victim.Parents, custody.PayloadHash(payload), victim.At)
	raw, err := sql.Open("sqlite", e.dbPath+"?_busy_timeout=10000&_pragma=foreign_keys(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(e.ctx, "UPDATE custody_nodes SET payload = ?1 WHERE idx = 2", payload); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE with the trigger in place = %v; want the append-only refusal", err)
	}
	for _, stmt := range []string{
		"DROP TRIGGER custody_nodes_no_update",
		"DROP TRIGGER custody_tokens_no_update",
	} {
		if _, err := raw.ExecContext(e.ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, stmt := range []string{
		"UPDATE custody_tokens SET node_hash = ?2 WHERE node_hash = ?3",
		"UPDATE custody_nodes SET payload = ?1, payload_hash = ?4, hash = ?2 WHERE hash = ?3",
	} {
		if _, err := raw.ExecContext(e.ctx, stmt, payload, forgedHash, victim.Hash, custody.PayloadHash(payload)); err != nil {
			t.Fatalf("rewriting: %v", err)
		}
	}

	rewritten, err := e.st.GetCustodyNode(e.ctx, e.org.ID, forgedHash)
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := tsa.ParseRootsPEM(e.local.RootPEM())
	if _, err := custody.VerifyNode(custody.NodeFromStore(rewritten), nil, roots); err == nil {
		t.Error("VerifyNode(rewritten node) = nil; want its token to refuse the new hash")
	}
	// The log now has another root at the kept size, so nothing the
	// server can produce proves the rewritten node against the kept
	// checkpoint, nor the grown log consistent with it.
	root, err := e.svc.RootAt(e.ctx, e.org.ID, kept.Size)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(root, kept.RootHash) {
		t.Fatal("root after the rewrite equals the kept checkpoint's")
	}
	p, err := e.svc.InclusionProof(e.ctx, e.org.ID, 2, kept.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := custody.VerifyInclusion(forgedHash, 2, kept.Size, p, kept.RootHash); err == nil {
		t.Error("VerifyInclusion(rewritten node, kept checkpoint) = nil; want an error")
	}
	if _, err := e.svc.Record(e.ctx, nil, custody.RecordParams{OrgID: e.org.ID, LockoutID: e.lockout.ID, Kind: custody.KindSnapshot, Payload: []byte("pdf")}); err != nil {
		t.Fatal(err)
	}
	grown, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.svc.ConsistencyProof(e.ctx, e.org.ID, kept.Size, grown.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := custody.VerifyConsistency(kept.Size, grown.Size, cons, kept.RootHash, grown.RootHash); err == nil {
		t.Error("VerifyConsistency(kept checkpoint, grown log after a rewrite) = nil; want an error")
	}
}

func TestCheckpointSinkRetried(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.recordLockout(t)
	e.sink.fail = true
	cp, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err == nil {
		t.Fatal("Checkpoint with the sink down = nil; want an error")
	}
	e.sink.fail = false
	again, err := e.svc.Checkpoint(e.ctx, e.org.ID)
	if err != nil {
		t.Fatalf("Checkpoint after the sink recovered = %v", err)
	}
	if !bytes.Equal(again.Note, cp.Note) || !bytes.Equal(again.Token, cp.Token) {
		t.Error("the retried checkpoint differs from the one recorded")
	}
	if len(e.sink.puts) != 1 || !bytes.Equal(e.sink.puts[0].note, cp.Note) {
		t.Errorf("sink puts = %d; want the recorded checkpoint once", len(e.sink.puts))
	}
}

func TestCheckpointKeyFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "custody")
	k1, err := custody.LoadOrCreateCheckpointKey(dir, "toktra-test")
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, custody.CheckpointKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, custody.CheckpointVerifierKeyFile))
	if err != nil || strings.TrimSpace(string(pub)) != k1.VerifierKey {
		t.Errorf("published key %q; want %q", pub, k1.VerifierKey)
	}
	k2, err := custody.LoadOrCreateCheckpointKey(dir, "toktra-test")
	if err != nil || k2.VerifierKey != k1.VerifierKey {
		t.Errorf("reloaded key %q, %v; want %q", k2.VerifierKey, err, k1.VerifierKey)
	}
	if err := os.Chmod(filepath.Join(dir, custody.CheckpointKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := custody.LoadOrCreateCheckpointKey(dir, "toktra-test"); err == nil {
		t.Error("LoadOrCreateCheckpointKey with a readable key = nil; want a refusal")
	}
}
