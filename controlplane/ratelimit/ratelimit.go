// Package ratelimit limits the admin API's requests per client IP: a
// fixed-window counter per key, the client IP taken from X-Forwarded-For only
// through configured trusted proxies, and an HTTP middleware that answers
// 429 with Retry-After and X-RateLimit-* headers.
//
// # Algorithm
//
// Each key has a window that opens at its first request and lasts Window;
// the first Limit requests in it are admitted and the rest refused until it
// closes. The state is one start time and one count, so headers are exact:
// Remaining is the true number of requests left, Reset is when the full Limit
// returns, and a client that waits Retry-After is never refused for the same
// window again. The price is the window edge: spending one window's quota at
// its end and the next one's at its start gets 2×Limit through in moments. A
// token bucket or sliding-window counter smooths that burst, but still admits
// up to 2×Limit in some span of one Window and can only estimate Remaining
// and Reset; only a log of timestamps (O(Limit) memory per key) holds every
// span to Limit. For an abuse limit, exact headers that well-behaved clients
// can follow are worth more than a smoother edge.
//
// # Memory
//
// Keys live in sharded maps. A key whose window has closed carries no
// information, so each shard drops them in a sweep at most once per Window,
// amortized over its own requests. The number of tracked keys never exceeds
// MaxKeys. When a shard is full of live keys (a flood of unique addresses),
// a new key evicts the entry with the lowest count among a small random
// sample: flood entries (one request each) go first, heavy users keep their
// counts, and an evicted light user only gets a fresh quota back. Neither
// failing open (not tracking new keys) nor closed (refusing them) is safe
// under a flood: the first switches the limit off, the second locks out
// every new client. A tracked key costs about 75 bytes with its key string
// (TestMemoryPerKey measures it), some 8 MB at DefaultMaxKeys; maps keep
// their high-water size, so that is also the bound after a flood.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toktra/toktra/internal/clock"
)

// The admin API's limits per client IP.
const (
	// PublicLimit is the public API's requests per DefaultWindow.
	PublicLimit = 1000
	// AdminLimit is the internal admin routes' requests per DefaultWindow.
	AdminLimit = 500
	// DefaultWindow is the window both limits are counted over.
	DefaultWindow = 5 * time.Minute
	// DefaultMaxKeys caps the tracked keys when Config.MaxKeys is zero:
	// about 8 MB, far more distinct clients than the admin API sees in a window.
	DefaultMaxKeys = 100_000
)

const (
	maxShards = 32
	// minKeysPerShard keeps small caps exact rather than rounded up to a
	// multiple of the shard count.
	minKeysPerShard = 256
	// evictionSample is how many entries a full shard looks at to pick a victim.
	evictionSample = 8
)

// Config configures a Limiter.
type Config struct {
	// Limit is how many requests a key may make per Window; required.
	Limit int
	// Window is the length of a key's counting window; required.
	Window time.Duration
	// MaxKeys caps the keys tracked at once (default DefaultMaxKeys).
	MaxKeys int
	// Clock tells the time (default the real clock).
	Clock clock.Clock
	// Logger receives a warning, at most once per Window, while the limiter
	// is evicting live keys to stay under MaxKeys (default discards).
	Logger *slog.Logger
}

// Decision is the outcome of one request against a Limiter.
type Decision struct {
	// Allowed reports whether the request is within the limit.
	Allowed bool
	// Limit is the configured requests per window.
	Limit int
	// Remaining is how many more requests the key may make in this window.
	Remaining int
	// Reset is when the key's window closes and the full Limit is available again.
	Reset time.Time
	// RetryAfter is how long a refused key must wait; zero when allowed.
	RetryAfter time.Duration
}

// Limiter counts requests per key in fixed windows; safe for concurrent use.
type Limiter struct {
	limit    uint32
	window   int64 // nanoseconds
	perShard int
	mask     uint64
	seed     maphash.Seed
	clock    clock.Clock
	// base anchors all stored times: durations since it are plain integers,
	// and with the real clock they come from the monotonic reading, so a
	// wall-clock step cannot stretch or shrink a window.
	base   time.Time
	log    *slog.Logger
	warned atomic.Int64 // when the capacity warning was last logged, since base
	shards []shard
}

