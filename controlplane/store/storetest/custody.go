package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

var custodyTests = []struct {
	name string
	run  func(t *testing.T, f *fixture)
}{
	{"CustodyAppend", testCustodyAppend},
	{"CustodyAppendRefuses", testCustodyAppendRefuses},
	{"CustodyTokens", testCustodyTokens},
	{"CustodyList", testCustodyList},
	{"CustodyCheckpoints", testCustodyCheckpoints},
	{"CustodyConcurrentAppends", testCustodyConcurrentAppends},
	{"CustodyInTx", testCustodyInTx},
}

// exerciseCustody runs the CustodyStore tests, each in parallel with its own store.
func exerciseCustody(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tt := range custodyTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, setup(t, newStore))
		})
	}
}

// custodyParams is a node of lockoutID whose hash is derived from its key
// (the store does not compute node hashes; package custody does).
func custodyParams(orgID, lockoutID, kind, subject string, parents ...[]byte) store.AppendCustodyNodeParams {
	return store.AppendCustodyNodeParams{
		OrgID: orgID, LockoutID: lockoutID, Kind: kind, Subject: subject,
		Hash:        hashOf("node " + orgID + lockoutID + kind + subject),
		Parents:     parents,
		PayloadHash: hashOf("payload " + kind + subject),
		Payload:     []byte(`{"kind":"` + kind + `"}`),
		At:          base,
	}
}

func (f *fixture) appendNode(t *testing.T, p store.AppendCustodyNodeParams) store.CustodyNode {
	t.Helper()
	n, created, err := f.s.AppendCustodyNode(f.ctx, p)
	if err != nil {
		t.Fatalf("AppendCustodyNode(%s/%s) error = %v", p.Kind, p.Subject, err)
	}
	if !created {
		t.Fatalf("AppendCustodyNode(%s/%s) created = false; want a new node", p.Kind, p.Subject)
	}
	return n
}

// custodyLockout makes a user and a lockout in org.
func (f *fixture) custodyLockout(t *testing.T, orgID, email string) store.Lockout {
	t.Helper()
	return f.lockout(t, orgID, f.user(t, orgID, email).ID)
}

func testCustodyAppend(t *testing.T, f *fixture) {
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	root := f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "lockout", ""))
	capture := f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "usage_capture", "openai", root.Hash))
	conf := f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "provider_confirmation", "openai", root.Hash, capture.Hash))

	want := store.CustodyNode{
		OrgID: f.orgA.ID, Index: 2, Hash: conf.Hash, LockoutID: l.ID, Kind: "provider_confirmation", Subject: "openai",
		Parents: [][]byte{root.Hash, capture.Hash}, PayloadHash: hashOf("payload provider_confirmationopenai"),
		Payload: []byte(`{"kind":"provider_confirmation"}`), At: utc(base),
	}
	if d := diff(want, conf); d != "" {
		t.Errorf("AppendCustodyNode returned (-want +got):\n%s", d)
	}
	if root.Index != 0 || capture.Index != 1 {
		t.Errorf("indexes = %d, %d; want 0, 1", root.Index, capture.Index)
	}
	if len(root.Parents) != 0 || root.Parents == nil {
		t.Errorf("root Parents = %#v; want an empty, non-nil list", root.Parents)
	}
	got, err := f.s.GetCustodyNode(f.ctx, f.orgA.ID, conf.Hash)
	noErr(t, "GetCustodyNode", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetCustodyNode (-want +got):\n%s", d)
	}
	got, err = f.s.GetCustodyNodeAt(f.ctx, f.orgA.ID, 2)
	noErr(t, "GetCustodyNodeAt", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetCustodyNodeAt (-want +got):\n%s", d)
	}

	// The same event again (a retried job), even with another payload and
	// time: the first node is returned and nothing is added.
	again := custodyParams(f.orgA.ID, l.ID, "provider_confirmation", "openai", root.Hash)
	again.Payload, again.At, again.Hash = []byte("other"), base.Add(time.Hour), hashOf("other")
	n, created, err := f.s.AppendCustodyNode(f.ctx, again)
	noErr(t, "AppendCustodyNode(again)", err)
	if created {
		t.Error("AppendCustodyNode(same lockout, kind, subject) created = true; want false")
	}
	if d := diff(want, n); d != "" {
		t.Errorf("AppendCustodyNode(again) (-want +got):\n%s", d)
	}
	size, err := f.s.CustodyLogSize(f.ctx, f.orgA.ID)
	noErr(t, "CustodyLogSize", err)
	if size != 3 {
		t.Errorf("CustodyLogSize = %d; want 3", size)
	}
	leaves, err := f.s.CustodyLeaves(f.ctx, f.orgA.ID, 10)
	noErr(t, "CustodyLeaves", err)
	if d := diff([][]byte{root.Hash, capture.Hash, conf.Hash}, leaves); d != "" {
		t.Errorf("CustodyLeaves(10) (-want +got):\n%s", d)
	}
	leaves, err = f.s.CustodyLeaves(f.ctx, f.orgA.ID, 2)
	noErr(t, "CustodyLeaves", err)
	if len(leaves) != 2 {
		t.Errorf("CustodyLeaves(2) = %d leaves; want 2", len(leaves))
	}

	// Org B's log is its own: empty, and blind to A's nodes.
	size, err = f.s.CustodyLogSize(f.ctx, f.orgB.ID)
	noErr(t, "CustodyLogSize(B)", err)
	if size != 0 {
		t.Errorf("CustodyLogSize(B) = %d; want 0", size)
	}
	_, err = f.s.GetCustodyNode(f.ctx, f.orgB.ID, conf.Hash)
	wantErr(t, "GetCustodyNode(B, A's node)", err, store.ErrNotFound)
	_, err = f.s.GetCustodyNodeAt(f.ctx, f.orgB.ID, 0)
	wantErr(t, "GetCustodyNodeAt(B, 0)", err, store.ErrNotFound)
	lb := f.custodyLockout(t, f.orgB.ID, "bob@b.example")
	nb := f.appendNode(t, custodyParams(f.orgB.ID, lb.ID, "lockout", ""))
	if nb.Index != 0 {
		t.Errorf("org B's first node has index %d; want 0", nb.Index)
	}
}

