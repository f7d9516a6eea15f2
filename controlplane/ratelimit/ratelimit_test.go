package ratelimit

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toktra/toktra/internal/clock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setup returns a limiter of limit requests per DefaultWindow on a fake clock.
func setup(t testing.TB, limit, maxKeys int) (*Limiter, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	l, err := New(Config{Limit: limit, Window: DefaultWindow, MaxKeys: maxKeys, Clock: clk})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l, clk
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Limit: 0, Window: time.Minute},
		{Limit: -1, Window: time.Minute},
		{Limit: 1 << 40, Window: time.Minute},
		{Limit: 1, Window: 0},
		{Limit: 1, Window: -time.Second},
		{Limit: 1, Window: time.Minute, MaxKeys: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error; want an error", cfg)
		}
	}
}

func TestLimiterBoundary(t *testing.T) {
	t.Parallel()
	l, clk := setup(t, PublicLimit, 0)
	reset := t0.Add(DefaultWindow)

	for i := 1; i <= PublicLimit; i++ {
		d := l.Allow("192.0.2.1")
		want := Decision{Allowed: true, Limit: PublicLimit, Remaining: PublicLimit - i, Reset: reset}
		if d != want {
			t.Fatalf("request %d: Allow = %+v; want %+v", i, d, want)
		}
		if i == PublicLimit/2 {
			clk.Advance(time.Minute) // the window stays anchored at the first request
		}
	}
	refused := func(retry time.Duration) Decision {
		return Decision{Limit: PublicLimit, Reset: reset, RetryAfter: retry}
	}
	// The 1001st, a minute in: refused until the window opened at t0 closes.
	if d, want := l.Allow("192.0.2.1"), refused(4*time.Minute); d != want {
		t.Fatalf("request 1001: Allow = %+v; want %+v", d, want)
	}
	// Refusals are not counted, so retrying does not push the wait out.
	clk.Advance(90*time.Second + 500*time.Millisecond)
	if d, want := l.Allow("192.0.2.1"), refused(2*time.Minute+29500*time.Millisecond); d != want {
		t.Fatalf("retry: Allow = %+v; want %+v", d, want)
	}
	clk.Set(t0.Add(DefaultWindow - time.Nanosecond))
	if d, want := l.Allow("192.0.2.1"), refused(time.Nanosecond); d != want {
		t.Fatalf("last instant: Allow = %+v; want %+v", d, want)
	}
	// Rollover: a new window opens at the next request, with the full limit.
	clk.Advance(time.Nanosecond)
	now := clk.Now()
	if d, want := l.Allow("192.0.2.1"), (Decision{Allowed: true, Limit: PublicLimit, Remaining: PublicLimit - 1, Reset: now.Add(DefaultWindow)}); d != want {
		t.Fatalf("after rollover: Allow = %+v; want %+v", d, want)
	}
}

func TestLimiterWindowOpensAtFirstRequest(t *testing.T) {
	t.Parallel()
	l, clk := setup(t, 2, 0)
	l.Allow("a")
	clk.Advance(4 * time.Minute)
	l.Allow("a")
	if d := l.Allow("a"); d.Allowed || d.RetryAfter != time.Minute {
		t.Fatalf("third request: Allow = %+v; want refused with RetryAfter 1m", d)
	}
	// Idle for longer than a window: the next request starts afresh.
	clk.Advance(20 * time.Minute)
	if d := l.Allow("a"); !d.Allowed || d.Remaining != 1 || !d.Reset.Equal(clk.Now().Add(DefaultWindow)) {
		t.Fatalf("after idle: Allow = %+v; want allowed, 1 remaining, reset in 5m", d)
	}
}

