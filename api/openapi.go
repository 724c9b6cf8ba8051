package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/api/typeschema"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// GET /api/v1/openapi.json needs no credentials: the document holds the
// API's shape (routes, types, fault codes, required roles), which the
// README already publishes, and no data; client generators and API tools
// fetch it before they have a token.

const schemaRef = "#/components/schemas/"

// nullableFields are the slices and maps a response may carry as null
// (typeschema.Config.Nullable); every other one is never null.
var nullableFields = []string{"PolicyTestReport.Results", "SessionKickList.Targets"}

// openAPI serves the document built by New.
func (s *Server) openAPI(c echo.Context) error {
	return c.JSONBlob(http.StatusOK, s.openapi)
}

// openAPIDocument builds the OpenAPI 3.1 document of every /api/v1 route
// in routes from routeDocs. A route without an entry, or an entry without
// a route, is an error: the document is complete or the server does not
// start.
func openAPIDocument(routes []*echo.Route) ([]byte, error) {
	g := typeschema.New(typeschema.Config{RefPrefix: schemaRef, Nullable: nullableFields})
	errBody, err := g.For(apitypes.ErrorBody{}, typeschema.Response)
	if err != nil {
		return nil, err
	}
	b := &docBuilder{g: g, errs: &errorResponses{body: errBody, named: map[string]any{}},
		paths: map[string]map[string]any{}, seen: map[string]bool{}, opIDs: map[string]bool{}}
	for _, r := range routes {
		if strings.HasPrefix(r.Path, "/api/v1/") {
			if err := b.add(r); err != nil {
				return nil, err
			}
		}
	}
	if err := b.complete(); err != nil {
		return nil, err
	}
	return b.marshal()
}

// docBuilder gathers the operations of one document.
type docBuilder struct {
	g           *typeschema.Generator
	errs        *errorResponses
	paths       map[string]map[string]any
	seen, opIDs map[string]bool
	problems    []string
}

// add documents one route, or notes that it cannot.
func (b *docBuilder) add(r *echo.Route) error {
	key := r.Method + " " + r.Path
	d, ok := routeDocs[key]
	if !ok {
		b.problems = append(b.problems, key+" has no entry in routeDocs")
		return nil
	}
	b.seen[key] = true
	op, err := d.operation(b.g, r, b.errs)
	if err != nil {
		return fmt.Errorf("api: documenting %s: %w", key, err)
	}
	if id := op["operationId"].(string); b.opIDs[id] {
		b.problems = append(b.problems, key+": operationId "+id+" is taken")
	} else {
		b.opIDs[id] = true
	}
	p := openAPIPath(r.Path)
	if b.paths[p] == nil {
		b.paths[p] = map[string]any{}
	}
	b.paths[p][strings.ToLower(r.Method)] = op
	return nil
}

// complete fails when a route lacked an entry, an entry matched no route,
// or a nullable field was renamed away.
func (b *docBuilder) complete() error {
	for key := range routeDocs {
		if !b.seen[key] {
			b.problems = append(b.problems, "routeDocs entry "+key+" matches no route")
		}
	}
	for _, n := range b.g.Unused() {
		b.problems = append(b.problems, "nullable field "+n+" names no documented field")
	}
	if len(b.problems) == 0 {
		return nil
	}
	slices.Sort(b.problems)
	return fmt.Errorf("api: the OpenAPI document is out of step with the routes: %s", strings.Join(b.problems, "; "))
}

func (b *docBuilder) marshal() ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "Gatehouse API", "version": "1",
			"description": "Device PKI and MQTT access control. Every error is {\"error\":{\"code\",\"message\"}} with a stable code; " +
				"x-gatehouse-role names the least role a route needs; device routes carry their credential (token, certificate) in the body."},
		"paths": b.paths,
		"components": map[string]any{
			"schemas":   b.g.Defs(),
			"responses": b.errs.named,
			"securitySchemes": map[string]any{
				"bearerToken": map[string]any{"type": "http", "scheme": "bearer", "description": "An admin API token (" + auth.TokenPrefix + "…)."},
				"sessionCookie": map[string]any{"type": "apiKey", "in": "cookie", "name": SessionCookie,
					"description": "A web UI session; unsafe methods also need the session's CSRF token in " + CSRFHeader + "."},
			},
		},
	}, "", "  ")
}

