package telemetry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/toktra/toktra/internal/clock"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

var bufferEpoch = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func openTestBuffer(t *testing.T, dir string, maxBytes int64) *Buffer {
	t.Helper()
	b, err := OpenBuffer(BufferOptions{Dir: dir, MaxBytes: maxBytes, Clock: clock.NewFake(bufferEpoch)})
	if err != nil {
		t.Fatalf("OpenBuffer(%s) = %v", dir, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testEvent(i int) *agentv1.UsageEvent {
	uid := uint32(1000)
	return &agentv1.UsageEvent{
		Provider: "openai", Domain: "api.openai.com", RemoteAddr: "192.0.2.7", RemotePort: 443, Protocol: "tcp",
		StartedAtUnixNano: bufferEpoch.Add(time.Duration(i) * time.Second).UnixNano(),
		EndedAtUnixNano:   bufferEpoch.Add(time.Duration(i)*time.Second + time.Millisecond).UnixNano(),
		BytesSent:         uint64(1000 + i), BytesReceived: uint64(2000 + i),
		ProcessName: "curl", ProcessPath: "/usr/bin/curl", Pid: uint32(100 + i), Uid: &uid,
	}
}

func appendN(t *testing.T, b *Buffer, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := b.Append(testEvent(i)); err != nil {
			t.Fatalf("Append(%d) = %v", i, err)
		}
	}
}

func seal(t *testing.T, b *Buffer) {
	t.Helper()
	if ok, err := b.Seal(); err != nil || !ok {
		t.Fatalf("Seal() = %v, %v; want true, nil", ok, err)
	}
}

// eventsOf returns the BytesSent of every pending batch's events, in
// order: each event's identity in these tests.
func eventsOf(t *testing.T, b *Buffer) []uint64 {
	t.Helper()
	var out []uint64
	for _, seq := range b.Pending() {
		batch, err := b.Batch(seq)
		if err != nil {
			t.Fatalf("Batch(%d) = %v", seq, err)
		}
		if batch.GetBatchSeq() != seq {
			t.Fatalf("Batch(%d).BatchSeq = %d", seq, batch.GetBatchSeq())
		}
		for _, ev := range batch.GetEvents() {
			out = append(out, ev.GetBytesSent())
		}
	}
	return out
}

func want(from, n int) []uint64 {
	var out []uint64
	for i := from; i < from+n; i++ {
		out = append(out, uint64(1000+i))
	}
	return out
}

func equal(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestBufferSealAckRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := openTestBuffer(t, dir, 0)
	if ok, err := b.Seal(); ok || err != nil {
		t.Errorf("Seal() of an empty buffer = %v, %v; want false, nil", ok, err)
	}
	appendN(t, b, 0, 3)
	seal(t, b)
	appendN(t, b, 3, 2)
	seal(t, b)
	appendN(t, b, 5, 4) // left in the open segment
	pending := b.Pending()
	first := uint64(bufferEpoch.UnixMicro())
	if len(pending) != 2 || pending[0] != first || pending[1] != first+1 {
		t.Fatalf("Pending() = %v; want [%d %d] (a fresh buffer starts at the clock's microseconds)", pending, first, first+1)
	}
	batch, err := b.Batch(pending[0])
	if err != nil || !proto.Equal(batch.GetEvents()[1], testEvent(1)) {
		t.Fatalf("Batch(%d) = %v, %v; want the events as appended", pending[0], batch, err)
	}
	b.Close()

	// A restart keeps the batches and the open segment's events.
	b = openTestBuffer(t, dir, 0)
	if got := eventsOf(t, b); !equal(got, want(0, 5)) {
		t.Errorf("after restart, pending events = %v; want %v", got, want(0, 5))
	}
	if n := b.OpenEvents(); n != 4 {
		t.Errorf("after restart, OpenEvents() = %d; want 4", n)
	}
	if err := b.Ack(first); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(first); err != nil {
		t.Errorf("Ack of an acked batch = %v; want nil", err)
	}
	if _, err := b.Batch(first); !errors.Is(err, ErrNoBatch) {
		t.Errorf("Batch(acked) = %v; want ErrNoBatch", err)
	}
	seal(t, b)
	if got := b.Pending(); len(got) != 2 || got[0] != first+1 || got[1] != first+2 {
		t.Errorf("Pending() = %v; want [%d %d]", got, first+1, first+2)
	}
	for _, seq := range b.Pending() {
		if err := b.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()

	// Sequences are never reused, even with nothing left to send.
	b = openTestBuffer(t, dir, 0)
	appendN(t, b, 9, 1)
	seal(t, b)
	if got := b.Pending(); len(got) != 1 || got[0] != first+3 {
		t.Errorf("after acking everything and restarting, Pending() = %v; want [%d]", got, first+3)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("buffer dir holds %d files; want state.json and one batch", len(ents))
	}
}

// copyFile snapshots a file for the crash tests.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBufferCrashDuringSeal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// restore puts back what a crash at that point would have left.
		restore []string
	}{
		{"after writing the batch", []string{stateFileName, "open"}},
		{"after saving the next sequence", []string{"open"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, saved := t.TempDir(), t.TempDir()
			b := openTestBuffer(t, dir, 0)
			appendN(t, b, 0, 3)
			seq := b.Stats().NextSeq
			copyFile(t, filepath.Join(dir, openName(seq)), filepath.Join(saved, "open"))
			copyFile(t, filepath.Join(dir, stateFileName), filepath.Join(saved, stateFileName))
			seal(t, b)
			b.Close()
			for _, name := range tc.restore {
				to := name
				if name == "open" {
					to = openName(seq)
				}
				copyFile(t, filepath.Join(saved, name), filepath.Join(dir, to))
			}
			b = openTestBuffer(t, dir, 0)
			if got := eventsOf(t, b); !equal(got, want(0, 3)) || b.OpenEvents() != 0 {
				t.Errorf("after the crash, pending = %v with %d open events; want %v and 0 (no duplicates)", got, b.OpenEvents(), want(0, 3))
			}
			appendN(t, b, 3, 1)
			seal(t, b)
			if got := b.Pending(); len(got) != 2 || got[1] != seq+1 {
				t.Errorf("Pending() = %v; want the next batch to be %d", got, seq+1)
			}
		})
	}
}

func TestBufferTornRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := openTestBuffer(t, dir, 0)
	appendN(t, b, 0, 2)
	seq := b.Stats().NextSeq
	b.Close()
	f, err := os.OpenFile(filepath.Join(dir, openName(seq)), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := encodeRecord(testEvent(99))
	f.Write(rec[:len(rec)-3]) // a crash in the middle of an append
	f.Close()
	b = openTestBuffer(t, dir, 0)
	appendN(t, b, 2, 1)
	seal(t, b)
	if got := eventsOf(t, b); !equal(got, want(0, 3)) {
		t.Errorf("after a torn append, events = %v; want %v", got, want(0, 3))
	}
}

func TestBufferCorruptBatchIsRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := openTestBuffer(t, dir, 0)
	appendN(t, b, 0, 1)
	seal(t, b)
	appendN(t, b, 1, 1)
	seal(t, b)
	first := b.Pending()[0]
	b.Close()
	path := filepath.Join(dir, batchName(first))
	data, _ := os.ReadFile(path)
	data[len(data)-1] ^= 0xff
	os.WriteFile(path, data, 0o600)
	b = openTestBuffer(t, dir, 0)
	if got := eventsOf(t, b); !equal(got, want(1, 1)) {
		t.Errorf("events = %v; want only the intact batch's %v", got, want(1, 1))
	}
}

