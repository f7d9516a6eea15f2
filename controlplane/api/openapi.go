package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// routeDoc describes one route for the OpenAPI document. Request and
// Response are zero values of the Go types the handler decodes and
// returns, so the document follows the code.
type routeDoc struct {
	Summary  string
	Request  any
	Response any
	Status   int
	// Query lists query parameters by name with their description.
	Query map[string]string
}

// routeDocs documents every authenticated route; a test fails when a route
// is missing here or documented but not served.
var routeDocs = map[string]routeDoc{
	"GET /v1/users":                      {Summary: "List the org's users", Response: list[userView]{}, Status: 200},
	"GET /v1/users/{id}":                 {Summary: "Get a user", Response: userView{}, Status: 200},
	"GET /v1/devices":                    {Summary: "List enrolled devices", Response: list[deviceView]{}, Status: 200, Query: map[string]string{"email": "only this user's devices", "include_revoked": "true to include revoked devices"}},
	"GET /v1/devices/{id}":               {Summary: "Get a device", Response: deviceView{}, Status: 200},
	"POST /v1/devices/{id}/revoke":       {Summary: "Revoke a device: its certificate is refused from now on", Response: deviceView{}, Status: 200},
	"GET /v1/enrollment-secrets":         {Summary: "List enrollment secrets (never their values)", Response: list[enrollmentSecretView]{}, Status: 200},
	"POST /v1/enrollment-secrets":        {Summary: "Create an enrollment secret; its value is shown only in this response", Request: createEnrollmentSecretRequest{}, Response: enrollmentSecretView{}, Status: 201},
	"DELETE /v1/enrollment-secrets/{id}": {Summary: "Revoke an enrollment secret", Status: 204},
	"GET /v1/policy":                     {Summary: "Get the org's LLM destination policy", Response: policyView{}, Status: 200},
	"PUT /v1/policy":                     {Summary: "Replace the org's own LLM domains and CIDRs; locked devices receive the new policy", Request: putPolicyRequest{}, Response: policyView{}, Status: 200},
	"GET /v1/lockouts":                   {Summary: "List lockouts, newest first, with each step, provider and device", Response: lockoutList{}, Status: 200, Query: map[string]string{"state": "open or overridden", "email": "only this user's lockouts", "cursor": "next_cursor of the previous page", "limit": "1 to 500, default 50"}},
	"POST /v1/lockouts":                  {Summary: "Lock a user out of every enrolled device (200 with the open lockout if there is one)", Request: createLockoutRequest{}, Response: lockoutView{}, Status: 201},
	"GET /v1/lockouts/{id}":              {Summary: "Get a lockout with each device's command state", Response: lockoutView{}, Status: 200},
	"POST /v1/lockouts/{id}/override":    {Summary: "Override a lockout: the deliberate admin unlock", Request: overrideRequest{}, Response: lockoutView{}, Status: 200},
	"GET /v1/api-keys":                   {Summary: "List API keys (never their secrets)", Response: list[apiKeyView]{}, Status: 200},
	"POST /v1/api-keys":                  {Summary: "Create an API key; its secret is shown only in this response", Request: createAPIKeyRequest{}, Response: NewAPIKey{}, Status: 201},
	"DELETE /v1/api-keys/{id}":           {Summary: "Revoke an API key at once", Status: 204},
	"GET /v1/providers":                  {Summary: "List connected LLM providers (never their keys)", Response: list[providerView]{}, Status: 200},
	"GET /v1/providers/{name}":           {Summary: "Get a provider connection", Response: providerView{}, Status: 200},
	"PUT /v1/providers/{name}":           {Summary: "Connect a provider (openai, anthropic) with its admin key, checked with a read call first and stored encrypted", Request: putProviderRequest{}, Response: providerView{}, Status: 200},
	"DELETE /v1/providers/{name}":        {Summary: "Disconnect a provider", Status: 204},
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// OpenAPI builds the OpenAPI 3 document of the routes this server serves.
func (s *Server) OpenAPI() map[string]any {
	schemas := map[string]any{
		"Error": map[string]any{
			"type": "object",
			"properties": map[string]any{"error": map[string]any{
				"type":     "object",
				"required": []string{"code", "message"},
				"properties": map[string]any{
					"code":    map[string]any{"type": "string", "enum": []string{CodeInvalidArgument, CodeUnauthenticated, CodePermissionDenied, CodeNotFound, CodeConflict, CodeUnknownUser, CodeMethodNotAllowed, CodeTooLarge, CodeRateLimited, CodeProviderRejected, CodeInternal}},
					"message": map[string]any{"type": "string"},
				},
			}},
		},
	}
	paths := map[string]any{}
	for _, pattern := range s.patterns {
		doc, ok := routeDocs[pattern]
		if !ok {
			continue
		}
		method, path, _ := strings.Cut(pattern, " ")
		op := map[string]any{
			"summary":     doc.Summary,
			"operationId": operationID(method, path),
			"security":    []any{map[string]any{"apiKey": []string{}}},
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for name, desc := range doc.Query {
			params = append(params, map[string]any{"name": name, "in": "query", "description": desc, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if doc.Request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(doc.Request))},
			}}
		}
		responses := map[string]any{
			"400": errorResponse("invalid input"), "401": errorResponse("missing, unknown, expired or revoked API key"),
			"403": errorResponse("the key's scope does not allow this"), "404": errorResponse("not found in this organization"),
			"429": errorResponse("too many requests from this address; see Retry-After"),
			"500": errorResponse("internal error"),
		}
		ok2 := map[string]any{"description": "success"}
		if doc.Response != nil {
			ok2["content"] = map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(doc.Response))}}
		}
		responses[strconv.Itoa(doc.Status)] = ok2
		op["responses"] = responses
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Toktra admin API",
			"version":     "1",
			"description": "Offboard departing employees from every LLM tool. Authenticate with an API key in X-API-Key; every request is scoped to the key's organization.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"}},
			"schemas":         schemas,
		},
	}
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.OpenAPI())
}

func errorResponse(desc string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{
		"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}},
	}}
}

func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(strings.TrimPrefix(path, "/v1/"), "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '-' || r == '_' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	rawJSONType  = reflect.TypeOf(json.RawMessage{})
	lockStateTyp = reflect.TypeOf(store.LockState(""))
)

// schemaOf derives a JSON schema from a Go type by its json tags.
func schemaOf(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawJSONType:
		return map[string]any{}
	case t == lockStateTyp:
		return map[string]any{"type": "string", "enum": []string{string(store.LockStateUnknown), string(store.LockStateUnlocked), string(store.LockStateLocked)}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := schemaOf(t.Elem())
		s["nullable"] = true
		return s
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"} // encoding/json writes []byte as base64
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type)
		}
		return map[string]any{"type": "object", "properties": props}
	}
	return map[string]any{}
}