func TestLimiterKeysAreIsolated(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, AdminLimit, 0)
	for range AdminLimit {
		l.Allow("192.0.2.1")
	}
	if d := l.Allow("192.0.2.1"); d.Allowed {
		t.Fatalf("Allow(exhausted key) = %+v; want refused", d)
	}
	for _, key := range []string{"192.0.2.2", "2001:db8::/64", ""} {
		if d := l.Allow(key); !d.Allowed || d.Remaining != AdminLimit-1 {
			t.Errorf("Allow(%q) = %+v; want allowed with %d remaining", key, d, AdminLimit-1)
		}
	}
}

func TestLimiterSweepsIdleKeys(t *testing.T) {
	t.Parallel()
	l, clk := setup(t, 10, 0)
	for i := range 1000 {
		l.Allow("192.0.2." + strconv.Itoa(i))
	}
	if n := l.Len(); n != 1000 {
		t.Fatalf("Len() = %d; want 1000", n)
	}
	clk.Advance(DefaultWindow)
	// Each shard sweeps on its next request; new keys reach every shard.
	for i := range 1000 {
		l.Allow("198.51.100." + strconv.Itoa(i))
	}
	if n := l.Len(); n != 1000 {
		t.Fatalf("after a window: Len() = %d; want 1000 (only the new keys)", n)
	}
}

func TestLimiterCapUnderFlood(t *testing.T) {
	t.Parallel()
	const maxKeys = 1000
	l, clk := setup(t, 100, maxKeys)

	// A heavy client is near its limit when a flood of unique addresses arrives.
	for range 99 {
		l.Allow("203.0.113.9")
	}
	for i := range 50 * maxKeys {
		l.Allow(fmt.Sprintf("2001:db8:%x::/64", i))
		if i%1000 == 0 {
			clk.Advance(time.Millisecond)
		}
		if n := l.Len(); n > maxKeys {
			t.Fatalf("after %d flood keys: Len() = %d; want <= %d", i+1, n, maxKeys)
		}
	}
	// Eviction takes the least-used entries, so the heavy client kept its count.
	if d := l.Allow("203.0.113.9"); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("heavy client's 100th: Allow = %+v; want allowed with 0 remaining", d)
	}
	if d := l.Allow("203.0.113.9"); d.Allowed {
		t.Fatalf("heavy client's 101st: Allow = %+v; want refused", d)
	}
}

func TestLimiterSmallCapIsExact(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 5, 3)
	for i := range 100 {
		l.Allow(strconv.Itoa(i))
		if n := l.Len(); n > 3 {
			t.Fatalf("Len() = %d; want <= 3", n)
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const (
		limit      = 500
		goroutines = 8
		perG       = 400
	)
	l, clk := setup(t, limit, 2000)
	var allowedShared atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				if l.Allow("shared").Allowed {
					allowedShared.Add(1)
				}
				l.Allow(fmt.Sprintf("own-%d-%d", g, i%50))
				if i%100 == 0 {
					clk.Advance(time.Millisecond)
				}
				_ = l.Len()
			}
		})
	}
	wg.Wait()
	if n := allowedShared.Load(); n != limit {
		t.Fatalf("%d concurrent requests on one key: %d allowed; want exactly %d", goroutines*perG, n, limit)
	}
}

// TestMemoryPerKey measures what a tracked key costs, to keep the package
// doc's bound honest.
func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap; not needed for a short run")
	}
	const keys = 100_000
	l, _ := setup(t, 10, keys)
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range names {
		l.Allow(k)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / keys
	// Key strings are allocated before measuring; add their size back.
	perKey += float64(len(names[keys-1]))
	t.Logf("%.0f bytes per tracked key (%d keys)", perKey, l.Len())
	if perKey > 150 {
		t.Errorf("%.0f bytes per key; want <= 150 (the package doc says about 100)", perKey)
	}
	runtime.KeepAlive(names)
}

// BenchmarkAllowParallel measures Allow under parallel load on the real
// clock, over 10,000 clients.
func BenchmarkAllowParallel(b *testing.B) {
	l, err := New(Config{Limit: PublicLimit, Window: DefaultWindow})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&0xff, i&0xff)
	}
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
