package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/toktra/toktra/controlplane/scim"
	"github.com/toktra/toktra/controlplane/store"
)

// The SCIM 2.0 service provider under /v1/scim/v2/ (RFC 7643, RFC 7644):
// Users, Groups and the discovery endpoints, for an org's SCIM client
// (Okta, Microsoft Entra ID). Requests are authenticated by the org's
// bearer token (POST /v1/scim/token), not by X-API-Key; they are limited
// per client IP with the rest of the API and per org by RateLimits.SCIM,
// and their writes are recorded in the org's audit log.
//
// A user made inactive (PATCH or PUT with active false, as Okta and Entra
// ID send it) or deleted is locked out through lockout.Service.LockUser,
// exactly once per deactivation: a deactivation is stored first, then the
// lockout is started and recorded on the user; a request that finds the
// user already inactive with its lockout recorded starts nothing, and one
// that finds a deactivation not yet carried out (the lockout failed) starts
// it. Requests for one user are serialized in this process so that two
// identical deactivations racing each other record one trigger. Making a
// user active again does not unlock: it is recorded (the user's
// reactivated_at, an audit entry) and left to the admin override.

// scimPrefix is where the SCIM endpoints live.
const scimPrefix = "/v1/scim/v2/"

// SCIMTokenPrefix makes a leaked SCIM token recognisable to scanners.
const SCIMTokenPrefix = "tks_"

// scimTouchInterval is how stale a token's last-used time may get before
// a request writes it again (one write per token per interval, not per
// request).
const scimTouchInterval = time.Minute

// SCIMLimit is how many SCIM requests an org's client may make per
// ratelimit.DefaultWindow (RateLimits.SCIM): 20 a second, well above what
// Okta and Entra ID send in a full sync, well below what hurts the store.
const SCIMLimit = 6000

// maxSCIMStaleRetries bounds how often a change is recomputed when another
// request changed the resource in between (without If-Match).
const maxSCIMStaleRetries = 5

// scimCall is one authenticated SCIM request.
type scimCall struct {
	r       *http.Request
	token   store.SCIMToken
	orgID   string
	baseURL string
	body    []byte
}

// keyedMutex serializes work per key (a SCIM user) within the process.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// writeSCIM writes a SCIM response body.
func writeSCIM(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", scim.MediaType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if status == http.StatusNoContent || status == http.StatusNotModified || v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeSCIMError(w http.ResponseWriter, e *scim.Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="toktra-scim"`)
	}
	writeSCIM(w, e.Status, e.Body())
}

func scimStatus(status int, detail string) *scim.Error {
	return &scim.Error{Status: status, Detail: detail}
}

// toSCIMError maps any error to its SCIM form, in one place.
func toSCIMError(err error) *scim.Error {
	var se *scim.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, store.ErrNotFound):
		return scimStatus(http.StatusNotFound, "resource not found")
	case errors.Is(err, store.ErrStale):
		return scimStatus(http.StatusPreconditionFailed, "the resource changed since it was read; read it again")
	case errors.Is(err, store.ErrConflict):
		return &scim.Error{Status: http.StatusConflict, ScimType: scim.Uniqueness, Detail: "a resource with that name already exists"}
	}
	return scimStatus(http.StatusInternalServerError, "internal error")
}

// serveSCIM authenticates, limits and routes a SCIM request.
func (s *Server) serveSCIM(w http.ResponseWriter, r *http.Request) {
	token, aerr := s.scimAuthenticate(r)
	if aerr != nil {
		writeSCIMError(w, aerr)
		return
	}
	if s.limits.SCIM != nil {
		d := s.limits.SCIM.Allow("scim:" + token.OrgID)
		if !d.Allowed {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
			writeSCIMError(w, scimStatus(http.StatusTooManyRequests, fmt.Sprintf("too many SCIM requests for this organization; retry in %s", d.RetryAfter.Round(time.Second))))
			return
		}
	}
	c := &scimCall{r: r, token: token, orgID: token.OrgID, baseURL: scimBaseURL(r)}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || (mt != scim.MediaType && mt != "application/json") {
				writeSCIMError(w, scimStatus(http.StatusUnsupportedMediaType, "Content-Type must be application/scim+json or application/json"))
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeSCIMError(w, scimStatus(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBodyBytes)))
				return
			}
			writeSCIMError(w, &scim.Error{Status: http.StatusBadRequest, ScimType: scim.InvalidSyntax, Detail: "reading the body failed"})
			return
		}
		c.body = body
	}

	segs := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, scimPrefix), "/"), "/")
	id := ""
	if len(segs) == 2 {
		id = segs[1]
	}
	var (
		status int
		body   any
		err    error
	)
	switch endpoint := strings.ToLower(segs[0]); {
	case len(segs) > 2:
		err = scimStatus(http.StatusNotFound, "no such endpoint")
	case endpoint == "users":
		status, body, err = s.scimUsers(r.Context(), w, c, id)
	case endpoint == "groups":
		status, body, err = s.scimGroups(r.Context(), w, c, id)
	case endpoint == "serviceproviderconfig" && id == "":
		status, body, err = scimDiscovery(r, scim.ServiceProviderConfig(c.baseURL), nil)
	case endpoint == "resourcetypes":
		status, body, err = scimDiscovery(r, nil, scimDocs(scim.ResourceTypes(c.baseURL), id))
	case endpoint == "schemas":
		status, body, err = scimDiscovery(r, nil, scimDocs(scim.Schemas(c.baseURL), id))
	case endpoint == "bulk" || endpoint == "me" || endpoint == ".search":
		err = scimStatus(http.StatusNotImplemented, "/"+segs[0]+" is not supported (see /ServiceProviderConfig)")
	default:
		err = scimStatus(http.StatusNotFound, "no such endpoint")
	}
	if err != nil {
		e := toSCIMError(err)
		if e.Status >= 500 {
			s.log.Error("scim request failed", "method", r.Method, "path", r.URL.Path, "org", c.orgID, "err", err)
		}
		writeSCIMError(w, e)
		return
	}
	writeSCIM(w, status, body)
}

