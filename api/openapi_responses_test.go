package api_test

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// conformance sends real requests and checks every answer against the
// document: the status must be one the operation lists (not just the
// default), the media type one it lists for that status, and a JSON body
// must validate against that schema (error bodies included).
type conformance struct {
	t       *testing.T
	u       *uiStack
	doc     *openAPIDoc
	checked map[string]int // "METHOD /path status" → answers checked
}

// exchange is one request: route is echo's pattern, url the concrete path.
type exchange struct {
	method, route, url string
	bearer             string
	browser            *browser
	body               any
	want               int // 0: any documented status
}

func (c *conformance) do(x exchange) reply {
	c.t.Helper()
	var r reply
	if x.browser != nil {
		csrf := ""
		if x.method != http.MethodGet {
			csrf = x.browser.csrf
		}
		r = c.u.do(c.t, x.method, x.url, x.browser, csrf, x.body, nil)
	} else {
		req := request{method: x.method, path: x.url, bearer: x.bearer}
		if x.body != nil {
			req.contentType, req.body = "application/json", bytes.NewReader(mustJSON(c.t, x.body))
		}
		r = c.u.send(c.t, req)
	}
	if x.want != 0 && r.status != x.want {
		c.t.Errorf("%s %s: status %d, want %d: %s", x.method, x.url, r.status, x.want, r)
	}
	c.check(x.method, x.route, r)
	return r
}

func (c *conformance) check(method, route string, r reply) {
	t := c.t
	t.Helper()
	op, ok := c.doc.operation(method, route)
	if !ok {
		t.Errorf("%s %s is not documented", method, route)
		return
	}
	status := strconv.Itoa(r.status)
	if _, ok := op["responses"].(map[string]any)[status]; !ok {
		t.Errorf("%s %s answered %s, which the document does not list: %s", method, route, status, r)
		return
	}
	ptr, resp := c.doc.response(t, "/paths/"+pointerEscape(openAPIPathOf(route))+"/"+strings.ToLower(method)+"/responses/"+status)
	content, _ := resp["content"].(map[string]any)
	if len(r.body) == 0 || r.status == http.StatusNoContent {
		if len(content) > 0 || len(r.body) > 0 {
			t.Errorf("%s %s %s: body %q, documented content %v", method, route, status, r.body, content)
		}
		c.checked[method+" "+route+" "+status]++
		return
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if _, ok := content[mt]; err != nil || !ok {
		t.Errorf("%s %s %s: media type %q is not documented (%v)", method, route, status, r.header.Get("Content-Type"), content)
		return
	}
	if mt == "application/json" {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
		if err != nil {
			t.Errorf("%s %s %s: body is not JSON: %v", method, route, status, err)
			return
		}
		if err := c.doc.schema(t, ptr+"/content/"+pointerEscape(mt)+"/schema").Validate(inst); err != nil {
			t.Errorf("%s %s %s: body does not match the documented schema: %v\n%s", method, route, status, err, r)
			return
		}
	}
	c.checked[method+" "+route+" "+status]++
}

// TestOpenAPIResponsesMatch walks the route table against a real server on
// both databases: it builds objects through the API (the POSTs and other
// changes are checked too), then calls every GET route with real ids, and
// every route without credentials and with a viewer token, checking each
// answer and the roles the document claims (x-gatehouse-role).
func TestOpenAPIResponsesMatch(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u, routes := fullUIStack(t, backend)
			c := &conformance{t: t, u: u, doc: fetchOpenAPI(t, u.stack), checked: map[string]int{}}
			ids := c.buildFixtures()
			c.everyGET(routes, ids)
			c.rolesAsDocumented(routes)
			c.teardown(ids)
			n := 0
			for _, v := range c.checked {
				n += v
			}
			t.Logf("%d answers validated, %d distinct (route, status) pairs, over %d routes", n, len(c.checked), len(routes))
		})
	}
}

// fixtureIDs names what buildFixtures made.
type fixtureIDs struct {
	device, enrolled, serial, batch, job string
}

