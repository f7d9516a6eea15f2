package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/toktra/toktra/internal/atomicfile"
	"github.com/toktra/toktra/internal/clock"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// DefaultMaxBytes bounds a buffer when BufferOptions.MaxBytes is zero.
const DefaultMaxBytes = 64 << 20

// MinMaxBytes is the smallest bound a buffer accepts: room for a few
// events, so that dropping the oldest always makes room for the newest.
const MinMaxBytes = 4 << 10

const (
	stateFileName = "state.json"
	batchPrefix   = "batch-"
	batchSuffix   = ".bin"
	openPrefix    = "open-"
	openSuffix    = ".log"
)

// BufferOptions configure a Buffer.
type BufferOptions struct {
	// Dir holds the buffer's files; it is created if missing.
	Dir string
	// MaxBytes bounds the files' total size; 0 means DefaultMaxBytes.
	MaxBytes int64
	Clock    clock.Clock
	Logger   *slog.Logger
}

// Buffer keeps usage events on disk until the control plane has them.
//
// Events are appended (and fsynced) one by one to an open segment; Seal
// turns the segment into a batch with the next batch sequence, written
// atomically. Batches stay until Ack (stored by the server) or Reject
// (refused by it) removes them, so a batch is re-sent after any failure
// and removed only once stored. When the files would exceed MaxBytes the
// oldest batches are dropped — a last resort while the device is offline
// for long — and their events counted in a persistent dropped counter
// that every batch reports.
//
// Sequences are strictly increasing and never reused: the next one is
// kept in state.json, and a buffer created from nothing starts from the
// clock's microseconds since the epoch, so that even a state dir restored
// from an old backup does not repeat sequences the server already has.
type Buffer struct {
	dir    string
	max    int64
	log    *slog.Logger
	sealed chan struct{}

	mu         sync.Mutex
	state      bufferState
	batches    []batchInfo // ascending seq
	open       *os.File    // nil until the first event after a seal
	openEvents int
	openBytes  int64
	closed     bool
}

type bufferState struct {
	NextSeq      uint64 `json:"next_seq"`
	DroppedTotal uint64 `json:"dropped_total"`
}

type batchInfo struct {
	seq    uint64
	size   int64
	events int
}

// OpenBuffer opens (or creates) the buffer in opts.Dir, recovering what a
// crash left: an open segment that was already sealed is discarded, a torn
// last record is cut off, corrupt batch files are removed (and logged).
func OpenBuffer(opts BufferOptions) (*Buffer, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("usage buffer bound %d bytes is under the minimum of %d", opts.MaxBytes, MinMaxBytes)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Buffer{dir: opts.Dir, max: opts.MaxBytes, log: opts.Logger.With("component", "usage-buffer"), sealed: make(chan struct{}, 1)}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating usage buffer: %w", err)
	}
	data, err := os.ReadFile(b.path(stateFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.state.NextSeq = max(1, uint64(opts.Clock.Now().UnixMicro()))
	case err != nil:
		return nil, fmt.Errorf("reading usage buffer state: %w", err)
	default:
		if err := json.Unmarshal(data, &b.state); err != nil || b.state.NextSeq == 0 {
			return nil, fmt.Errorf("usage buffer state %s is corrupt: %v", b.path(stateFileName), err)
		}
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("reading usage buffer: %w", err)
	}
	var opens []uint64
	for _, e := range entries {
		name := e.Name()
		if seq, ok := parseName(name, batchPrefix, batchSuffix); ok {
			data, err := os.ReadFile(b.path(name))
			if err != nil {
				return nil, fmt.Errorf("reading usage batch: %w", err)
			}
			batch, err := decodeBatch(data)
			if err == nil && batch.GetBatchSeq() != seq {
				err = fmt.Errorf("%w: file %s holds batch %d", errCorrupt, name, batch.GetBatchSeq())
			}
			if err != nil {
				b.log.Error("removing corrupt usage batch; its events are lost", "file", name, "err", err)
				if err := os.Remove(b.path(name)); err != nil {
					return nil, err
				}
				continue
			}
			b.batches = append(b.batches, batchInfo{seq: seq, size: int64(len(data)), events: len(batch.GetEvents())})
			b.state.NextSeq = max(b.state.NextSeq, seq+1)
		} else if seq, ok := parseName(name, openPrefix, openSuffix); ok {
			opens = append(opens, seq)
		} else if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			_ = os.Remove(b.path(name)) // an atomic write that never finished
		}
	}
	slices.SortFunc(b.batches, func(x, y batchInfo) int { return cmpUint(x.seq, y.seq) })
	for _, seq := range opens {
		if seq < b.state.NextSeq {
			// Sealed already (the crash came between sealing and removing it).
			if err := os.Remove(b.path(openName(seq))); err != nil {
				return nil, err
			}
			continue
		}
		b.state.NextSeq = seq
	}
	if err := b.saveState(); err != nil {
		return nil, err
	}
	if err := b.reopen(); err != nil {
		return nil, err
	}
	return b, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// reopen opens the segment of NextSeq if it exists, cutting a torn tail.
