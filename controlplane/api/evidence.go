package api

import "net/http"

// EvidencePath is where the local evidence store's presigned URLs are
// served (localstore.DefaultURLPrefix).
const EvidencePath = "/v1/evidence/"

// mountEvidence serves the local evidence store's presigned URLs. They
// carry their own HMAC signature and expiry instead of an API key, and
// are rate limited like every other request.
func (s *Server) mountEvidence(h http.Handler) {
	if h != nil {
		s.mux.Handle("GET "+EvidencePath, h)
	}
}