type shard struct {
	mu        sync.Mutex
	keys      map[string]entry
	lastSweep int64
	_         [40]byte // keep shards on separate cache lines
}

type entry struct {
	start int64  // window opening, nanoseconds since Limiter.base
	count uint32 // admitted requests in the window
}

// New returns a Limiter admitting cfg.Limit requests per key per cfg.Window.
func New(cfg Config) (*Limiter, error) {
	if cfg.Limit <= 0 || cfg.Limit > math.MaxUint32 {
		return nil, fmt.Errorf("limit %d out of range 1..%d", cfg.Limit, uint32(math.MaxUint32))
	}
	if cfg.Window <= 0 {
		return nil, fmt.Errorf("window %v must be positive", cfg.Window)
	}
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("max keys %d must not be negative", cfg.MaxKeys)
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := 1
	for n < maxShards && cfg.MaxKeys/(n*2) >= minKeysPerShard {
		n *= 2
	}
	l := &Limiter{
		limit:    uint32(cfg.Limit),
		window:   int64(cfg.Window),
		perShard: cfg.MaxKeys / n, // floor, so the total never exceeds MaxKeys
		mask:     uint64(n - 1),
		seed:     maphash.MakeSeed(),
		clock:    cfg.Clock,
		base:     cfg.Clock.Now(),
		log:      cfg.Logger,
		shards:   make([]shard, n),
	}
	l.warned.Store(-l.window)
	for i := range l.shards {
		l.shards[i].keys = make(map[string]entry)
	}
	return l, nil
}

// Allow counts one request for key and reports whether it is within the limit.
// Refused requests are not counted, so they do not extend the wait.
func (l *Limiter) Allow(key string) Decision {
	now := l.clock.Now().Sub(l.base).Nanoseconds()
	sh := &l.shards[maphash.String(l.seed, key)&l.mask]

	sh.mu.Lock()
	if now-sh.lastSweep >= l.window {
		sh.sweep(now, l.window)
	}
	e, ok := sh.keys[key]
	if !ok || now-e.start >= l.window {
		if !ok && len(sh.keys) >= l.perShard {
			sh.evict(now, l.window)
			l.warnFull(now)
		}
		e = entry{start: now}
	}
	if e.count >= l.limit {
		sh.mu.Unlock()
		end := e.start + l.window
		return Decision{
			Limit:      int(l.limit),
			Reset:      l.at(end),
			RetryAfter: time.Duration(end - now),
		}
	}
	e.count++
	sh.keys[key] = e
	sh.mu.Unlock()
	return Decision{
		Allowed:   true,
		Limit:     int(l.limit),
		Remaining: int(l.limit - e.count),
		Reset:     l.at(e.start + l.window),
	}
}

// Len returns the number of keys currently tracked, including any whose
// window has closed but that no sweep has dropped yet.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}

func (l *Limiter) at(sinceBase int64) time.Time {
	return l.base.Add(time.Duration(sinceBase)).Round(0)
}

func (l *Limiter) warnFull(now int64) {
	last := l.warned.Load()
	if now-last < l.window || !l.warned.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("rate limiter full; evicting least-used client keys",
		"max_keys", l.perShard*len(l.shards), "window", time.Duration(l.window))
}

// sweep drops the entries whose window has closed.
func (sh *shard) sweep(now, window int64) {
	for k, e := range sh.keys {
		if now-e.start >= window {
			delete(sh.keys, k)
		}
	}
	sh.lastSweep = now
}

// evict frees one slot: the first closed entry in a random sample, else the
// sampled entry with the fewest requests (the oldest among equals). Map
// iteration starts at a random position, which makes the sample.
func (sh *shard) evict(now, window int64) {
	var (
		victim string
		best   entry
		found  bool
		seen   int
	)
	for k, e := range sh.keys {
		if now-e.start >= window {
			victim, found = k, true
			break
		}
		if !found || e.count < best.count || (e.count == best.count && e.start < best.start) {
			victim, best, found = k, e, true
		}
		if seen++; seen == evictionSample {
			break
		}
	}
	if found {
		delete(sh.keys, victim)
	}
}