func testCustodyAppendRefuses(t *testing.T, f *fixture) {
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	lb := f.custodyLockout(t, f.orgB.ID, "bob@b.example")
	nb := f.appendNode(t, custodyParams(f.orgB.ID, lb.ID, "lockout", ""))
	for _, tc := range []struct {
		name   string
		change func(p *store.AppendCustodyNodeParams)
		want   error
	}{
		{"unknown parent", func(p *store.AppendCustodyNodeParams) { p.Parents = [][]byte{hashOf("nothing")} }, store.ErrNotFound},
		{"parent in another org", func(p *store.AppendCustodyNodeParams) { p.Parents = [][]byte{nb.Hash} }, store.ErrNotFound},
		{"lockout of another org", func(p *store.AppendCustodyNodeParams) { p.LockoutID = lb.ID }, store.ErrNotFound},
		{"unknown lockout", func(p *store.AppendCustodyNodeParams) { p.LockoutID = "lck_nope" }, store.ErrNotFound},
		{"no kind", func(p *store.AppendCustodyNodeParams) { p.Kind = "" }, store.ErrInvalidCustodyNode},
		{"no time", func(p *store.AppendCustodyNodeParams) { p.At = time.Time{} }, store.ErrInvalidCustodyNode},
		{"short hash", func(p *store.AppendCustodyNodeParams) { p.Hash = p.Hash[:31] }, store.ErrInvalidCustodyNode},
		{"short payload hash", func(p *store.AppendCustodyNodeParams) { p.PayloadHash = nil }, store.ErrInvalidCustodyNode},
		{"short parent", func(p *store.AppendCustodyNodeParams) { p.Parents = [][]byte{{1, 2}} }, store.ErrInvalidCustodyNode},
		{"NUL in subject", func(p *store.AppendCustodyNodeParams) { p.Subject = "a\x00b" }, store.ErrInvalidCustodyNode},
		{"kind too long", func(p *store.AppendCustodyNodeParams) { p.Kind = strings.Repeat("k", 257) }, store.ErrInvalidCustodyNode},
		{"payload too big", func(p *store.AppendCustodyNodeParams) { p.Payload = make([]byte, store.MaxCustodyPayloadBytes+1) }, store.ErrInvalidCustodyNode},
		{"duplicate hash", func(p *store.AppendCustodyNodeParams) { p.Hash, p.OrgID, p.LockoutID = nb.Hash, f.orgB.ID, lb.ID }, store.ErrConflict},
	} {
		p := custodyParams(f.orgA.ID, l.ID, "usage_capture", tc.name)
		tc.change(&p)
		_, _, err := f.s.AppendCustodyNode(f.ctx, p)
		wantErr(t, "AppendCustodyNode("+tc.name+")", err, tc.want)
	}
	for _, org := range []string{f.orgA.ID, f.orgB.ID} {
		size, err := f.s.CustodyLogSize(f.ctx, org)
		noErr(t, "CustodyLogSize", err)
		if want := map[bool]uint64{true: 0, false: 1}[org == f.orgA.ID]; size != want {
			t.Errorf("CustodyLogSize(%s) after refusals = %d; want %d", org, size, want)
		}
	}
}

