// Package workdaytest is a fake Workday at its HTTP boundary: a RaaS
// custom report served as JSON (Report_Entry[]) to an integration system
// user with basic auth or a bearer token, and the OAuth token endpoint
// that exchanges a refresh token for one.
package workdaytest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Entry is one row of the fake report, by its XML aliases.
type Entry map[string]any

// Server is the fake.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	entries  []Entry
	fail     int // answer 500 to this many report calls
	requests []Request
	// Credentials it accepts.
	user, password                  string
	clientID, clientSecret, refresh string
	token                           string
}

// Request is a report call as the fake saw it.
type Request struct {
	Format, From, To string
	Auth             string // "basic" or "bearer"
}

// ReportPath is where the report is served, as Workday's RaaS URLs go.
const ReportPath = "/ccx/service/customreport2/acme/ISU_Toktra/Terminations"

// TokenPath is the OAuth token endpoint.
const TokenPath = "/ccx/oauth2/acme/token"

// New starts a fake accepting the user and password, and the OAuth client
// and refresh token.
func New(user, password, clientID, clientSecret, refreshToken string) *Server {
	s := &Server{user: user, password: password, clientID: clientID, clientSecret: clientSecret, refresh: refreshToken, token: "wd-access-token"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ReportPath, s.report)
	mux.HandleFunc("POST "+TokenPath, s.tokenEndpoint)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the fake's root.
func (s *Server) URL() string { return s.srv.URL }

// Close stops it.
func (s *Server) Close() { s.srv.Close() }

// SetEntries replaces the report's rows.
func (s *Server) SetEntries(es ...Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = es
}

// FailNext makes the next n report calls answer 500.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = n
}

// Requests returns the report calls so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	auth := ""
	if u, p, ok := r.BasicAuth(); ok && u == s.user && p == s.password {
		auth = "basic"
	} else if r.Header.Get("Authorization") == "Bearer "+s.token {
		auth = "bearer"
	}
	if auth == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	s.requests = append(s.requests, Request{Format: q.Get("format"), From: q.Get("From_Moment"), To: q.Get("To_Moment"), Auth: auth})
	if s.fail > 0 {
		s.fail--
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if q.Get("format") != "json" {
		w.Header().Set("Content-Type", "application/xml")
		w.Write([]byte(`<wd:Report_Data xmlns:wd="urn:com.workday.report/Terminations"/>`))
		return
	}
	from, err1 := time.Parse(time.RFC3339, q.Get("From_Moment"))
	to, err2 := time.Parse(time.RFC3339, q.Get("To_Moment"))
	if err1 != nil || err2 != nil {
		http.Error(w, "bad prompt", http.StatusBadRequest)
		return
	}
	// Like a report with From_Moment/To_Moment prompts: rows whose event
	// completed in the window (rows without a moment always).
	out := []Entry{}
	for _, e := range s.entries {
		if m, ok := e["Event_Completed_Moment"].(string); ok {
			t, err := time.Parse(time.RFC3339, m)
			if err == nil && (t.Before(from) || !t.Before(to)) {
				continue
			}
		}
		out = append(out, e)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"Report_Entry": out})
}

func (s *Server) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.clientID || secret != s.clientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
		return
	}
	if r.FormValue("grant_type") != "refresh_token" || r.FormValue("refresh_token") != s.refresh {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": s.token, "token_type": "Bearer", "expires_in": 3600})
}
