package ratelimit

import (
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// unknownClient is the key shared by requests whose peer has no IP address
// (a Unix socket): they are limited together rather than not at all.
const unknownClient = "unknown"

// Middleware limits each client's requests with l, the client found by
// ClientIP(r, trusted). IPv6 clients are counted per /64, the block a single
// host or LAN is normally given, so one machine cannot multiply its quota by
// rotating through its own addresses.
//
// Every response carries X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (when the window closes, in Unix seconds rounded up, as
// GitHub's API does). A refused request also gets Retry-After (seconds,
// rounded up) and is passed to onLimited instead of the next handler;
// onLimited writes the response, normally status 429 with the API's own
// error body, and receives the exact wait. A nil onLimited writes a
// plain-text 429.
func Middleware(l *Limiter, trusted []netip.Prefix, onLimited func(w http.ResponseWriter, r *http.Request, retryAfter time.Duration)) func(http.Handler) http.Handler {
	if l == nil {
		panic("ratelimit: Middleware with a nil *Limiter")
	}
	if onLimited == nil {
		onLimited = writeTooManyRequests
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := l.Allow(clientKey(ClientIP(r, trusted)))
			h := w.Header()
			h.Set("X-RateLimit-Limit", strconv.Itoa(d.Limit))
			h.Set("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
			h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(d.Reset), 10))
			if d.Allowed {
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Retry-After", strconv.FormatInt(ceilSeconds(d.RetryAfter), 10))
			onLimited(w, r, d.RetryAfter)
		})
	}
}

func writeTooManyRequests(w http.ResponseWriter, _ *http.Request, _ time.Duration) {
	http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
}

// clientKey is the Limiter key for a client address.
func clientKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return unknownClient
	case a.Is4():
		return a.String()
	default:
		p, _ := a.Prefix(64) // cannot fail for a valid IPv6 address
		return p.String()
	}
}

// ceilSeconds rounds d up to whole seconds, at least 1 so that a client
// never retries at once.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