func (c *conformance) buildFixtures() fixtureIDs {
	t, u := c.t, c.u
	admin := u.admin
	post := func(route, url string, body any, want int) reply {
		return c.do(exchange{method: http.MethodPost, route: route, url: url, bearer: admin, body: body, want: want})
	}
	post("/api/v1/fleets", "/api/v1/fleets", apitypes.FleetRequest{Name: "f1", Description: "first"}, 201)
	post("/api/v1/fleets", "/api/v1/fleets", apitypes.FleetRequest{Name: "f1"}, 409)
	c.do(exchange{method: "PATCH", route: "/api/v1/fleets/:name", url: "/api/v1/fleets/f1", bearer: admin, body: map[string]any{"description": "changed"}, want: 200})
	post("/api/v1/profiles", "/api/v1/profiles", apitypes.ProfileRequest{Name: "p1", KeyTypes: []string{"P-256"}, Validity: "720h"}, 201)
	c.do(exchange{method: "PUT", route: "/api/v1/profiles/:name", url: "/api/v1/profiles/p1", bearer: admin,
		body: apitypes.ProfileRequest{KeyTypes: []string{"P-256"}, Validity: "30d"}, want: 200})
	pki := idevidtest.NewVendor(t, "Acme")
	post("/api/v1/fleets/:fleet/idevid-vendors", "/api/v1/fleets/default/idevid-vendors", apitypes.IDevIDVendorRequest{Name: "v1",
		Profile: "default", AnchorsPEM: string(pki.AnchorsPEM()), IntermediatesPEM: string(pki.IntermediatesPEM())}, 201)
	post("/api/v1/fleets/:fleet/idevid-vendors", "/api/v1/fleets/default/idevid-vendors", apitypes.IDevIDVendorRequest{Name: "v2",
		Profile: "default", AnchorsPEM: "not PEM"}, 400)
	c.do(exchange{method: "PATCH", route: "/api/v1/fleets/:fleet/idevid-vendors/:vendor", url: "/api/v1/fleets/default/idevid-vendors/v1",
		bearer: admin, body: map[string]any{"allow_reenroll": true}, want: 200})
	post("/api/v1/devices", "/api/v1/devices", apitypes.DeviceRequest{ID: "d1", Fleet: "default", Profile: "default", Labels: map[string]string{"a": "b"}}, 201)
	post("/api/v1/devices", "/api/v1/devices", map[string]any{"id": "d2", "fleet": "default", "surprise": 1}, 400)
	c.do(exchange{method: "PATCH", route: "/api/v1/devices/:id", url: "/api/v1/devices/d1", bearer: admin, body: map[string]any{"labels": map[string]string{"c": "d"}}, want: 200})

	var batch apitypes.BatchResponse
	r := post("/api/v1/token-batches", "/api/v1/token-batches", apitypes.BatchRequest{Fleet: "default", Profile: "default", Count: 2, TTL: "1h"}, 201)
	if err := json.Unmarshal(r.body, &batch); err != nil || len(batch.Tokens) != 2 {
		t.Fatalf("batch: %v %s", err, r)
	}
	post("/api/v1/token-batches", "/api/v1/token-batches?format=csv", apitypes.BatchRequest{Fleet: "default", Profile: "default", Count: 1, TTL: "1h"}, 201)

	key := testpki.Key(t, "P-256")
	var enr apitypes.EnrollResponse
	r = c.do(exchange{method: "POST", route: "/api/v1/enroll", url: "/api/v1/enroll", body: apitypes.EnrollRequest{Token: batch.Tokens[0].Token, CSR: testpki.CSRPEM(t, key)}, want: 201})
	if err := json.Unmarshal(r.body, &enr); err != nil {
		t.Fatal(err)
	}
	c.do(exchange{method: "POST", route: "/api/v1/enroll", url: "/api/v1/enroll", body: apitypes.EnrollRequest{Token: batch.Tokens[0].Token, CSR: testpki.CSRPEM(t, key)}, want: 200})
	c.do(exchange{method: "POST", route: "/api/v1/enroll", url: "/api/v1/enroll", body: apitypes.EnrollRequest{Token: "gh_nope", CSR: "x"}})
	c.do(exchange{method: "POST", route: "/api/v1/renew/challenge", url: "/api/v1/renew/challenge", body: apitypes.RenewChallengeRequest{Certificate: enr.Certificate}, want: 201})
	c.do(exchange{method: "POST", route: "/api/v1/renew", url: "/api/v1/renew", body: apitypes.RenewRequest{Certificate: enr.Certificate, CSR: testpki.CSRPEM(t, key)}})

	c.policies(admin)
	post("/api/v1/decisions/simulate", "/api/v1/decisions/simulate", apitypes.SimulateRequest{Device: enr.DeviceID, Action: "publish", Topic: "t"}, 0)

	post("/api/v1/devices/:id/suspend", "/api/v1/devices/d1/suspend", apitypes.RevokeRequest{Note: "n"}, 409) // pending
	post("/api/v1/devices/:id/suspend", "/api/v1/devices/"+enr.DeviceID+"/suspend", apitypes.RevokeRequest{Note: "n"}, 200)
	post("/api/v1/devices/:id/reinstate", "/api/v1/devices/"+enr.DeviceID+"/reinstate", apitypes.RevokeRequest{}, 200)
	post("/api/v1/certificates/:serial/revoke", "/api/v1/certificates/"+enr.Serial+"/revoke", apitypes.RevokeRequest{Reason: "keyCompromise"}, 200)
	post("/api/v1/devices/:id/revoke", "/api/v1/devices/"+enr.DeviceID+"/revoke", apitypes.RevokeRequest{Reason: "keyCompromise"}, 200)
	var job apitypes.RevocationJob
	r = post("/api/v1/token-batches/:id/revoke", "/api/v1/token-batches/"+batch.Batch.ID+"/revoke", apitypes.RevokeRequest{Reason: "keyCompromise"}, 0)
	if err := json.Unmarshal(r.body, &job); err != nil || job.ID == "" {
		t.Fatalf("batch revocation: %v %s", err, r)
	}

	post("/api/v1/users", "/api/v1/users", apitypes.UserRequest{Username: "ursula", Password: uiPassword, Role: "viewer"}, 201)
	c.do(exchange{method: "PATCH", route: "/api/v1/users/:username", url: "/api/v1/users/ursula", bearer: admin, body: map[string]any{"role": "operator"}, want: 200})
	c.do(exchange{method: "POST", route: "/api/v1/session", url: "/api/v1/session", body: apitypes.LoginRequest{Username: "ursula", Password: "wrong password!"}, want: 401})
	return fixtureIDs{device: "d1", enrolled: enr.DeviceID, serial: enr.Serial, batch: batch.Batch.ID, job: job.ID}
}

