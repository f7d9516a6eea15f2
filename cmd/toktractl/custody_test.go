package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// evidence is what a third party is handed: files only.
type evidence struct {
	dir, node, root, checkpoint, inclusion, vkey string
	nodeJSON                                     custody.Node
}

func makeEvidence(t *testing.T) evidence {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local, err := tsa.LoadOrCreateLocal(filepath.Join(dir, "tsa"), clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := custody.LoadOrCreateCheckpointKey(filepath.Join(dir, "custody"), "toktra-test")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := custody.NewService(custody.Config{Store: st, TSA: local, Key: key, Origin: "toktra.test/custody"})
	if err != nil {
		t.Fatal(err)
	}
	org, _ := st.CreateOrg(ctx, store.CreateOrgParams{Name: "Acme", CreatedAt: time.Now()})
	u, _ := st.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "a@acme.example", CreatedAt: time.Now()})
	l, _, err := st.CreateLockout(ctx, store.CreateLockoutParams{OrgID: org.ID, UserID: u.ID, Trigger: "test", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	root, err := svc.Record(ctx, nil, custody.RecordParams{OrgID: org.ID, LockoutID: l.ID, Kind: custody.KindLockout, Payload: []byte(`{"by":"admin"}`)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := svc.Record(ctx, nil, custody.RecordParams{OrgID: org.ID, LockoutID: l.ID, Kind: custody.KindDeviceAck, Subject: "dev_1",
		Payload: []byte(`{"applied":true}`), Parents: [][]byte{root.Hash}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.StampPending(ctx, org.ID, ""); err != nil {
		t.Fatal(err)
	}
	cp, err := svc.Checkpoint(ctx, org.ID)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := svc.InclusionProof(ctx, org.ID, n.Index, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.GetCustodyNode(ctx, org.ID, n.Hash)
	if err != nil {
		t.Fatal(err)
	}
	e := evidence{dir: dir, vkey: svc.VerifierKey(), nodeJSON: custody.NodeFromStore(stored)}
	write := func(name string, v any) string {
		t.Helper()
		var b []byte
		switch v := v.(type) {
		case []byte:
			b = v
		default:
			b, _ = json.Marshal(v)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.node = write("node.json", e.nodeJSON)
	e.root = write("tsa-root.pem", local.RootPEM())
	e.checkpoint = write("checkpoint.note", cp.Note)
	hexProof := make([]string, len(proof))
	for i, p := range proof {
		hexProof[i] = hex.EncodeToString(p)
	}
	e.inclusion = write("inclusion.json", map[string]any{"node_hash": hex.EncodeToString(n.Hash), "index": n.Index, "size": cp.Size, "proof": hexProof})
	return e
}

func runCLI(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestCustodyVerify(t *testing.T) {
	t.Parallel()
	e := makeEvidence(t)
	tokPath := filepath.Join(e.dir, "node.tst")
	out, err := runCLI("custody", "verify", "--node", e.node, "--tsa-root", e.root, "--write-token", tokPath,
		"--checkpoint", e.checkpoint, "--verifier-key", e.vkey, "--inclusion", e.inclusion)
	if err != nil {
		t.Fatalf("custody verify = %v\n%s", err, out)
	}
	for _, want := range []string{"hash: OK", "time-stamp: OK", "signature OK; node included at index 1: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("custody verify output lacks %q:\n%s", want, out)
		}
	}
	// The printed openssl command, run as printed, agrees.
	var cmdLine string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "openssl ts -verify") {
			cmdLine = strings.TrimSpace(line)
		}
	}
	fields := strings.Fields(cmdLine)
	if len(fields) < 3 {
		t.Fatalf("no openssl command printed:\n%s", out)
	}
	if got, err := exec.Command(fields[0], fields[1:]...).CombinedOutput(); err != nil || !strings.Contains(string(got), "Verification: OK") {
		t.Errorf("%s = %v\n%s", cmdLine, err, got)
	}
}

func TestCustodyVerifyRefuses(t *testing.T) {
	t.Parallel()
	e := makeEvidence(t)
	other, err := tsa.LoadOrCreateLocal(filepath.Join(e.dir, "other-tsa"), clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := filepath.Join(e.dir, "other-root.pem")
	if err := os.WriteFile(otherRoot, other.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := func(change func(*custody.Node)) string {
		n := e.nodeJSON
		n.Payload = bytes.Clone(n.Payload)
		change(&n)
		b, _ := json.Marshal(n)
		p := filepath.Join(t.TempDir(), "node.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"another TSA root", []string{"--node", e.node, "--tsa-root", otherRoot}},
		{"changed payload", []string{"--node", tampered(func(n *custody.Node) { n.Payload[0] ^= 1 }), "--tsa-root", e.root}},
		{"changed subject, hash recomputed", []string{"--node", tampered(func(n *custody.Node) {
			n.Subject = "dev_2"
			h, _ := n.ComputeHash()
			n.Hash = hex.EncodeToString(h)
		}), "--tsa-root", e.root}},
		{"no token", []string{"--node", tampered(func(n *custody.Node) { n.Token = nil }), "--tsa-root", e.root}},
		{"another log's key", []string{"--node", e.node, "--tsa-root", e.root, "--checkpoint", e.checkpoint,
			"--verifier-key", "toktra-test+00000000+AQ==", "--inclusion", e.inclusion}},
		{"missing --tsa-root", []string{"--node", e.node}},
	} {
		out, err := runCLI(append([]string{"custody", "verify"}, tc.args...)...)
		if err == nil {
			t.Errorf("custody verify (%s) = nil; want an error\n%s", tc.name, out)
		}
	}
}
