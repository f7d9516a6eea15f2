// Package bamboohrtest is a fake BambooHR API at its HTTP boundary: "Get
// Employee" (GET /api/gateway.php/{company}/v1/employees/{id}/) with the
// API key as the basic-auth user, answering JSON with the fields asked for.
package bamboohrtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Server is the fake.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	company   string
	apiKey    string
	employees map[string]map[string]string
	fail      int
	calls     int
}

// New starts a fake for one company subdomain and API key.
func New(company, apiKey string) *Server {
	s := &Server{company: company, apiKey: apiKey, employees: map[string]map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the API root.
func (s *Server) URL() string { return s.srv.URL }

// Close stops it.
func (s *Server) Close() { s.srv.Close() }

// SetEmployee sets an employee's fields by API name (workEmail, status,
// employmentHistoryStatus, terminationDate, ...).
func (s *Server) SetEmployee(id string, fields map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.employees[id] = fields
}

// FailNext makes the next n calls answer 503.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = n
}

// Calls counts the calls made.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if key, _, ok := r.BasicAuth(); !ok || key != s.apiKey {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.fail > 0 {
		s.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	prefix := "/api/gateway.php/" + s.company + "/v1/employees/"
	id, ok := strings.CutPrefix(r.URL.Path, prefix)
	id = strings.TrimSuffix(id, "/")
	emp, found := s.employees[id]
	if r.Method != http.MethodGet || !ok || !found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	out := map[string]string{"id": id}
	for _, f := range strings.Split(r.URL.Query().Get("fields"), ",") {
		if v, ok := emp[f]; ok {
			out[f] = v
		} else if f != "" {
			out[f] = ""
		}
	}
	if r.Header.Get("Accept") != "application/json" {
		w.Header().Set("Content-Type", "application/xml")
		w.Write([]byte(`<employee id="` + id + `"/>`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