// policies: a broken policy (an error with problems), a test run, an
// activation, and a refused one (422 with its report).
func (c *conformance) policies(admin string) {
	post := func(route, url string, body any, want int) reply {
		return c.do(exchange{method: http.MethodPost, route: route, url: url, bearer: admin, body: body, want: want})
	}
	post("/api/v1/policies/validate", "/api/v1/policies/validate", apitypes.PolicySource{Policy: "package broken\nallow if {"}, 400)
	post("/api/v1/policies/validate", "/api/v1/policies/validate", apitypes.PolicySource{Policy: policy.Default().Policy}, 200)
	post("/api/v1/policies/:version/test", "/api/v1/policies/1/test", nil, 200)
	post("/api/v1/policies/:version/activate", "/api/v1/policies/1/activate", nil, 200)
	post("/api/v1/policies", "/api/v1/policies", apitypes.PolicySource{Policy: policy.Default().Policy, Comment: "no tests"}, 201)
	post("/api/v1/policies/:version/activate", "/api/v1/policies/2/activate", nil, 422)
	post("/api/v1/policies/:version/test", "/api/v1/policies/99/test", nil, 404)
}

// everyGET calls each GET route with real ids (a new parameterized GET
// route needs its URL here) and with ids that exist nowhere.
func (c *conformance) everyGET(routes []route, ids fixtureIDs) {
	urls := map[string]string{
		"/api/v1/fleets/:name":                         "/api/v1/fleets/f1",
		"/api/v1/fleets/:fleet/idevid-vendors":         "/api/v1/fleets/default/idevid-vendors",
		"/api/v1/fleets/:fleet/idevid-vendors/:vendor": "/api/v1/fleets/default/idevid-vendors/v1",
		"/api/v1/profiles/:name":                       "/api/v1/profiles/p1",
		"/api/v1/devices/:id":                          "/api/v1/devices/" + ids.device,
		"/api/v1/devices/:id/certificates":             "/api/v1/devices/" + ids.enrolled + "/certificates",
		"/api/v1/devices/:id/sessions":                 "/api/v1/devices/" + ids.enrolled + "/sessions",
		"/api/v1/token-batches/:id":                    "/api/v1/token-batches/" + ids.batch,
		"/api/v1/revocation-jobs/:id":                  "/api/v1/revocation-jobs/" + ids.job,
		"/api/v1/policies/:version":                    "/api/v1/policies/1",
		"/api/v1/users/:username":                      "/api/v1/users/ursula",
		"/api/v1/certificates":                         "/api/v1/certificates?expiring_within=100000h",
		"/api/v1/policies/diff":                        "/api/v1/policies/diff?from=1&to=2",
		"/api/v1/audit":                                "/api/v1/audit?limit=20&since=" + url.QueryEscape("2020-01-02T03:04:05Z"),
		"/api/v1/devices":                              "/api/v1/devices?fleet=default&limit=1",
		"/api/v1/decisions/recent-denies":              "/api/v1/decisions/recent-denies?limit=5",
		"/api/v1/session-kicks":                        "/api/v1/session-kicks?status=pending",
		"/api/v1/audit/verify":                         "/api/v1/audit/verify",
	}
	root := c.u.login(c.t, "root", uiPassword)
	for _, r := range routes {
		if r.method != http.MethodGet {
			continue
		}
		u, ok := urls[r.path]
		if !ok && strings.Contains(r.path, ":") {
			c.t.Errorf("GET %s: no URL with real ids in everyGET", r.path)
			continue
		}
		if !ok {
			u = r.path
		}
		x := exchange{method: http.MethodGet, route: r.path, url: u, bearer: c.u.admin}
		if r.path == "/api/v1/session" {
			x.bearer, x.browser = "", root
		}
		if res := c.do(x); res.status != http.StatusOK {
			c.t.Errorf("GET %s: %d %s", u, res.status, res)
		}
		if strings.Contains(r.path, ":") {
			c.do(exchange{method: http.MethodGet, route: r.path, url: r.url(), bearer: c.u.admin})
		}
	}
	c.do(exchange{method: http.MethodGet, route: "/api/v1/certificates", url: "/api/v1/certificates", bearer: c.u.admin, want: 400})
	c.do(exchange{method: http.MethodGet, route: "/api/v1/devices", url: "/api/v1/devices?limit=-1", bearer: c.u.admin, want: 400})
}

