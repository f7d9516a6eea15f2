package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDocumentsEveryRoute fetches the served document, validates it
// with an independent OpenAPI 3 implementation, and checks it names exactly
// the routes the server serves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	f := setup(t)
	resp, err := http.Get(f.srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/openapi.json = %d", resp.StatusCode)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for _, p := range f.api.patterns {
		if !documented[p] {
			t.Errorf("route %q is served but not in the OpenAPI document", p)
		}
		delete(documented, p)
	}
	for p := range documented {
		t.Errorf("the OpenAPI document has %q, which is not served", p)
	}
	for p := range routeDocs {
		found := false
		for _, q := range f.api.patterns {
			found = found || p == q
		}
		if !found {
			t.Errorf("routeDocs has %q, which is not served", p)
		}
	}
	// The request schema follows the Go type the handler decodes.
	op := doc.Paths.Find("/v1/lockouts").Post
	props := op.RequestBody.Value.Content.Get("application/json").Schema.Value.Properties
	if _, ok := props["email"]; !ok || len(props) != 1 {
		var names []string
		for k := range props {
			names = append(names, k)
		}
		t.Errorf("POST /v1/lockouts request properties = %s; want email", strings.Join(names, ","))
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil || raw["openapi"] != "3.0.3" {
		t.Errorf("openapi version = %v (%v); want 3.0.3", raw["openapi"], err)
	}
}
