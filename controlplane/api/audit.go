package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/toktra/toktra/controlplane/ratelimit"
	"github.com/toktra/toktra/controlplane/store"
)

// Every authenticated request is recorded in the org's audit log: who
// (the API key), what (an action named after the route), on what (the
// target from the path), from where, and with what outcome (the HTTP
// status). Request bodies are never recorded, so secrets cannot leak into
// the log.
//
// The entry is appended after the handler has run, because only then is
// the outcome known, and before the response is sent, so a client that
// reads the log next sees its own request. An append that fails is logged
// and the response goes out unchanged: the action has already happened,
// and answering 500 for it would tell the client it had not. The cost of
// this choice is that a database that takes the action but refuses the
// audit entry leaves that action unrecorded, loudly (an error log).

// auditTimeout bounds an audit append; it is not cut short when the client
// goes away, so an action taken is still recorded.
const auditTimeout = 10 * time.Second

// maxAuditValueBytes bounds a path value copied into an entry.
const maxAuditValueBytes = 256

// auditActionOverrides names the routes whose action the general rule in
// auditAction would name less well.
var auditActionOverrides = map[string]string{
	"GET /v1/policy":                     "policy.read",
	"DELETE /v1/api-keys/{id}":           "api_keys.revoke",
	"DELETE /v1/enrollment-secrets/{id}": "enrollment_secrets.revoke",
}

// auditAction derives an entry's action from a route pattern: the route's
// resource (see auditRoute) and a verb, joined by a dot.
func auditAction(pattern string) string {
	if a, ok := auditActionOverrides[pattern]; ok {
		return a
	}
	resource, verb := auditRoute(pattern)
	return resource + "." + verb
}

// auditRoute splits a route pattern into its resource, the path's fixed
// segments after /v1 (dashes as underscores) joined with dots, and its
// verb. A POST to a fixed segment after a wildcard names the verb ("POST
// /v1/lockouts/{id}/override" is lockouts, override); otherwise GET is
// "read" on a wildcard and "list" on a collection, POST "create", PUT and
// PATCH "update", DELETE "delete".
func auditRoute(pattern string) (resource, verb string) {
	method, path, _ := strings.Cut(pattern, " ")
	segs := strings.Split(strings.Trim(strings.TrimPrefix(path, "/v1/"), "/"), "/")
	n := len(segs)
	if method == http.MethodPost && n >= 2 && !isWildcard(segs[n-1]) && isWildcard(segs[n-2]) {
		verb, segs = segs[n-1], segs[:n-1]
	}
	var nouns []string
	for _, seg := range segs {
		if !isWildcard(seg) && seg != "" {
			nouns = append(nouns, seg)
		}
	}
	if verb == "" {
		switch method {
		case http.MethodGet, http.MethodHead:
			verb = "list"
			if n > 0 && isWildcard(segs[len(segs)-1]) {
				verb = "read"
			}
		case http.MethodPost:
			verb = "create"
		case http.MethodPut, http.MethodPatch:
			verb = "update"
		case http.MethodDelete:
			verb = "delete"
		default:
			verb = strings.ToLower(method)
		}
	}
	return strings.ReplaceAll(strings.Join(nouns, "."), "-", "_"), strings.ReplaceAll(verb, "-", "_")
}