// rolesAsDocumented: without credentials, a route that the document says
// needs a role or a session answers 401 and a public GET answers; with a
// viewer token, a route needing operator or admin answers 403
// permission_denied. Path ids exist nowhere and bodies are {}, so nothing
// changes.
func (c *conformance) rolesAsDocumented(routes []route) {
	for _, r := range routes {
		op, ok := c.doc.operation(r.method, r.path)
		if !ok {
			continue
		}
		role, _ := op["x-gatehouse-role"].(string)
		sec, _ := op["security"].([]any)
		var body any
		if r.unsafe() {
			body = map[string]any{}
		}
		res := c.do(exchange{method: r.method, route: r.path, url: r.url(), body: body})
		// A device route's credential is in its body (a token, a
		// certificate), so without one it may answer 401 too.
		if len(sec) > 0 && res.status != http.StatusUnauthorized || len(sec) == 0 && !r.unsafe() && res.status != http.StatusOK {
			c.t.Errorf("%s without credentials: %d, documented security %v", r, res.status, sec)
		}
		if role == "" {
			continue
		}
		res = c.do(exchange{method: r.method, route: r.path, url: r.url(), bearer: c.u.viewer, body: body})
		if denied := res.status == http.StatusForbidden; denied != (role != "viewer") {
			c.t.Errorf("%s as viewer: %d, documented role %s", r, res.status, role)
		}
	}
}

// teardown deletes through the API, and signs a session in and out.
func (c *conformance) teardown(ids fixtureIDs) {
	del := func(route, url string, want int) {
		c.do(exchange{method: http.MethodDelete, route: route, url: url, bearer: c.u.admin, want: want})
	}
	del("/api/v1/devices/:id", "/api/v1/devices/"+ids.device, 204)
	del("/api/v1/devices/:id", "/api/v1/devices/"+ids.device, 404)
	del("/api/v1/profiles/:name", "/api/v1/profiles/p1", 204)
	del("/api/v1/fleets/:name", "/api/v1/fleets/f1", 204)
	del("/api/v1/fleets/:fleet/idevid-vendors/:vendor", "/api/v1/fleets/default/idevid-vendors/v1", 204)
	del("/api/v1/users/:username", "/api/v1/users/ursula", 204)
	b := c.u.login(c.t, "olga", uiPassword)
	c.do(exchange{method: http.MethodPost, route: "/api/v1/session/password", url: "/api/v1/session/password", browser: b,
		body: apitypes.PasswordChange{Current: uiPassword, New: "an even longer password"}, want: 204})
	c.do(exchange{method: http.MethodDelete, route: "/api/v1/session", url: "/api/v1/session", browser: b, want: 204})
	c.do(exchange{method: http.MethodGet, route: "/api/v1/session", url: "/api/v1/session", browser: b, want: 401})
}
