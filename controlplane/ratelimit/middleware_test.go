package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// limited records the middleware's calls to onLimited.
type limited struct{ waits []time.Duration }

func (c *limited) write(w http.ResponseWriter, _ *http.Request, retryAfter time.Duration) {
	c.waits = append(c.waits, retryAfter)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprint(w, `{"error":{"code":"rate_limited"}}`)
}

// setupMiddleware returns a handler limited to limit requests per
// DefaultWindow, the fake clock, and the onLimited recorder.
func setupMiddleware(t *testing.T, limit int) (http.Handler, func(d time.Duration), *limited) {
	t.Helper()
	l, clk := setup(t, limit, 0)
	cb := &limited{}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})
	return Middleware(l, testTrusted, cb.write)(ok), clk.Advance, cb
}

func serve(h http.Handler, remote string, xff ...string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, newRequest(remote, xff...))
	return w
}

func rateHeaders(w *httptest.ResponseRecorder) map[string]string {
	out := map[string]string{}
	for _, k := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} {
		if v := w.Header().Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

func TestMiddlewareHeadersAndCallback(t *testing.T) {
	t.Parallel()
	h, advance, cb := setupMiddleware(t, 2)
	advance(250 * time.Millisecond) // the window closes mid-second: Reset rounds up
	reset := strconv.FormatInt(t0.Add(DefaultWindow).Unix()+1, 10)

	for i, remaining := range []string{"1", "0"} {
		w := serve(h, "203.0.113.5:1000")
		want := map[string]string{"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset}
		if w.Code != http.StatusOK || w.Body.String() != "ok" {
			t.Fatalf("request %d: %d %q; want 200 from the handler", i+1, w.Code, w.Body)
		}
		if diff := cmp.Diff(want, rateHeaders(w)); diff != "" {
			t.Fatalf("request %d headers (-want +got):\n%s", i+1, diff)
		}
	}

	advance(90*time.Second + 500*time.Millisecond)
	w := serve(h, "203.0.113.5:1000")
	want := map[string]string{
		"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset,
		"Retry-After": "210", // 209.5s, rounded up
	}
	if diff := cmp.Diff(want, rateHeaders(w)); diff != "" {
		t.Fatalf("refused request headers (-want +got):\n%s", diff)
	}
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "application/json" || w.Body.String() != `{"error":{"code":"rate_limited"}}` {
		t.Fatalf("refused request: %d %q %q; want onLimited's JSON 429", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if want := []time.Duration{209500 * time.Millisecond}; !cmp.Equal(cb.waits, want) {
		t.Fatalf("onLimited retryAfter = %v; want %v", cb.waits, want)
	}

	advance(209*time.Second + 499*time.Millisecond)
	if w := serve(h, "203.0.113.5:1000"); w.Header().Get("Retry-After") != "1" {
		t.Fatalf("1ms before the window closes: Retry-After %q; want 1", w.Header().Get("Retry-After"))
	}
	advance(time.Millisecond)
	if w := serve(h, "203.0.113.5:1000"); w.Code != http.StatusOK || w.Header().Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("new window: %d, remaining %q; want 200 with 1 remaining", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
}

func TestMiddlewareDefaultResponse(t *testing.T) {
	t.Parallel()
	l, _ := setup(t, 1, 0)
	h := Middleware(l, nil, nil)(http.NotFoundHandler())
	serve(h, "203.0.113.5:1000")
	w := serve(h, "203.0.113.5:1000")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "300" {
		t.Fatalf("refused with nil onLimited: %d, Retry-After %q; want 429 and 300", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestMiddlewareKeysByClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		first, second []string // RemoteAddr then X-Forwarded-For
		shareLimit    bool
	}{
		{"spoofed XFF from untrusted peer", []string{"203.0.113.5:1", "1.1.1.1"}, []string{"203.0.113.5:2", "2.2.2.2"}, true},
		{"clients behind a trusted proxy", []string{"10.0.0.1:1", "203.0.113.5"}, []string{"10.0.0.1:2", "203.0.113.6"}, false},
		{"client forging through a trusted proxy", []string{"10.0.0.1:1", "1.1.1.1, 203.0.113.5"}, []string{"10.0.0.1:2", "2.2.2.2, 203.0.113.5"}, true},
		{"IPv6 in one /64", []string{"[2001:db8:1:2::1]:1"}, []string{"[2001:db8:1:2:ffff::9]:1"}, true},
		{"IPv6 in different /64s", []string{"[2001:db8:1:2::1]:1"}, []string{"[2001:db8:1:3::1]:1"}, false},
		{"IPv4-mapped and IPv4", []string{"[::ffff:203.0.113.5]:1"}, []string{"203.0.113.5:1"}, true},
		{"peers without an IP share a key", []string{"@"}, []string{""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _, _ := setupMiddleware(t, 1)
			serve(h, tt.first[0], tt.first[1:]...)
			w := serve(h, tt.second[0], tt.second[1:]...)
			if shared := w.Code == http.StatusTooManyRequests; shared != tt.shareLimit {
				t.Errorf("second client got %d; sharing the first's limit = %v, want %v", w.Code, shared, tt.shareLimit)
			}
		})
	}
}

func TestCeilSeconds(t *testing.T) {
	t.Parallel()
	for in, want := range map[time.Duration]int64{
		time.Nanosecond:                  1,
		time.Second:                      1,
		time.Second + time.Nanosecond:    2,
		5 * time.Minute:                  300,
		5*time.Minute - time.Millisecond: 300,
		0:                                1,
	} {
		if got := ceilSeconds(in); got != want {
			t.Errorf("ceilSeconds(%v) = %d; want %d", in, got, want)
		}
	}
}

// BenchmarkMiddlewareParallel measures a request through the middleware,
// behind a trusted proxy, under parallel load.
func BenchmarkMiddlewareParallel(b *testing.B) {
	l, err := New(Config{Limit: PublicLimit, Window: DefaultWindow})
	if err != nil {
		b.Fatal(err)
	}
	h := Middleware(l, testTrusted, nil)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var reqs []*http.Request
		for i := range 256 {
			reqs = append(reqs, newRequest("10.0.0.1:443", fmt.Sprintf("203.0.113.%d, 10.2.2.2", i)))
		}
		w := httptest.NewRecorder()
		for i := 0; pb.Next(); i++ {
			h.ServeHTTP(w, reqs[i%len(reqs)])
		}
	})
}
