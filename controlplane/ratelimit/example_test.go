package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/internal/clock"
)

func ExampleParseTrustedProxies() {
	trusted, err := ratelimit.ParseTrustedProxies("10.0.0.0/8, 2001:db8::/32, 192.0.2.7")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(trusted)

	_, err = ratelimit.ParseTrustedProxies("10.0.0.1/8")
	fmt.Println(err)
	// Output:
	// [10.0.0.0/8 2001:db8::/32 192.0.2.7/32]
	// parsing trusted proxy 1 "10.0.0.1/8": host bits set; the network is 10.0.0.0/8
}

func ExampleMiddleware() {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	admin, err := ratelimit.New(ratelimit.Config{
		Limit: ratelimit.AdminLimit, Window: ratelimit.DefaultWindow, Clock: clk,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	trusted, _ := ratelimit.ParseTrustedProxies("10.0.0.0/8")
	tooMany := func(w http.ResponseWriter, _ *http.Request, retryAfter time.Duration) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"error":{"code":"rate_limited","retry_after_ms":%d}}`, retryAfter.Milliseconds())
	}
	h := ratelimit.Middleware(admin, trusted, tooMany)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))

	var w *httptest.ResponseRecorder
	for range ratelimit.AdminLimit + 1 {
		r := httptest.NewRequest(http.MethodGet, "/v1/admin/orgs", nil)
		r.RemoteAddr = "10.0.0.1:443"                           // the load balancer
		r.Header.Set("X-Forwarded-For", "1.2.3.4, 203.0.113.5") // a forged hop, then the client
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		clk.Advance(100 * time.Millisecond)
	}
	fmt.Println(w.Code, w.Header().Get("Retry-After"), w.Header().Get("X-RateLimit-Remaining"))
	fmt.Println(w.Body)
	// Output:
	// 429 250 0
	// {"error":{"code":"rate_limited","retry_after_ms":250000}}
}