func testCustodyTokens(t *testing.T, f *fixture) {
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	n := f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "lockout", ""))
	p := store.PutCustodyTokenParams{OrgID: f.orgA.ID, NodeHash: n.Hash, Token: []byte("token-1"), GenTime: base, TSA: "CN=Test TSA", StampedAt: base.Add(time.Second)}
	tok, created, err := f.s.PutCustodyToken(f.ctx, p)
	noErr(t, "PutCustodyToken", err)
	want := store.CustodyToken{OrgID: f.orgA.ID, NodeHash: n.Hash, Token: []byte("token-1"), GenTime: utc(base), TSA: "CN=Test TSA", StampedAt: utc(base.Add(time.Second))}
	if !created {
		t.Error("PutCustodyToken created = false; want true")
	}
	if d := diff(want, tok); d != "" {
		t.Errorf("PutCustodyToken (-want +got):\n%s", d)
	}
	// A second token never replaces the first.
	p2 := p
	p2.Token, p2.GenTime = []byte("token-2"), base.Add(time.Hour)
	tok, created, err = f.s.PutCustodyToken(f.ctx, p2)
	noErr(t, "PutCustodyToken(second)", err)
	if created {
		t.Error("PutCustodyToken(second) created = true; want false")
	}
	if d := diff(want, tok); d != "" {
		t.Errorf("PutCustodyToken(second) (-want +got):\n%s", d)
	}
	got, err := f.s.GetCustodyNode(f.ctx, f.orgA.ID, n.Hash)
	noErr(t, "GetCustodyNode", err)
	if got.Token == nil {
		t.Fatal("GetCustodyNode Token = nil; want the stored token")
	}
	if d := diff(want, *got.Token); d != "" {
		t.Errorf("GetCustodyNode Token (-want +got):\n%s", d)
	}

	bad := p
	bad.NodeHash = hashOf("no such node")
	_, _, err = f.s.PutCustodyToken(f.ctx, bad)
	wantErr(t, "PutCustodyToken(unknown node)", err, store.ErrNotFound)
	bad = p
	bad.OrgID = f.orgB.ID
	_, _, err = f.s.PutCustodyToken(f.ctx, bad)
	wantErr(t, "PutCustodyToken(org B, A's node)", err, store.ErrNotFound)
	bad = p
	bad.Token = nil
	_, _, err = f.s.PutCustodyToken(f.ctx, bad)
	wantErr(t, "PutCustodyToken(empty token)", err, store.ErrInvalidCustodyNode)
}

func testCustodyList(t *testing.T, f *fixture) {
	l1 := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	l2 := f.custodyLockout(t, f.orgA.ID, "carol@a.example")
	var nodes []store.CustodyNode
	for i := range 6 {
		l := []store.Lockout{l1, l2}[i%2]
		nodes = append(nodes, f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "device_ack", fmt.Sprint(i))))
	}
	for _, n := range nodes[:2] {
		_, _, err := f.s.PutCustodyToken(f.ctx, store.PutCustodyTokenParams{OrgID: f.orgA.ID, NodeHash: n.Hash, Token: []byte("t"), GenTime: base, StampedAt: base})
		noErr(t, "PutCustodyToken", err)
	}
	indexes := func(ns []store.CustodyNode) []uint64 {
		var out []uint64
		for _, n := range ns {
			out = append(out, n.Index)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		p    store.ListCustodyNodesParams
		want []uint64
	}{
		{"all", store.ListCustodyNodesParams{OrgID: f.orgA.ID, AfterIndex: -1}, []uint64{0, 1, 2, 3, 4, 5}},
		{"lockout 1", store.ListCustodyNodesParams{OrgID: f.orgA.ID, LockoutID: l1.ID, AfterIndex: -1}, []uint64{0, 2, 4}},
		{"unstamped", store.ListCustodyNodesParams{OrgID: f.orgA.ID, Unstamped: true, AfterIndex: -1}, []uint64{2, 3, 4, 5}},
		{"after 3, limit 1", store.ListCustodyNodesParams{OrgID: f.orgA.ID, AfterIndex: 3, Limit: 1}, []uint64{4}},
		{"org B", store.ListCustodyNodesParams{OrgID: f.orgB.ID, AfterIndex: -1}, nil},
		{"org B, A's lockout", store.ListCustodyNodesParams{OrgID: f.orgB.ID, LockoutID: l1.ID, AfterIndex: -1}, nil},
	} {
		ns, err := f.s.ListCustodyNodes(f.ctx, tc.p)
		noErr(t, "ListCustodyNodes("+tc.name+")", err)
		if d := diff(tc.want, indexes(ns)); d != "" {
			t.Errorf("ListCustodyNodes(%s) indexes (-want +got):\n%s", tc.name, d)
		}
	}
	ns, err := f.s.ListCustodyNodes(f.ctx, store.ListCustodyNodesParams{OrgID: f.orgA.ID, AfterIndex: -1, Limit: 1})
	noErr(t, "ListCustodyNodes", err)
	if len(ns) != 1 || ns[0].Token == nil || string(ns[0].Token.Token) != "t" {
		t.Errorf("ListCustodyNodes(limit 1) = %+v; want node 0 with its token", ns)
	}
}

