package custody

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/store/sqlite"
	"github.com/toktra/toktra/controlplane/tsa"
	"github.com/toktra/toktra/internal/clock"
)

// BenchmarkRecordAndStamp measures one evidence node recorded in SQLite and
// time-stamped by the local TSA: the custody cost a pipeline step adds.
func BenchmarkRecordAndStamp(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "toktra.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	local, err := tsa.LoadOrCreateLocal(filepath.Join(dir, "tsa"), clock.Real{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	key, err := LoadOrCreateCheckpointKey(filepath.Join(dir, "custody"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	svc, err := NewService(Config{Store: st, TSA: local, Key: key})
	if err != nil {
		b.Fatal(err)
	}
	org, _ := st.CreateOrg(ctx, store.CreateOrgParams{Name: "bench", CreatedAt: time.Now()})
	u, _ := st.UpsertUser(ctx, store.UpsertUserParams{OrgID: org.ID, Email: "u@bench.example", CreatedAt: time.Now()})
	l, _, err := st.CreateLockout(ctx, store.CreateLockoutParams{OrgID: org.ID, UserID: u.ID, Trigger: "bench", CreatedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	i := 0
	for b.Loop() {
		n, err := svc.Record(ctx, nil, RecordParams{OrgID: org.ID, LockoutID: l.ID, Kind: KindDeviceAck, Subject: strconv.Itoa(i), Payload: []byte(`{"applied":true}`)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Stamp(ctx, org.ID, n.Hash); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(i)/1000, "ms/node")
}

// BenchmarkProofs100k measures a checkpoint root and an inclusion and a
// consistency proof over a 100k-node log held in memory (reading the
// leaves from the database comes on top).
func BenchmarkProofs100k(b *testing.B) {
	const size = 100_000
	hashes := make([][]byte, size)
	for i := range hashes {
		h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		hashes[i] = h[:]
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		n++
		t := newTree(hashes)
		if _, err := t.root(size); err != nil {
			b.Fatal(err)
		}
		if _, err := t.inclusion(size/3, size); err != nil {
			b.Fatal(err)
		}
		if _, err := t.consistency(size/2, size); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(n), "ms/root+proofs")
}