// openAPIPath turns echo's /devices/:id into OpenAPI's /devices/{id}.
func openAPIPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
		}
	}
	return strings.Join(segs, "/")
}

// operationID is the handler's method name, e.g. listFleets.
func operationID(handler string) string {
	name := handler[strings.LastIndex(handler, ".")+1:]
	return strings.TrimSuffix(name, "-fm")
}

func (d routeDoc) operation(g *typeschema.Generator, r *echo.Route, errs *errorResponses) (map[string]any, error) {
	tag, _, _ := strings.Cut(strings.TrimPrefix(r.Path, "/api/v1/"), "/")
	op := map[string]any{"operationId": operationID(r.Name), "summary": d.summary, "tags": []string{tag},
		"security": d.who.security()}
	if role := d.who.role(); role != "" {
		op["x-gatehouse-role"] = string(role)
	}
	if params := d.parameters(r.Path); len(params) > 0 {
		op["parameters"] = params
	}
	if d.req != nil {
		content, err := requestContent(g, d.req)
		if err != nil {
			return nil, err
		}
		op["requestBody"] = map[string]any{"required": true, "content": content}
	}
	resps, err := d.responses(g, r.Method, errs)
	if err != nil {
		return nil, err
	}
	op["responses"] = resps
	return op, nil
}

func (c caller) security() []map[string][]string {
	switch c {
	case anyone:
		return []map[string][]string{}
	case signedIn:
		return []map[string][]string{{"sessionCookie": {}}}
	}
	return []map[string][]string{{"bearerToken": {}}, {"sessionCookie": {}}}
}

func (d routeDoc) parameters(path string) []map[string]any {
	var out []map[string]any
	for _, s := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			out = append(out, map[string]any{"name": name, "in": "path", "required": true, "schema": typeschema.Schema{"type": "string"}})
		}
	}
	for _, q := range d.query {
		s := typeschema.Schema{"type": q.typ}
		switch q.typ {
		case "integer":
			s["minimum"] = 0
		case "date-time":
			s = typeschema.Schema{"type": "string", "format": "date-time"}
		}
		out = append(out, map[string]any{"name": q.name, "in": "query", "required": q.required, "schema": s})
	}
	return out
}

// errorCodes is every fault code the route can answer: its own and those
// its middleware adds.
func (d routeDoc) errorCodes(method string) []fault.Code {
	codes := append([]fault.Code{fault.InvalidArgument, fault.Internal, fault.Unavailable}, d.faults...)
	if d.req != nil {
		codes = append(codes, fault.BodyTooLarge)
	}
	if d.who != anyone {
		codes = append(codes, fault.Unauthenticated)
		if !isSafeMethod(method) {
			codes = append(codes, fault.CSRFFailed)
		}
	}
	if d.who.role() != "" {
		codes = append(codes, fault.PermissionDenied)
	}
	slices.Sort(codes)
	return slices.Compact(codes)
}

// errorResponses collects the error answers as named components, one per
// set of codes, so the hundreds of error statuses are written once each.
type errorResponses struct {
	body  typeschema.Schema // the ErrorBody $ref
	named map[string]any    // components/responses
}

// ref names the error answer carrying one of codes (any code: none given),
// defining it once.
func (e *errorResponses) ref(codes []fault.Code) map[string]any {
	name, desc, schema := "error", "Any other error", e.body
	if len(codes) > 0 {
		name, desc, schema = strings.ReplaceAll(joinCodes(codes), ", ", "."), "Error codes: "+joinCodes(codes), e.schema(codes)
	}
	if _, ok := e.named[name]; !ok {
		e.named[name] = map[string]any{"description": desc,
			"content": map[string]any{echo.MIMEApplicationJSON: map[string]any{"schema": schema}}}
	}
	return map[string]any{"$ref": "#/components/responses/" + name}
}