// scimDocs selects one discovery document by id, or lists them all.
type scimDocList struct {
	docs []map[string]any
	id   string
}

func scimDocs(docs []map[string]any, id string) *scimDocList { return &scimDocList{docs: docs, id: id} }

func scimDiscovery(r *http.Request, one map[string]any, list *scimDocList) (int, any, error) {
	if r.Method != http.MethodGet {
		return 0, nil, scimStatus(http.StatusMethodNotAllowed, "discovery endpoints are read-only")
	}
	if one != nil {
		return http.StatusOK, one, nil
	}
	if list.id != "" {
		d, ok := scim.FindByID(list.docs, list.id)
		if !ok {
			return 0, nil, scimStatus(http.StatusNotFound, "no such resource")
		}
		return http.StatusOK, d, nil
	}
	out := make([]any, 0, len(list.docs))
	for _, d := range list.docs {
		out = append(out, d)
	}
	return http.StatusOK, listResponse(out, len(out), 1), nil
}

// scimAuthenticate finds the org by the bearer token.
func (s *Server) scimAuthenticate(r *http.Request) (store.SCIMToken, *scim.Error) {
	scheme, secret, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return store.SCIMToken{}, scimStatus(http.StatusUnauthorized, "Authorization: Bearer <SCIM token> required")
	}
	hash := HashSecret(secret)
	tok, err := s.store.GetSCIMTokenByHash(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare(hash, tok.Hash) != 1) {
		return store.SCIMToken{}, scimStatus(http.StatusUnauthorized, "SCIM token not recognized")
	}
	if err != nil {
		s.log.Error("looking up scim token", "err", err)
		return store.SCIMToken{}, scimStatus(http.StatusInternalServerError, "internal error")
	}
	now := s.clock.Now()
	if tok.LastUsedAt == nil || now.Sub(*tok.LastUsedAt) >= scimTouchInterval {
		if err := s.store.TouchSCIMToken(r.Context(), tok.OrgID, tok.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("recording scim token use", "org", tok.OrgID, "token", tok.ID, "err", err)
		}
	}
	return tok, nil
}

// scimBaseURL is the SCIM root as this request reached it.
func scimBaseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host + strings.TrimSuffix(scimPrefix, "/")
}

// listResponse is a ListResponse (RFC 7644 section 3.4.2).
func listResponse(resources []any, total, startIndex int) map[string]any {
	if resources == nil {
		resources = []any{}
	}
	return map[string]any{
		"schemas":      []string{scim.ListResponseSchema},
		"totalResults": total,
		"startIndex":   startIndex,
		"itemsPerPage": len(resources),
		"Resources":    resources,
	}
}

// scimPage reads startIndex (1-based; below 1 means 1) and count (default
// and most scim.MaxResults; below 0 means 0).
func scimPage(r *http.Request) (startIndex, count int, err error) {
	q := r.URL.Query()
	startIndex, count = 1, scim.MaxResults
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, scim.Errorf(scim.InvalidValue, "startIndex: an integer")
		}
		startIndex = max(n, 1)
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, scim.Errorf(scim.InvalidValue, "count: an integer")
		}
		count = min(max(n, 0), scim.MaxResults)
	}
	return startIndex, count, nil
}