func isWildcard(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// clientIP is the address recorded as an entry's RemoteIP: the peer, or
// the client named by X-Forwarded-For when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	ip := ratelimit.ClientIP(r, s.limits.TrustedProxies)
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

// auditRecorder holds back a handler's response until its audit entry is
// stored. Headers go straight to the real writer's map: nothing is sent
// before flush.
type auditRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (rec *auditRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *auditRecorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (rec *auditRecorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *auditRecorder) flush() {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	rec.ResponseWriter.WriteHeader(rec.status)
	_, _ = rec.ResponseWriter.Write(rec.body.Bytes())
}

// finishAudit is deferred by handle once a request is authenticated: it
// appends the request's entry, then sends the held response. A handler
// that panics is recorded with status 500 and the panic goes on.
func (s *Server) finishAudit(rec *auditRecorder, r *http.Request, pattern string, p principal) {
	if v := recover(); v != nil {
		rec.status = http.StatusInternalServerError
		s.appendAudit(rec, r, pattern, p)
		panic(v)
	}
	s.appendAudit(rec, r, pattern, p)
	rec.flush()
}

type auditDetail struct {
	Status int               `json:"status"`
	Path   map[string]string `json:"path,omitempty"`
}

func (s *Server) appendAudit(rec *auditRecorder, r *http.Request, pattern string, p principal) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	method, path, _ := strings.Cut(pattern, " ")
	resource, _ := auditRoute(pattern)
	target := store.AuditTarget{Type: resource}
	d := auditDetail{Status: status}
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		if d.Path == nil {
			d.Path = map[string]string{}
		}
		v := auditValue(r.PathValue(m[1]))
		d.Path[m[1]] = v
		target.ID = v // the last wildcard names the target
	}
	if target.ID == "" && method == http.MethodPost && status < 300 && d.Path == nil {
		// A creation: the target is what was created, named by the
		// response's id. Only the id is read from the body.
		var created struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(rec.body.Bytes(), &created) == nil {
			target.ID = auditValue(created.ID)
		}
	}
	detail, err := json.Marshal(d)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
		defer cancel()
		_, err = s.store.AppendAudit(ctx, store.AppendAuditParams{
			OrgID: p.key.OrgID, At: s.clock.Now(), Actor: p.actor(), Action: auditAction(pattern),
			Target: target, Detail: detail, RemoteIP: auditValue(s.clientIP(r)),
		})
	}
	if err != nil {
		s.log.Error("audit entry not recorded", "org", p.key.OrgID, "actor", p.actor(),
			"method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
}

// auditValue makes a request-supplied value fit an audit field: valid
// UTF-8, no NUL, at most maxAuditValueBytes.
func auditValue(v string) string {
	v = strings.ReplaceAll(strings.ToValidUTF8(v, "\uFFFD"), "\x00", "\uFFFD")
	if len(v) <= maxAuditValueBytes {
		return v
	}
	cut := maxAuditValueBytes
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}

type auditTargetView struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

// auditEntryView is an audit entry as the API shows it. hash is the hex
// SHA-256 of store.AuditHash's encoding of the fields (detail compacted),
// and prev_hash the hash of the entry before it.
type auditEntryView struct {
	OrgID    string          `json:"org_id"`
	Seq      uint64          `json:"seq"`
	ID       string          `json:"id"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   auditTargetView `json:"target"`
	Detail   json.RawMessage `json:"detail"`
	RemoteIP string          `json:"remote_ip"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

func newAuditEntryView(e store.AuditEntry) auditEntryView {
	return auditEntryView{
		OrgID: e.OrgID, Seq: e.Seq, ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Action: e.Action,
		Target: auditTargetView{Type: e.Target.Type, ID: e.Target.ID}, Detail: e.Detail, RemoteIP: e.RemoteIP,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

type auditLogList struct {
	Data       []auditEntryView `json:"data"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

func init() {
	routeDocs["GET /v1/audit-log"] = routeDoc{
		Summary:  "List the org's audit log, oldest first (chain order), with each entry's hash and the previous entry's",
		Response: auditLogList{}, Status: 200,
		Query: map[string]string{
			"actor":  "only entries by this actor, e.g. api-key:key_...",
			"action": "only this action, e.g. lockouts.create",
			"target": "only this target: type (e.g. lockouts) or type/id",
			"from":   "RFC 3339 time; entries at or after it",
			"to":     "RFC 3339 time; entries before it",
			"cursor": "next_cursor of the previous page",
			"limit":  "1 to 1000, default 100",
		},
	}
}

func (s *Server) listAuditLog(ctx context.Context, p principal, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	params := store.ListAuditParams{OrgID: p.key.OrgID, Actor: q.Get("actor"), Action: q.Get("action"), Cursor: q.Get("cursor")}
	if t := q.Get("target"); t != "" {
		typ, id, hasID := strings.Cut(t, "/")
		if typ == "" || (hasID && id == "") {
			return 0, nil, invalid("target: type or type/id")
		}
		params.TargetType, params.TargetID = typ, id
	}
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"from", &params.From}, {"to", &params.To}} {
		if v := q.Get(tp.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return 0, nil, invalid(tp.name + ": an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			}
			*tp.dst = t
		}
	}
	if !params.From.IsZero() && !params.To.IsZero() && !params.From.Before(params.To) {
		return 0, nil, invalid("from must be before to")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxAuditPageLimit {
			return 0, nil, invalid("limit: 1 to " + strconv.Itoa(store.MaxAuditPageLimit))
		}
		params.Limit = n
	}
	page, err := s.store.ListAudit(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	out := auditLogList{Data: []auditEntryView{}, NextCursor: page.NextCursor}
	for _, e := range page.Entries {
		out.Data = append(out.Data, newAuditEntryView(e))
	}
	return http.StatusOK, out, nil
}
