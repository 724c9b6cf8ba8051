package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

const openAPIURL = "gatehouse-openapi.json"

// openAPIDoc is the served document, decoded for walking and loaded into a
// JSON Schema compiler (draft 2020-12, formats asserted) for validating.
type openAPIDoc struct {
	raw      []byte
	doc      map[string]any
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

func fetchOpenAPI(t *testing.T, s *stack) *openAPIDoc {
	t.Helper()
	r := s.send(t, request{method: http.MethodGet, path: "/api/v1/openapi.json"})
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET openapi.json without credentials: %d %q %s", r.status, r.header.Get("Content-Type"), r)
	}
	d := &openAPIDoc{raw: r.body, compiled: map[string]*jsonschema.Schema{}}
	if err := json.Unmarshal(r.body, &d.doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	d.compiler = jsonschema.NewCompiler()
	d.compiler.DefaultDraft(jsonschema.Draft2020)
	d.compiler.AssertFormat()
	if err := d.compiler.AddResource(openAPIURL, inst); err != nil {
		t.Fatal(err)
	}
	return d
}

// schema compiles the schema at a JSON pointer into the document.
func (d *openAPIDoc) schema(t testing.TB, ptr string) *jsonschema.Schema {
	t.Helper()
	if s, ok := d.compiled[ptr]; ok {
		return s
	}
	s, err := d.compiler.Compile(openAPIURL + "#" + ptr)
	if err != nil {
		t.Fatalf("schema %s does not compile: %v", ptr, err)
	}
	d.compiled[ptr] = s
	return s
}

// response returns the response object at ptr, following a $ref to
// components/responses, and the pointer it was found at.
func (d *openAPIDoc) response(t testing.TB, ptr string) (string, map[string]any) {
	t.Helper()
	var v any = d.doc
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		m, _ := v.(map[string]any)
		v = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)]
	}
	r, _ := v.(map[string]any)
	if ref, ok := r["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/components/responses/")
		resps, _ := d.doc["components"].(map[string]any)["responses"].(map[string]any)
		if r, _ = resps[name].(map[string]any); !ok || r == nil {
			t.Fatalf("%s: $ref %s resolves to nothing", ptr, ref)
		}
		return "/components/responses/" + pointerEscape(name), r
	}
	if r == nil {
		t.Fatalf("no response object at %s", ptr)
	}
	return ptr, r
}

func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// openAPIPathOf turns echo's :param into {param}.
func openAPIPathOf(echoPath string) string {
	segs := strings.Split(echoPath, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

func (d *openAPIDoc) operation(method, echoPath string) (map[string]any, bool) {
	paths, _ := d.doc["paths"].(map[string]any)
	item, _ := paths[openAPIPathOf(echoPath)].(map[string]any)
	op, ok := item[strings.ToLower(method)].(map[string]any)
	return op, ok
}

// TestOpenAPIDocument: the document is served without credentials, is an
// OpenAPI 3.1 document whose every schema compiles as JSON Schema 2020-12,
// documents every /api/v1 route of echo's route table and nothing else, and
// matches the reviewed golden file (go test ./api -run TestOpenAPIDocument -update).
func TestOpenAPIDocument(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	d := fetchOpenAPI(t, s)

	golden := filepath.Join("testdata", "openapi.json")
	if *update {
		if err := os.WriteFile(golden, d.raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, d.raw) {
		t.Errorf("openapi.json differs from %s: review the change and run with -update", golden)
	}

	if d.doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", d.doc["openapi"])
	}
	info, _ := d.doc["info"].(map[string]any)
	if info["title"] == "" || info["version"] == "" {
		t.Errorf("info lacks title or version: %v", info)
	}

	routes := map[string]bool{}
	for _, r := range s.srv.Config.Handler.(*api.Server).Routes() {
		if strings.HasPrefix(r.Path, "/api/v1/") {
			routes[r.Method+" "+openAPIPathOf(r.Path)] = true
		}
	}
	documented := checkOperations(t, d)
	for r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not documented", r)
		}
	}
	for r := range documented {
		if !routes[r] {
			t.Errorf("documented %s is no route", r)
		}
	}
	t.Logf("echo routes under /api/v1: %d; documented operations: %d", len(routes), len(documented))
	if len(routes) < 50 {
		t.Errorf("only %d routes under /api/v1: is a route group missing?", len(routes))
	}

	schemas, _ := d.doc["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range schemas {
		d.schema(t, "/components/schemas/"+pointerEscape(name))
	}
	t.Logf("component schemas: %d; schemas compiled in all: %d", len(schemas), len(d.compiled))
}

// checkOperations checks each operation's shape, compiles every request
// and response schema, and returns the documented "METHOD /path" set.
func checkOperations(t *testing.T, d *openAPIDoc) map[string]bool {
	t.Helper()
	documented := map[string]bool{}
	ids := map[string]string{}
	paths, _ := d.doc["paths"].(map[string]any)
	for p, item := range paths {
		for method, o := range item.(map[string]any) {
			key := strings.ToUpper(method) + " " + p
			documented[key] = true
			op := o.(map[string]any)
			id, _ := op["operationId"].(string)
			if id == "" || ids[id] != "" {
				t.Errorf("%s: operationId %q empty or also used by %s", key, id, ids[id])
			}
			ids[id] = key
			if s, _ := op["summary"].(string); s == "" {
				t.Errorf("%s has no summary", key)
			}
			checkPathParams(t, key, p, op)
			base := "/paths/" + pointerEscape(p) + "/" + method
			if rb, ok := op["requestBody"].(map[string]any); ok {
				for mt := range rb["content"].(map[string]any) {
					d.schema(t, base+"/requestBody/content/"+pointerEscape(mt)+"/schema")
				}
			}
			resps, _ := op["responses"].(map[string]any)
			if _, ok := resps["default"]; !ok || len(resps) < 2 {
				t.Errorf("%s: responses %v lack a success or the default error", key, resps)
			}
			for status := range resps {
				ptr, rm := d.response(t, base+"/responses/"+status)
				if desc, _ := rm["description"].(string); desc == "" {
					t.Errorf("%s %s: no description", key, status)
				}
				content, _ := rm["content"].(map[string]any)
				for mt := range content {
					d.schema(t, ptr+"/content/"+pointerEscape(mt)+"/schema")
				}
			}
		}
	}
	return documented
}

// checkPathParams: the template's {params} are exactly the declared path
// parameters, each required.
func checkPathParams(t *testing.T, key, path string, op map[string]any) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range strings.Split(path, "/") {
		if strings.HasPrefix(s, "{") {
			want[strings.Trim(s, "{}")] = true
		}
	}
	params, _ := op["parameters"].([]any)
	got := 0
	for _, p := range params {
		pm := p.(map[string]any)
		if pm["in"] != "path" {
			continue
		}
		got++
		if !want[pm["name"].(string)] || pm["required"] != true {
			t.Errorf("%s: path parameter %v is not in the template or not required", key, pm)
		}
	}
	if got != len(want) {
		t.Errorf("%s: %d path parameters declared, template has %d", key, got, len(want))
	}
}