// schema is the error body with its code narrowed to codes.
func (e *errorResponses) schema(codes []fault.Code) typeschema.Schema {
	return typeschema.Schema{"allOf": []typeschema.Schema{e.body,
		{"properties": typeschema.Schema{"error": typeschema.Schema{"properties": typeschema.Schema{"code": typeschema.Schema{"enum": codes}}}}}}}
}

// responses lists the success answers, one error answer per status the
// route's fault codes map to (statusOf), its code narrowed to those codes,
// and a default: any other error has the same shape.
func (d routeDoc) responses(g *typeschema.Generator, method string, errs *errorResponses) (map[string]any, error) {
	bodies, descs, err := d.successes(g)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"default": errs.ref(nil)}
	byStatus := map[int][]fault.Code{}
	for _, c := range d.errorCodes(method) {
		byStatus[statusOf(c)] = append(byStatus[statusOf(c)], c)
	}
	for st, codes := range byStatus {
		if _, ok := descs[st]; !ok {
			out[strconv.Itoa(st)] = errs.ref(codes)
			continue
		}
		// A status that is also a success shape (a refused activation's
		// report) lists both.
		if bodies[st] == nil {
			bodies[st] = mediaSchemas{}
		}
		bodies[st][echo.MIMEApplicationJSON] = append(bodies[st][echo.MIMEApplicationJSON], errs.schema(codes))
		descs[st] += "; error codes: " + joinCodes(codes)
	}
	for st, desc := range descs {
		r := map[string]any{"description": desc}
		if len(bodies[st]) > 0 {
			content := map[string]any{}
			for mt, ss := range bodies[st] {
				content[mt] = map[string]any{"schema": oneSchema(ss)}
			}
			r["content"] = content
		}
		out[strconv.Itoa(st)] = r
	}
	return out, nil
}

// mediaSchemas holds, per media type, the shapes one status may have.
type mediaSchemas = map[string][]typeschema.Schema

// successes gathers the success answers' bodies and descriptions by status.
func (d routeDoc) successes(g *typeschema.Generator) (map[int]mediaSchemas, map[int]string, error) {
	bodies := map[int]mediaSchemas{}
	descs := map[int]string{}
	for _, rs := range d.resps {
		descs[rs.status] = http.StatusText(rs.status)
		if rs.body == nil {
			continue
		}
		mt, s, err := bodySchema(g, rs.body)
		if err != nil {
			return nil, nil, err
		}
		if bodies[rs.status] == nil {
			bodies[rs.status] = mediaSchemas{}
		}
		bodies[rs.status][mt] = append(bodies[rs.status][mt], s)
	}
	return bodies, descs, nil
}

func oneSchema(ss []typeschema.Schema) typeschema.Schema {
	if len(ss) == 1 {
		return ss[0]
	}
	return typeschema.Schema{"anyOf": ss}
}

func joinCodes(cs []fault.Code) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// requestContent is a request body's media types and schemas: JSON from
// apitypes, or a CSV or CRL sent as it is.
func requestContent(g *typeschema.Generator, req any) (map[string]any, error) {
	text := map[string]any{"schema": typeschema.Schema{"type": "string"}}
	switch req.(type) {
	case csvDoc:
		return map[string]any{"text/csv": text}, nil
	case crlDoc:
		return map[string]any{"application/pkix-crl": map[string]any{"schema": typeschema.Schema{"type": "string", "format": "binary"}},
			"application/x-pem-file": text}, nil
	}
	s, err := g.For(req, typeschema.Request)
	if err != nil {
		return nil, err
	}
	return map[string]any{echo.MIMEApplicationJSON: map[string]any{"schema": s}}, nil
}

// bodySchema is the media type and schema of one success body.
func bodySchema(g *typeschema.Generator, body any) (string, typeschema.Schema, error) {
	switch body.(type) {
	case pemDoc:
		return "application/x-pem-file", typeschema.Schema{"type": "string"}, nil
	case csvDoc:
		return "text/csv", typeschema.Schema{"type": "string"}, nil
	case openAPIDoc:
		return echo.MIMEApplicationJSON, typeschema.Schema{"type": "object", "required": []string{"openapi", "info", "paths"}}, nil
	}
	s, err := g.For(body, typeschema.Response)
	return echo.MIMEApplicationJSON, s, err
}