func TestBufferBoundedDropsOldest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const maxBytes = MinMaxBytes
	b := openTestBuffer(t, dir, maxBytes)
	const perBatch, batches = 5, 40
	for i := 0; i < batches; i++ {
		appendN(t, b, i*perBatch, perBatch)
		seal(t, b)
		if s := b.Stats(); s.Bytes > maxBytes {
			t.Fatalf("after batch %d the buffer holds %d bytes; want at most %d", i, s.Bytes, maxBytes)
		}
	}
	s := b.Stats()
	kept := s.PendingEvents
	if s.DroppedTotal == 0 || int(s.DroppedTotal)+kept != perBatch*batches {
		t.Fatalf("Stats() = %+v; want dropped + kept = %d, some dropped", s, perBatch*batches)
	}
	// What is kept is the newest, in order.
	if got := eventsOf(t, b); !equal(got, want(perBatch*batches-kept, kept)) {
		t.Errorf("kept events = %v; want the newest %d", got, kept)
	}
	batch, _ := b.Batch(b.Pending()[0])
	if batch.GetDroppedTotal() != s.DroppedTotal {
		t.Errorf("Batch().DroppedTotal = %d; want %d", batch.GetDroppedTotal(), s.DroppedTotal)
	}
	// A rejected batch counts as dropped too, and the counter persists.
	rejected := b.Pending()[0]
	if err := b.Reject(rejected); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openTestBuffer(t, dir, maxBytes)
	if got := b.Stats().DroppedTotal; got != s.DroppedTotal+perBatch {
		t.Errorf("after Reject and a restart, DroppedTotal = %d; want %d", got, s.DroppedTotal+perBatch)
	}
}

func TestOpenBufferRefusesTinyBound(t *testing.T) {
	t.Parallel()
	if _, err := OpenBuffer(BufferOptions{Dir: t.TempDir(), MaxBytes: 100}); err == nil {
		t.Error("OpenBuffer(MaxBytes 100) = nil; want an error")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	good, _ := encodeBatch(&agentv1.UsageBatch{BatchSeq: 7, Events: []*agentv1.UsageEvent{testEvent(1), testEvent(2)}})
	f.Add(good)
	f.Add([]byte(batchMagic))
	f.Add(append([]byte(batchMagic), 1, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBatch(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Errorf("decodeBatch error %v is not errCorrupt", err)
			}
			return
		}
		enc, err := encodeBatch(b)
		if err != nil {
			t.Fatalf("re-encoding a decoded batch: %v", err)
		}
		again, err := decodeBatch(enc)
		if err != nil || !proto.Equal(b, again) {
			t.Errorf("decodeBatch(encodeBatch(b)) = %v, %v; want b", again, err)
		}
	})
}

func FuzzDecodeRecords(f *testing.F) {
	var seg []byte
	for i := range 3 {
		rec, _ := encodeRecord(testEvent(i))
		seg = append(seg, rec...)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-5])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		events, good := decodeRecords(data)
		if good < 0 || good > len(data) {
			t.Fatalf("decodeRecords returned prefix %d of %d bytes", good, len(data))
		}
		again, n := decodeRecords(data[:good])
		if n != good || len(again) != len(events) {
			t.Errorf("decodeRecords of its own intact prefix = %d events, %d bytes; want %d, %d", len(again), n, len(events), good)
		}
	})
}
