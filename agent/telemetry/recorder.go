// Package telemetry records the device's connections to LLM destinations
// as usage events, keeps them on disk in batches until the control plane
// acknowledges them, and knows which addresses are LLM destinations.
//
// The pieces: platform.FlowMonitor reports finished connections (on
// Linux, from conntrack); Destinations says which remote addresses are LLM
// destinations, of which domain and provider; Recorder turns flows into
// events and batches them (by count and by time) into a Buffer; the agent
// sends the Buffer's batches on its stream and removes each once the
// control plane acknowledges it.
package telemetry

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/toktra/toktra/internal/clock"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// Limits on event strings, the same the control plane enforces.
const (
	MaxProcessName = 256
	MaxProcessPath = 4096
)

// Batching defaults.
const (
	DefaultBatchEvents   = 256
	DefaultBatchInterval = time.Minute
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	Buffer       *Buffer
	Destinations *Destinations
	Clock        clock.Clock
	Logger       *slog.Logger
	// BatchEvents seals a batch once it holds this many events (default
	// DefaultBatchEvents).
	BatchEvents int
	// BatchInterval seals a batch with any events at least this often
	// (default DefaultBatchInterval).
	BatchInterval time.Duration
}

// Recorder turns finished connections into usage events in the buffer.
type Recorder struct {
	opts RecorderOptions
	log  *slog.Logger
	full chan struct{}
}

// NewRecorder returns a Recorder; call Run to seal batches on time.
func NewRecorder(opts RecorderOptions) *Recorder {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = DefaultBatchEvents
	}
	if opts.BatchInterval <= 0 {
		opts.BatchInterval = DefaultBatchInterval
	}
	return &Recorder{opts: opts, log: opts.Logger.With("component", "usage-recorder"), full: make(chan struct{}, 1)}
}

// Record stores a finished connection as a usage event (connections to
// addresses that are no LLM destination are ignored). It is safe to call
// from several goroutines, as platform.FlowMonitor does.
func (r *Recorder) Record(f platform.Flow) {
	domain, provider, ok := r.opts.Destinations.Lookup(f.Remote.Addr())
	if !ok {
		return
	}
	ev := &agentv1.UsageEvent{
		Provider: provider, Domain: domain,
		RemoteAddr: f.Remote.Addr().Unmap().String(), RemotePort: uint32(f.Remote.Port()),
		Protocol:          f.Protocol,
		StartedAtUnixNano: f.Start.UnixNano(), EndedAtUnixNano: f.End.UnixNano(),
		BytesSent: f.BytesSent, BytesReceived: f.BytesReceived,
	}
	if p := f.Process; p != nil {
		ev.ProcessName = cleanString(p.Name, MaxProcessName)
		ev.ProcessPath = cleanString(p.Path, MaxProcessPath)
		if p.PID > 0 {
			ev.Pid = uint32(p.PID)
		}
		if p.UID >= 0 {
			uid := uint32(p.UID)
			ev.Uid = &uid
		}
	}
	if err := r.opts.Buffer.Append(ev); err != nil {
		r.log.Error("buffering usage event; it is lost", "err", err)
		return
	}
	if r.opts.Buffer.OpenEvents() >= r.opts.BatchEvents {
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
}

// cleanString makes s valid UTF-8 (paths need not be) of at most n bytes.
func cleanString(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Run seals a batch whenever one is full and at least every
// BatchInterval while events wait, until ctx ends; then it seals what is
// left, so that a clean shutdown leaves no open segment behind.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.BatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.seal()
			return
		case <-t.C:
		case <-r.full:
		}
		r.seal()
	}
}

func (r *Recorder) seal() {
	if _, err := r.opts.Buffer.Seal(); err != nil {
		r.log.Error("sealing usage batch; its events stay in the open segment", "err", err)
	}
}
