package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/custody"
	"github.com/toktra/toktra/controlplane/lockout"
	"github.com/toktra/toktra/controlplane/objectstore/localstore"
	"github.com/toktra/toktra/controlplane/pipeline"
	"github.com/toktra/toktra/controlplane/snapshot"
	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/controlplane/usage"
	"github.com/toktra/toktra/pki"
)

// withEvidence gives the fixture's pipelines steps 3 and 4 on real parts:
// the local TSA, the evidence key from a CA, and the local write-once store.
func (f *fixture) withEvidence(t *testing.T) (*pipeline.Evidence, *tsa.Local) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.LoadOrCreateEvidenceSigner(filepath.Join(dir, "pki"), ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	local, err := tsa.LoadOrCreateLocal(filepath.Join(dir, "tsa"), f.clk, f.log)
	if err != nil {
		t.Fatal(err)
	}
	key, err := custody.LoadOrCreateCheckpointKey(filepath.Join(dir, "custody"), "toktra-test")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := custody.NewService(custody.Config{Store: f.st, TSA: local, Key: key, Origin: "test.example/custody", Clock: f.clk, Logger: f.log})
	if err != nil {
		t.Fatal(err)
	}
	objects, err := localstore.Open(localstore.Config{Dir: filepath.Join(dir, "evidence"), Clock: f.clk, Logger: f.log})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.Evidence{
		Usage:       usage.NewService(f.st),
		Signer:      snapshot.Signer{Key: signer.Signer(), Chain: signer.Chain(), TSA: local, Reason: "test"},
		Timestamper: local,
		TSAs:        []snapshot.TSA{snapshot.TSAFromCertificate("local", "", local.SignerCertificate())},
		Objects:     objects,
		Custody:     cs,
		AckWait:     time.Minute,
		Poll:        20 * time.Millisecond,
	}, local
}

// TestSnapshotAndUpload: once the provider has answered and the device's
// acknowledgement has been waited for, the lockout's snapshot is signed,
// timestamped, stored once and written to the write-once store.
func TestSnapshotAndUpload(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		ev, local := f.withEvidence(t)
		f.evidence = ev
		ctx := context.Background()
		// A device event in the window, so the attached list is not empty.
		if _, err := f.st.AppendDeviceUsage(ctx, store.AppendDeviceUsageParams{OrgID: f.org.ID, DeviceID: f.device.ID, UserID: f.user.ID, BatchSeq: 1, At: f.clk.Now(),
			Events: []store.UsageEvent{{Provider: "openai", Domain: "api.openai.com", RemoteAddr: "198.51.100.7", RemotePort: 443, Protocol: "tcp",
				StartedAt: f.clk.Now().Add(-time.Hour), EndedAt: f.clk.Now().Add(-time.Hour + time.Minute), BytesSent: 4242, BytesReceived: 100}}}); err != nil {
			t.Fatal(err)
		}
		p := f.newPipeline(t)
		start(t, p)
		svc := lockout.NewService(f.st, f.issuer, p, f.clk, f.log)
		res, err := svc.LockUser(ctx, f.org.ID, "alice@example.com", "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		f.waitDone(t, svc, res.Lockout.ID)
		// The device never answers: the snapshot waits until AckWait has
		// passed, and not before.
		time.Sleep(200 * time.Millisecond)
		if _, err := f.st.GetLockoutSnapshot(ctx, f.org.ID, res.Lockout.ID); err == nil {
			t.Fatal("snapshot made before the devices' acknowledgements were waited for")
		}
		f.clk.Advance(2 * time.Minute)
		snap := f.waitUploaded(t, res.Lockout.ID)

		sum := sha256.Sum256(snap.PDF)
		if !bytes.Equal(sum[:], snap.SHA256) {
			t.Errorf("stored SHA-256 does not match the stored PDF")
		}
		if _, err := tsa.Verify(snap.TimestampToken, snap.SHA256, local.Roots()); err != nil {
			t.Errorf("tsa.Verify(snapshot token) = %v; want a valid token over the PDF's hash", err)
		}
		// The write-once store holds exactly these bytes, locked.
		rc, obj, err := ev.Objects.Get(ctx, snap.ObjectKey, snap.VersionID)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(stored, snap.PDF) || obj.RetainUntil.Before(f.clk.Now().AddDate(6, 11, 0)) {
			t.Errorf("stored object %+v (%d bytes, %v); want the PDF, retained 7 years", obj, len(stored), err)
		}
		if err := ev.Objects.Delete(ctx, snap.ObjectKey, snap.VersionID); err == nil {
			t.Error("Delete(snapshot) = nil; want it refused under retention")
		}
		text := pdfText(t, snap.PDF)
		for _, want := range []string{"alice@example.com", res.Lockout.ID, "openai", "laptop"} {
			if !strings.Contains(text, want) {
				t.Errorf("snapshot text lacks %q", want)
			}
		}
		steps, err := f.st.ListLockoutSteps(ctx, f.org.ID, res.Lockout.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			// Capture and revoke are told by the per-provider records.
			if s.Step != pipeline.StepCapture && s.Step != pipeline.StepRevoke && s.State != store.StepDone {
				t.Errorf("step %s = %s (%s); want done", s.Step, s.State, s.LastError)
			}
		}
		if len(steps) != len(pipeline.Steps) {
			t.Errorf("steps = %d; want %d", len(steps), len(pipeline.Steps))
		}

		// Every evidence event is a time-stamped custody node, and the
		// org's log is checkpointed over all of them.
		nodes, err := f.st.ListCustodyNodes(ctx, store.ListCustodyNodesParams{OrgID: f.org.ID, LockoutID: res.Lockout.ID, AfterIndex: -1, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, n := range nodes {
			kinds = append(kinds, n.Kind+":"+n.Subject)
			if n.Token == nil {
				t.Errorf("custody node %s:%s has no RFC 3161 token", n.Kind, n.Subject)
			} else if _, err := tsa.Verify(n.Token.Token, n.Hash, local.Roots()); err != nil {
				t.Errorf("custody node %s token: %v", n.Kind, err)
			}
		}
		want := []string{"lockout:", "usage_capture:openai", "provider_confirmation:openai", "snapshot:", "upload:"}
		if !slices.Equal(kinds, want) {
			t.Errorf("custody nodes = %q; want %q", kinds, want)
		}
		if len(nodes) > 0 && !strings.Contains(text, hex.EncodeToString(nodes[0].Hash)) {
			t.Errorf("snapshot text lacks the lockout node's hash")
		}
		cp, err := ev.Custody.LatestCheckpoint(ctx, f.org.ID)
		if err != nil || cp.Size != uint64(len(nodes)) {
			t.Errorf("latest checkpoint = size %d, %v; want %d", cp.Size, err, len(nodes))
		}
	})
}

func (f *fixture) waitUploaded(t *testing.T, lockoutID string) store.Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := f.st.GetLockoutSnapshot(context.Background(), f.org.ID, lockoutID)
		steps, _ := f.st.ListLockoutSteps(context.Background(), f.org.ID, lockoutID)
		// The upload step ends after its custody node and checkpoint.
		if err == nil && s.UploadedAt != nil && len(steps) > 0 && steps[len(steps)-1].Step == pipeline.StepUpload && steps[len(steps)-1].State == store.StepDone {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of lockout %s not uploaded: %+v, %v", lockoutID, s.ID, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pdfText is poppler's reading of the document.
func pdfText(t *testing.T, doc []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.pdf")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	return string(out)
}