// scimFilter parses the filter parameter; nil when there is none.
func scimFilter(r *http.Request) (scim.Expr, error) {
	f := strings.TrimSpace(r.URL.Query().Get("filter"))
	if f == "" {
		return nil, nil
	}
	return scim.ParseFilter(f)
}

// projection applies attributes and excludedAttributes (top-level names,
// or name.sub for the attribute name) to a resource; id, schemas and meta
// are always returned.
type projection struct {
	include, exclude map[string]bool
}

func scimProjection(r *http.Request) projection {
	parse := func(v string) map[string]bool {
		if v == "" {
			return nil
		}
		m := map[string]bool{}
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.HasPrefix(strings.ToLower(a), "urn:") {
				// A core attribute by its full path keeps its name.
				if strings.EqualFold(a[:i], scim.UserSchema) || strings.EqualFold(a[:i], scim.GroupSchema) {
					a = a[i+1:]
				}
			}
			name, _, _ := strings.Cut(a, ".")
			m[strings.ToLower(name)] = true
		}
		return m
	}
	q := r.URL.Query()
	return projection{include: parse(q.Get("attributes")), exclude: parse(q.Get("excludedAttributes"))}
}

func (p projection) keeps(name string) bool {
	switch l := strings.ToLower(name); {
	case l == "id" || l == "schemas" || l == "meta":
		return true
	case p.include != nil:
		return p.include[l]
	default:
		return !p.exclude[l]
	}
}

func (p projection) apply(res map[string]any) map[string]any {
	for k := range res {
		if !p.keeps(k) {
			delete(res, k)
		}
	}
	return res
}

// etag is a resource version's entity tag (weak: the JSON may be spelled
// differently for the same version).
func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// checkIfMatch refuses a write whose If-Match names another version.
func checkIfMatch(r *http.Request, version int64) error {
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" || im == "*" {
		return nil
	}
	for _, t := range strings.Split(im, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == strings.TrimPrefix(etag(version), "W/") {
			return nil
		}
	}
	return scimStatus(http.StatusPreconditionFailed, "If-Match does not name the resource's current version")
}

// notModified reports whether If-None-Match names the current version.
func notModified(r *http.Request, version int64) bool {
	for _, t := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if t = strings.TrimSpace(t); t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag(version), "W/") {
			return true
		}
	}
	return false
}

// schemasOf lists the core schema and the extensions a resource holds.
func schemasOf(core string, attrs map[string]any) []string {
	out := []string{core}
	for k := range attrs {
		if strings.HasPrefix(strings.ToLower(k), "urn:") {
			out = append(out, k)
		}
	}
	return out
}

func scimMeta(resourceType, location string, created, updated time.Time, version int64) map[string]any {
	return map[string]any{
		"resourceType": resourceType,
		"created":      created.UTC().Format(time.RFC3339Nano),
		"lastModified": updated.UTC().Format(time.RFC3339Nano),
		"location":     location,
		"version":      etag(version),
	}
}

// checkSchemas refuses a body whose schemas do not include core.
func checkSchemas(attrs map[string]any, core string) error {
	for k, v := range attrs {
		if !strings.EqualFold(k, "schemas") {
			continue
		}
		list, _ := v.([]any)
		for _, s := range list {
			if str, _ := s.(string); strings.EqualFold(str, core) {
				return nil
			}
		}
		return scim.Errorf(scim.InvalidSyntax, "schemas: must include %s", core)
	}
	return nil
}

// bodyID is the id a PUT body names, if any; it must be the resource's.
func bodyID(attrs map[string]any, id string) error {
	for k, v := range attrs {
		if strings.EqualFold(k, "id") {
			if s, ok := v.(string); !ok || s != id {
				return scim.Errorf(scim.Mutability, "id is read-only and must be %s or absent", id)
			}
		}
	}
	return nil
}

// scimAudit records a SCIM write in the org's audit log. The body is not
// recorded (it may hold a password); its SHA-256 is.
func (s *Server) scimAudit(c *scimCall, action string, target store.AuditTarget, detail map[string]any) {
	if detail == nil {
		detail = map[string]any{}
	}
	if c.body != nil {
		detail["payload_sha256"] = payloadHash(c.body)
	}
	b, err := json.Marshal(detail)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), auditTimeout)
		defer cancel()
		target.ID = auditValue(target.ID)
		_, err = s.store.AppendAudit(ctx, store.AppendAuditParams{
			OrgID: c.orgID, At: s.clock.Now(), Actor: "scim-token:" + c.token.ID, Action: action,
			Target: target, Detail: b, RemoteIP: auditValue(s.clientIP(c.r)),
		})
	}
	if err != nil {
		s.log.Error("audit entry not recorded", "org", c.orgID, "action", action, "err", err)
	}
}

func payloadHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