func (b *Buffer) reopen() error {
	path := b.path(openName(b.state.NextSeq))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading open usage segment: %w", err)
	}
	events, good := decodeRecords(data)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("opening usage segment: %w", err)
	}
	if good < len(data) {
		b.log.Warn("cutting a torn record off the open usage segment", "bytes", len(data)-good)
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return fmt.Errorf("truncating usage segment: %w", err)
		}
	}
	if _, err := f.Seek(int64(good), 0); err != nil {
		f.Close()
		return err
	}
	b.open, b.openEvents, b.openBytes = f, len(events), int64(good)
	return nil
}

func parseName(name, prefix, suffix string) (uint64, bool) {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix), 10, 64)
	return seq, err == nil && seq > 0
}

func batchName(seq uint64) string { return fmt.Sprintf("%s%020d%s", batchPrefix, seq, batchSuffix) }
func openName(seq uint64) string  { return fmt.Sprintf("%s%020d%s", openPrefix, seq, openSuffix) }

func (b *Buffer) path(name string) string { return filepath.Join(b.dir, name) }

func (b *Buffer) saveState() error {
	data, _ := json.Marshal(b.state)
	if err := atomicfile.WriteFile(b.path(stateFileName), data, 0o600); err != nil {
		return fmt.Errorf("saving usage buffer state: %w", err)
	}
	return nil
}

// Append adds an event to the open segment, durably. If the buffer is
// full, the oldest batches are dropped (and counted) to make room.
func (b *Buffer) Append(ev *agentv1.UsageEvent) error {
	rec, err := encodeRecord(ev)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errBufferClosed
	}
	if err := b.makeRoom(int64(len(rec))); err != nil {
		return err
	}
	if b.open == nil {
		f, err := os.OpenFile(b.path(openName(b.state.NextSeq)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("creating usage segment: %w", err)
		}
		b.open, b.openEvents, b.openBytes = f, 0, 0
	}
	if _, err := b.open.Write(rec); err != nil {
		// Cut what may have been written, so the segment stays intact.
		_ = b.open.Truncate(b.openBytes)
		_, _ = b.open.Seek(b.openBytes, 0)
		return fmt.Errorf("appending usage event: %w", err)
	}
	if err := b.open.Sync(); err != nil {
		return fmt.Errorf("syncing usage segment: %w", err)
	}
	b.openEvents++
	b.openBytes += int64(len(rec))
	return nil
}

// makeRoom drops the oldest batches until need more bytes fit; as a last
// resort (a bound smaller than one batch) the open segment too.
func (b *Buffer) makeRoom(need int64) error {
	used := b.openBytes
	for _, bi := range b.batches {
		used += bi.size
	}
	dropped := 0
	for used+need > b.max {
		if len(b.batches) > 0 {
			old := b.batches[0]
			if err := os.Remove(b.path(batchName(old.seq))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("dropping usage batch: %w", err)
			}
			b.batches = b.batches[1:]
			used -= old.size
			dropped += old.events
			b.log.Warn("usage buffer full: dropped the oldest batch", "batch_seq", old.seq, "events", old.events)
			continue
		}
		if b.open == nil || b.openEvents == 0 {
			break // need alone is over the bound; encodeRecord keeps it far under MinMaxBytes
		}
		b.open.Close()
		if err := os.Remove(b.path(openName(b.state.NextSeq))); err != nil {
			return fmt.Errorf("dropping usage segment: %w", err)
		}
		dropped += b.openEvents
		used -= b.openBytes
		b.open, b.openEvents, b.openBytes = nil, 0, 0
	}
	if dropped == 0 {
		return nil
	}
	b.state.DroppedTotal += uint64(dropped)
	return b.saveState()
}

// OpenEvents is how many events wait in the open segment.
func (b *Buffer) OpenEvents() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openEvents
}