func testCustodyCheckpoints(t *testing.T, f *fixture) {
	_, err := f.s.LatestCustodyCheckpoint(f.ctx, f.orgA.ID)
	wantErr(t, "LatestCustodyCheckpoint(none)", err, store.ErrNotFound)
	add := func(org string, size uint64, note string) (store.CustodyCheckpoint, bool) {
		t.Helper()
		c, created, err := f.s.AddCustodyCheckpoint(f.ctx, store.AddCustodyCheckpointParams{
			OrgID: org, Size: size, RootHash: hashOf(note), Note: []byte(note), Token: []byte("tok " + note), CreatedAt: base,
		})
		noErr(t, "AddCustodyCheckpoint", err)
		return c, created
	}
	c1, created := add(f.orgA.ID, 1, "one")
	if !created {
		t.Error("AddCustodyCheckpoint(1) created = false")
	}
	want := store.CustodyCheckpoint{OrgID: f.orgA.ID, Size: 1, RootHash: hashOf("one"), Note: []byte("one"), Token: []byte("tok one"), CreatedAt: utc(base)}
	if d := diff(want, c1); d != "" {
		t.Errorf("AddCustodyCheckpoint (-want +got):\n%s", d)
	}
	add(f.orgA.ID, 5, "five")
	add(f.orgB.ID, 9, "b nine")
	if c, created := add(f.orgA.ID, 1, "one rewritten"); created || string(c.Note) != "one" {
		t.Errorf("AddCustodyCheckpoint(1 again) = %q, created %v; want the first note kept", c.Note, created)
	}
	latest, err := f.s.LatestCustodyCheckpoint(f.ctx, f.orgA.ID)
	noErr(t, "LatestCustodyCheckpoint", err)
	if latest.Size != 5 {
		t.Errorf("LatestCustodyCheckpoint size = %d; want 5 (not org B's 9)", latest.Size)
	}
	got, err := f.s.GetCustodyCheckpoint(f.ctx, f.orgA.ID, 1)
	noErr(t, "GetCustodyCheckpoint", err)
	if d := diff(want, got); d != "" {
		t.Errorf("GetCustodyCheckpoint (-want +got):\n%s", d)
	}
	_, err = f.s.GetCustodyCheckpoint(f.ctx, f.orgB.ID, 1)
	wantErr(t, "GetCustodyCheckpoint(B, A's size)", err, store.ErrNotFound)
	_, _, err = f.s.AddCustodyCheckpoint(f.ctx, store.AddCustodyCheckpointParams{OrgID: f.orgA.ID, Size: 2, RootHash: []byte{1}, Note: []byte("n"), Token: []byte("t")})
	wantErr(t, "AddCustodyCheckpoint(short root)", err, store.ErrInvalidCustodyNode)
}

