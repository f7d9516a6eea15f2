package api

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// newTestCustody is the custody service the test server runs, with the
// local TSA and a checkpoint key in dir.
func newTestCustody(t *testing.T, st store.Store, dir string, clk clock.Clock) *custody.Service {
	t.Helper()
	local, err := tsa.LoadOrCreateLocal(filepath.Join(dir, "tsa"), clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := custody.LoadOrCreateCheckpointKey(filepath.Join(dir, "custody"), "toktra-test")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := custody.NewService(custody.Config{Store: st, TSA: local, Key: key, Origin: "toktra.test/custody", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	testTSARoots.Store(svc, local.RootPEM())
	return svc
}

// recordCustody records a lockout's evidence for tn (as the pipeline will),
// stamps it and checkpoints the org's log; it returns the lockout node's
// hash.
func recordCustody(t *testing.T, f *apiFixture, tn tenant) string {
	t.Helper()
	svc := f.api.custody
	var parents [][]byte
	var first []byte
	for _, ev := range []struct{ kind, subject string }{
		{custody.KindLockout, ""}, {custody.KindProviderConfirmation, "openai"}, {custody.KindDeviceAck, tn.device.ID},
	} {
		n, err := svc.Record(f.ctx, nil, custody.RecordParams{OrgID: tn.org.ID, LockoutID: tn.lockoutID, Kind: ev.kind, Subject: ev.subject,
			Payload: []byte(`{"test":true}`), Parents: parents})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first, parents = n.Hash, [][]byte{n.Hash}
		}
	}
	if _, err := svc.StampPending(f.ctx, tn.org.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Checkpoint(f.ctx, tn.org.ID); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(first)
}

// A customer's walk: fetch and keep the checkpoint, check its signature
// with the published key, fetch each node and check it with the TSA root,
// prove each in the checkpointed tree, and after the log grows prove the
// new checkpoint consistent with the kept one.
func TestCustodyEndpoints(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := f.a
	recordCustody(t, f, a)

	var cp custodyCheckpointView
	if code := f.do(t, a.readKey, "GET", "/v1/custody/checkpoint", "", &cp); code != http.StatusOK {
		t.Fatalf("GET checkpoint = %d", code)
	}
	parsed, err := custody.VerifyCheckpoint([]byte(cp.Note), cp.Origin, cp.VerifierKey)
	if err != nil {
		t.Fatalf("VerifyCheckpoint(published note, published key) = %v", err)
	}
	if parsed.Size != 3 || hex.EncodeToString(parsed.Hash) != cp.RootHash || cp.Size != 3 {
		t.Fatalf("checkpoint = size %d root %x; response says size %d root %s; want 3", parsed.Size, parsed.Hash, cp.Size, cp.RootHash)
	}
	roots := f.tsaRoots(t)
	if _, err := tsa.Verify(cp.TimestampToken, sha256Of([]byte(cp.Note)), roots); err != nil {
		t.Errorf("checkpoint timestamp token: %v", err)
	}

	for i := range cp.Size {
		var inc inclusionProofView
		if code := f.do(t, a.readKey, "GET", "/v1/custody/proofs/inclusion?index="+strconv.FormatUint(i, 10), "", &inc); code != http.StatusOK {
			t.Fatalf("GET inclusion index %d = %d", i, code)
		}
		var node custody.Node
		if code := f.do(t, a.readKey, "GET", "/v1/custody/nodes/"+inc.NodeHash, "", &node); code != http.StatusOK {
			t.Fatalf("GET node %s = %d", inc.NodeHash, code)
		}
		if _, err := custody.VerifyNode(node, nil, roots); err != nil {
			t.Errorf("VerifyNode(node %d) = %v", i, err)
		}
		h, _ := node.ComputeHash()
		if err := custody.VerifyInclusion(h, inc.Index, inc.Size, unhexAll(t, inc.Proof), parsed.Hash); err != nil {
			t.Errorf("VerifyInclusion(node %d, checkpoint) = %v", i, err)
		}
		var byHash inclusionProofView
		if code := f.do(t, a.readKey, "GET", "/v1/custody/proofs/inclusion?hash="+inc.NodeHash, "", &byHash); code != http.StatusOK || byHash.Index != i {
			t.Errorf("GET inclusion by hash = %d, index %d; want 200, %d", code, byHash.Index, i)
		}
	}

	// The log grows; the new checkpoint is proved consistent with the kept one.
	if _, err := f.api.custody.Record(f.ctx, nil, custody.RecordParams{OrgID: a.org.ID, LockoutID: a.lockoutID, Kind: custody.KindSnapshot, Payload: []byte("pdf")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.api.custody.Checkpoint(f.ctx, a.org.ID); err != nil {
		t.Fatal(err)
	}
	var cp2 custodyCheckpointView
	f.do(t, a.readKey, "GET", "/v1/custody/checkpoint", "", &cp2)
	next, err := custody.VerifyCheckpoint([]byte(cp2.Note), cp2.Origin, cp.VerifierKey)
	if err != nil || next.Size != 4 {
		t.Fatalf("new checkpoint: %v (size %d); want size 4", err, next.Size)
	}
	var cons consistencyProofView
	if code := f.do(t, a.readKey, "GET", "/v1/custody/proofs/consistency?from=3", "", &cons); code != http.StatusOK {
		t.Fatalf("GET consistency = %d", code)
	}
	if err := custody.VerifyConsistency(3, 4, unhexAll(t, cons.Proof), parsed.Hash, next.Hash); err != nil {
		t.Errorf("VerifyConsistency(kept 3, new 4) = %v", err)
	}

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v1/custody/nodes/zz", 400},
		{"/v1/custody/nodes/" + hex.EncodeToString(make([]byte, 32)), 404},
		{"/v1/custody/proofs/inclusion", 400},
		{"/v1/custody/proofs/inclusion?index=0&hash=00", 400},
		{"/v1/custody/proofs/inclusion?index=99", 404},
		{"/v1/custody/proofs/inclusion?index=3&size=3", 400},
		{"/v1/custody/proofs/inclusion?index=0&size=99", 400},
		{"/v1/custody/proofs/inclusion?index=-1", 400},
		{"/v1/custody/proofs/consistency", 400},
		{"/v1/custody/proofs/consistency?from=5", 400},
		{"/v1/custody/proofs/consistency?from=1&to=99", 400},
	} {
		if code := f.do(t, a.readKey, "GET", tc.path, "", nil); code != tc.want {
			t.Errorf("GET %s = %d; want %d", tc.path, code, tc.want)
		}
	}
}

// testTSARoots maps each test custody service to its local TSA's root
// PEM, as a customer would be handed it.
var testTSARoots sync.Map

func (f *apiFixture) tsaRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	pemData, ok := testTSARoots.Load(f.api.custody)
	if !ok {
		t.Fatal("no TSA root recorded for the fixture's custody service")
	}
	roots, err := tsa.ParseRootsPEM(pemData.([]byte))
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func unhexAll(t *testing.T, hs []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("proof hash %q: %v", h, err)
		}
		out[i] = b
	}
	return out
}
