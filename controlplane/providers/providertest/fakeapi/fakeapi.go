// Package fakeapi holds what the provider fakes share: request ids, a call
// log, injected faults and cursor pagination.
package fakeapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Call is one request a fake received.
type Call struct {
	Method, Path, Query string
}

// Fault is an injected failure: the next Times matching requests get
// Status (with Retry-After when set) instead of being served.
type Fault struct {
	Method, PathPrefix string
	Status             int
	RetryAfter         string
	Times              int
}

// Server is embedded by a fake; Mu guards the fake's whole state.
type Server struct {
	Mu     sync.Mutex
	seq    int
	calls  []Call
	faults []*Fault

	gateMu sync.Mutex
	gates  []*gate
}

type gate struct {
	method, prefix string
	held           chan struct{} // closed when the first request waits
	release        chan struct{}
	once           sync.Once
}

// Hold makes requests matching method and pathPrefix wait until release
// is called: a test can stop the caller (say, kill the control plane)
// while a call is in flight. held is closed when the first one waits.
func (s *Server) Hold(method, pathPrefix string) (held <-chan struct{}, release func()) {
	g := &gate{method: method, prefix: pathPrefix, held: make(chan struct{}), release: make(chan struct{})}
	s.gateMu.Lock()
	s.gates = append(s.gates, g)
	s.gateMu.Unlock()
	var once sync.Once
	return g.held, func() {
		once.Do(func() {
			close(g.release)
			s.gateMu.Lock()
			defer s.gateMu.Unlock()
			for i, x := range s.gates {
				if x == g {
					s.gates = append(s.gates[:i], s.gates[i+1:]...)
					break
				}
			}
		})
	}
}

// Wait blocks r while a Hold matches it. Call it before taking Mu.
func (s *Server) Wait(r *http.Request) {
	s.gateMu.Lock()
	var match *gate
	for _, g := range s.gates {
		if (g.method == "" || g.method == r.Method) && strings.HasPrefix(r.URL.Path, g.prefix) {
			match = g
			break
		}
	}
	s.gateMu.Unlock()
	if match == nil {
		return
	}
	match.once.Do(func() { close(match.held) })
	select {
	case <-match.release:
	case <-r.Context().Done():
	}
}

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if f.Times <= 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// Begin logs r, sets a fresh request id under header, and returns the
// fault to answer with, if one matches. Call it with Mu held.
func (s *Server) Begin(w http.ResponseWriter, r *http.Request, header string) *Fault {
	s.seq++
	w.Header().Set(header, fmt.Sprintf("req_%06d", s.seq))
	s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery})
	for _, f := range s.faults {
		if f.Times > 0 && (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			f.Times--
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			return f
		}
	}
	return nil
}

// Calls returns the requests received so far.
func (s *Server) Calls() []Call {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Mutations counts the requests that could change state (anything but GET).
func (s *Server) Mutations() int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// ResetCalls forgets the call log.
func (s *Server) ResetCalls() {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	s.calls = nil
}

// Limit reads the limit query parameter: def when absent, an error when
// outside 1..max.
func Limit(r *http.Request, def, max int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("limit must be an integer between 1 and %d", max)
	}
	return n, nil
}

// Page returns the items after the one whose id is after (from the start
// when after is empty), at most limit of them, and whether more follow.
func Page[T any](items []T, id func(T) string, after string, limit int) ([]T, bool, error) {
	start := 0
	if after != "" {
		start = -1
		for i, it := range items {
			if id(it) == after {
				start = i + 1
				break
			}
		}
		if start < 0 {
			return nil, false, fmt.Errorf("cursor %q does not name an object in this list", after)
		}
	}
	end := min(start+limit, len(items))
	return items[start:end], end < len(items), nil
}