// Appends from many goroutines get every index exactly once.
func testCustodyConcurrentAppends(t *testing.T, f *fixture) {
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, _, err := f.s.AppendCustodyNode(f.ctx, custodyParams(f.orgA.ID, l.ID, "device_ack", fmt.Sprint("dev", i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "AppendCustodyNode(concurrent)", err)
	}
	ns, err := f.s.ListCustodyNodes(f.ctx, store.ListCustodyNodesParams{OrgID: f.orgA.ID, AfterIndex: -1})
	noErr(t, "ListCustodyNodes", err)
	if len(ns) != n {
		t.Fatalf("ListCustodyNodes = %d nodes; want %d", len(ns), n)
	}
	for i, node := range ns {
		if node.Index != uint64(i) {
			t.Errorf("node %d has index %d; want %d (no gaps, no repeats)", i, node.Index, i)
		}
	}
}

func testCustodyInTx(t *testing.T, f *fixture) {
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	boom := errors.New("boom")
	err := f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		if _, _, err := st.AppendCustodyNode(f.ctx, custodyParams(f.orgA.ID, l.ID, "lockout", "")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx error = %v; want boom", err)
	}
	size, err := f.s.CustodyLogSize(f.ctx, f.orgA.ID)
	noErr(t, "CustodyLogSize", err)
	if size != 0 {
		t.Errorf("CustodyLogSize after a rolled-back InTx = %d; want 0", size)
	}
	var idx []uint64
	err = f.s.InTx(f.ctx, func(st store.Store, _ any) error {
		a, _, err := st.AppendCustodyNode(f.ctx, custodyParams(f.orgA.ID, l.ID, "lockout", ""))
		if err != nil {
			return err
		}
		b, _, err := st.AppendCustodyNode(f.ctx, custodyParams(f.orgA.ID, l.ID, "usage_capture", "openai", a.Hash))
		idx = append(idx, a.Index, b.Index)
		return err
	})
	noErr(t, "InTx", err)
	if d := diff([]uint64{0, 1}, idx); d != "" {
		t.Errorf("indexes in InTx (-want +got):\n%s", d)
	}
}

// ExerciseCustodyAppendOnly checks the database itself refuses to change or
// remove custody nodes, tokens and checkpoints. s must be a fresh store and
// exec must run a statement on the same database through a raw connection
// that bypasses the store (as a person with database access would),
// returning the database's error.
func ExerciseCustodyAppendOnly(t *testing.T, s store.Store, exec func(sql string) error) {
	t.Helper()
	f := &fixture{s: s, ctx: t.Context()}
	f.orgA = f.createOrg(t, "Org A")
	l := f.custodyLockout(t, f.orgA.ID, "alice@a.example")
	n := f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "lockout", ""))
	f.appendNode(t, custodyParams(f.orgA.ID, l.ID, "usage_capture", "openai", n.Hash))
	_, _, err := f.s.PutCustodyToken(f.ctx, store.PutCustodyTokenParams{OrgID: f.orgA.ID, NodeHash: n.Hash, Token: []byte("t"), GenTime: base, StampedAt: base})
	noErr(t, "PutCustodyToken", err)
	_, _, err = f.s.AddCustodyCheckpoint(f.ctx, store.AddCustodyCheckpointParams{OrgID: f.orgA.ID, Size: 2, RootHash: hashOf("r"), Note: []byte("n"), Token: []byte("t"), CreatedAt: base})
	noErr(t, "AddCustodyCheckpoint", err)
	snapshot := func() any {
		ns, err := f.s.ListCustodyNodes(f.ctx, store.ListCustodyNodesParams{OrgID: f.orgA.ID, AfterIndex: -1})
		noErr(t, "ListCustodyNodes", err)
		c, err := f.s.LatestCustodyCheckpoint(f.ctx, f.orgA.ID)
		noErr(t, "LatestCustodyCheckpoint", err)
		return []any{ns, c}
	}
	before := snapshot()
	for _, table := range []string{"custody_nodes", "custody_tokens", "custody_checkpoints"} {
		if err := exec("SELECT count(*) FROM " + table); err != nil {
			t.Fatalf("exec(SELECT) error = %v; the raw connection must reach %s", err, table)
		}
	}
	for _, stmt := range []string{
		"UPDATE custody_nodes SET kind = 'forged'",
		"UPDATE custody_nodes SET payload = payload WHERE idx = 1",
		"DELETE FROM custody_nodes WHERE idx = 1",
		"DELETE FROM custody_nodes",
		"UPDATE custody_tokens SET token = token",
		"DELETE FROM custody_tokens",
		"UPDATE custody_checkpoints SET note = note",
		"DELETE FROM custody_checkpoints",
	} {
		err := exec(stmt)
		if err == nil {
			t.Errorf("exec(%q) error = nil; want the database to refuse it", stmt)
		} else if !strings.Contains(err.Error(), "append-only") {
			t.Errorf("exec(%q) error = %v; want the append-only trigger's refusal", stmt, err)
		}
	}
	if d := diff(before, snapshot()); d != "" {
		t.Errorf("custody records changed by refused statements (-before +after):\n%s", d)
	}
}