// Seal turns the open segment into the next batch and reports whether
// there was anything to seal.
func (b *Buffer) Seal() (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, errBufferClosed
	}
	if b.open == nil || b.openEvents == 0 {
		return false, nil
	}
	seq := b.state.NextSeq
	if _, err := b.open.Seek(0, 0); err != nil {
		return false, err
	}
	data := make([]byte, b.openBytes)
	if _, err := readFull(b.open, data); err != nil {
		return false, fmt.Errorf("reading usage segment: %w", err)
	}
	events, _ := decodeRecords(data)
	enc, err := encodeBatch(&agentv1.UsageBatch{BatchSeq: seq, Events: events})
	if err != nil {
		return false, err
	}
	// Order matters for crash recovery: the batch file first, then the
	// next sequence, then the segment (see OpenBuffer).
	if err := atomicfile.WriteFile(b.path(batchName(seq)), enc, 0o600); err != nil {
		return false, fmt.Errorf("writing usage batch: %w", err)
	}
	b.batches = append(b.batches, batchInfo{seq: seq, size: int64(len(enc)), events: len(events)})
	b.state.NextSeq = seq + 1
	if err := b.saveState(); err != nil {
		return false, err
	}
	b.open.Close()
	b.open, b.openEvents, b.openBytes = nil, 0, 0
	if err := os.Remove(b.path(openName(seq))); err != nil {
		return false, fmt.Errorf("removing sealed usage segment: %w", err)
	}
	select {
	case b.sealed <- struct{}{}:
	default:
	}
	return true, nil
}

func readFull(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := f.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Sealed signals (without blocking the sealer) that a batch was sealed.
func (b *Buffer) Sealed() <-chan struct{} { return b.sealed }

// Pending lists the sequences of the batches not yet acknowledged, in order.
func (b *Buffer) Pending() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]uint64, len(b.batches))
	for i, bi := range b.batches {
		out[i] = bi.seq
	}
	return out
}

var errBufferClosed = errors.New("usage buffer closed")

// ErrNoBatch is returned for a batch that is not (or no longer) buffered.
var ErrNoBatch = errors.New("no such usage batch")

// Batch reads a pending batch, with the dropped counter as it is now.
func (b *Buffer) Batch(seq uint64) (*agentv1.UsageBatch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.find(seq); !ok {
		return nil, fmt.Errorf("%w: %d", ErrNoBatch, seq)
	}
	data, err := os.ReadFile(b.path(batchName(seq)))
	if err != nil {
		return nil, fmt.Errorf("reading usage batch: %w", err)
	}
	batch, err := decodeBatch(data)
	if err != nil {
		return nil, err
	}
	batch.DroppedTotal = b.state.DroppedTotal
	return batch, nil
}

func (b *Buffer) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(b.batches, seq, func(bi batchInfo, s uint64) int { return cmpUint(bi.seq, s) })
}

// Ack removes a batch the server has stored. Unknown sequences are ignored.
func (b *Buffer) Ack(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.remove(seq)
	return err
}

// Reject removes a batch the server refused (re-sending it cannot help)
// and counts its events as dropped.
func (b *Buffer) Reject(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.remove(seq)
	if err != nil || n == 0 {
		return err
	}
	b.state.DroppedTotal += uint64(n)
	return b.saveState()
}

func (b *Buffer) remove(seq uint64) (int, error) {
	i, ok := b.find(seq)
	if !ok {
		return 0, nil
	}
	if err := os.Remove(b.path(batchName(seq))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("removing usage batch: %w", err)
	}
	n := b.batches[i].events
	b.batches = slices.Delete(b.batches, i, i+1)
	return n, nil
}

// Stats describe the buffer for status reports.
type Stats struct {
	PendingBatches int    `json:"pending_batches"`
	PendingEvents  int    `json:"pending_events"`
	OpenEvents     int    `json:"open_events"`
	Bytes          int64  `json:"bytes"`
	MaxBytes       int64  `json:"max_bytes"`
	DroppedTotal   uint64 `json:"dropped_total"`
	NextSeq        uint64 `json:"next_batch_seq"`
}

// Stats returns the buffer's counts.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{PendingBatches: len(b.batches), OpenEvents: b.openEvents, Bytes: b.openBytes, MaxBytes: b.max,
		DroppedTotal: b.state.DroppedTotal, NextSeq: b.state.NextSeq}
	for _, bi := range b.batches {
		s.PendingEvents += bi.events
		s.Bytes += bi.size
	}
	return s
}

// Close closes the open segment; its events stay for the next OpenBuffer.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.open == nil {
		return nil
	}
	err := b.open.Close()
	b.open = nil
	return err
}
