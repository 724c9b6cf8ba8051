package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// badTexts is text no database column should get, as a path segment or
// query value (percent-encoded) and as a JSON string literal (raw bytes or
// an escape). PostgreSQL refuses every one of them in a text value.
var badTexts = []struct{ name, url, json string }{
	{"NUL", "a%00b", `"a\u0000b"`},
	{"invalid UTF-8", "a%ffb", "\"a\xffb\""},
	{"overlong NUL", "a%c0%80b", "\"a\xc0\x80b\""},
	{"UTF-16 surrogate half", "a%ed%a0%80b", "\"a\xed\xa0\x80b\""},
}

// textBodies holds, for every unsafe API route, bodies that put a string
// (@) in each string field the route reads, nested ones included; nil marks
// a route that reads no body. A route missing here fails the test, so a new
// route gets its strings checked the day it is added.
var textBodies = map[string][]string{
	"POST /api/v1/enroll":          {`{"token":@,"csr":"x"}`, `{"token":"x","csr":@}`, `{"token":"x","csr":"x","device_id":@}`},
	"POST /api/v1/renew":           {`{"certificate":@,"csr":"x"}`, `{"csr":@}`},
	"POST /api/v1/renew/challenge": {`{"certificate":@}`},

	"POST /api/v1/fleets":         {`{"name":@}`, `{"name":"f","description":@}`},
	"PATCH /api/v1/fleets/:name":  {`{"description":@}`},
	"DELETE /api/v1/fleets/:name": nil,

	"POST /api/v1/fleets/:fleet/idevid-vendors": {`{"name":@,"profile":"default","anchors_pem":"x"}`,
		`{"name":"v","profile":@,"anchors_pem":"x"}`, `{"name":"v","profile":"default","anchors_pem":@}`,
		`{"name":"v","profile":"default","anchors_pem":"x","id_prefix":@}`},
	"PATCH /api/v1/fleets/:fleet/idevid-vendors/:vendor":  {`{"profile":@}`, `{"anchors_pem":@}`, `{"id_from":@}`},
	"DELETE /api/v1/fleets/:fleet/idevid-vendors/:vendor": nil,
	// CSV and CRL bodies are not JSON text: no template applies.
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/crls":      nil,
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/allowlist": nil,

	"POST /api/v1/profiles": {`{"name":@,"key_types":["P-256"],"validity":"720h","renew_window":"240h"}`,
		`{"name":"p","key_types":[@],"validity":"720h","renew_window":"240h"}`,
		`{"name":"p","key_types":["P-256"],"validity":@,"renew_window":"240h"}`,
		`{"name":"p","key_types":["P-256"],"validity":"720h","renew_window":"240h","roles":[@]}`},
	"PUT /api/v1/profiles/:name":    {`{"key_types":["P-256"],"validity":"720h","renew_window":"240h","roles":[@]}`},
	"DELETE /api/v1/profiles/:name": nil,

	"POST /api/v1/devices": {`{"id":@,"fleet":"default","profile":"default"}`,
		`{"id":"d","fleet":@,"profile":"default"}`, `{"id":"d","fleet":"default","profile":@}`,
		`{"id":"d","fleet":"default","profile":"default","labels":{"k":@}}`,
		`{"id":"d","fleet":"default","profile":"default","labels":{@:"v"}}`},
	"PATCH /api/v1/devices/:id":  {`{"profile":@}`, `{"labels":{"k":@}}`, `{"labels":{@:"v"}}`},
	"DELETE /api/v1/devices/:id": nil,

	"POST /api/v1/token-batches": {`{"fleet":@,"profile":"default","count":1,"ttl":"1h"}`,
		`{"fleet":"default","profile":"default","count":1,"ttl":@}`,
		`{"fleet":"default","profile":"default","count":1,"ttl":"1h","device_ids":[@]}`},

	"POST /api/v1/devices/:id/revoke":          {`{"reason":@}`, `{"note":@}`},
	"POST /api/v1/devices/:id/suspend":         {`{"note":@}`},
	"POST /api/v1/devices/:id/reinstate":       {`{"note":@}`},
	"POST /api/v1/certificates/:serial/revoke": {`{"reason":"key_compromise","note":@}`},
	"POST /api/v1/token-batches/:id/revoke":    {`{"note":@}`},

	"POST /api/v1/policies":                   {`{"policy":@}`, `{"policy":"package x","tests":@}`, `{"policy":"package x","comment":@}`},
	"POST /api/v1/policies/validate":          {`{"policy":@}`, `{"policy":"package x","tests":@}`},
	"POST /api/v1/policies/:version/test":     nil,
	"POST /api/v1/policies/:version/activate": nil,
	"POST /api/v1/decisions/simulate": {`{"device":@,"action":"publish","topic":"t"}`,
		`{"device":"d","action":@,"topic":"t"}`, `{"device":"d","action":"publish","topic":@}`},

	"POST /api/v1/session":           {`{"username":@,"password":"a long enough password"}`, `{"username":"root","password":@}`},
	"DELETE /api/v1/session":         nil,
	"POST /api/v1/session/password":  {`{"current":@,"new":"another long password"}`, `{"current":"a long enough password","new":@}`},
	"POST /api/v1/users":             {`{"username":@,"password":"a long enough password","role":"viewer"}`, `{"username":"u","password":@,"role":"viewer"}`, `{"username":"u","password":"a long enough password","role":@}`},
	"PATCH /api/v1/users/:username":  {`{"role":@}`, `{"password":@}`},
	"DELETE /api/v1/users/:username": nil,
}

// sendRaw sends body bytes as they are (json.Marshal would repair them) with
// b's cookie and CSRF token.
func (u *uiStack) sendRaw(t testing.TB, method, path string, b *browser, body []byte) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: b.cookie})
	req.Header.Set(api.CSRFHeader, b.csrf)
	resp, err := u.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readReply(resp)
}

// withPath fills every path parameter of r with seg.
func (r route) withPath(seg string) (string, bool) {
	segs := strings.Split(r.path, "/")
	has := false
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i], has = seg, true
		}
	}
	return strings.Join(segs, "/"), has
}

// TestBadTextOverEveryRoute: a NUL or invalid UTF-8 in a path parameter, a
// query parameter or any string of a JSON body is a 400 invalid_argument
// naming where it was, on every API route and on both databases, never a
// 5xx (PostgreSQL refuses such text) and never stored (SQLite would).
// Derived from the router: a new route is covered the day it is added.
func TestBadTextOverEveryRoute(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u, routes := fullUIStack(t, backend)
			root := u.login(t, "root", uiPassword)
			send := func(r route, path string, body []byte) reply {
				t.Helper()
				res := u.sendRaw(t, r.method, path, root, body)
				if res.status >= 500 {
					t.Errorf("%s as %s: server error %d %s", r, path, res.status, res)
				}
				if r.String() == "DELETE /api/v1/session" && res.status < 300 {
					root = u.login(t, "root", uiPassword) // signed out: sign in again
				}
				return res
			}
			want := func(r route, what string, res reply, where string) {
				t.Helper()
				var e apitypes.ErrorBody
				if res.status != http.StatusBadRequest || json.Unmarshal(res.body, &e) != nil ||
					e.Error.Code != fault.InvalidArgument || !strings.Contains(e.Error.Message, where) {
					t.Errorf("%s, %s: %d %s; want 400 invalid_argument about the %s", r, what, res.status, res, where)
				}
			}
			var nPath, nQuery, nBody int
			for _, r := range routes {
				templates, listed := textBodies[r.String()]
				if r.unsafe() && !listed {
					t.Errorf("%s: add its string fields to textBodies (or nil if it reads no body)", r)
				}
				for _, bad := range badTexts {
					if p, ok := r.withPath(bad.url); ok {
						nPath++
						want(r, "path "+bad.name, send(r, p, nil), "path parameter")
					}
					nQuery++
					want(r, "query "+bad.name, send(r, r.url()+"?q="+bad.url, nil), "query parameter")
					want(r, "query name "+bad.name, send(r, r.url()+"?"+bad.url+"=1", nil), "query parameter")
					for _, tmpl := range templates {
						nBody++
						body := strings.ReplaceAll(tmpl, "@", bad.json)
						want(r, "body "+bad.name+" "+tmpl, send(r, r.url(), []byte(body)), "request body")
					}
				}
			}
			if nPath < 80 || nQuery < 150 || nBody < 150 {
				t.Fatalf("only %d path, %d query and %d body cases", nPath, nQuery, nBody)
			}
			t.Logf("%d routes: %d path, %d query, %d body cases of bad text answered 400 invalid_argument", len(routes), nPath, nQuery, nBody)
		})
	}
}

// TestLoginBadUsername: the first string an anonymous caller can send. A
// NUL in the username answered 500 on PostgreSQL.
func TestLoginBadUsername(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			for _, name := range []string{`"root\u0000"`, `"\u0000"`, "\"ro\xffot\""} {
				body := []byte(`{"username":` + name + `,"password":"` + uiPassword + `"}`)
				wantError(t, u.sendRaw(t, "POST", "/api/v1/session", &browser{}, body), http.StatusBadRequest, fault.InvalidArgument)
			}
			u.login(t, "root", uiPassword) // the failed attempts locked nothing
		})
	}
}

// TestLoginUserAgentNotUTF8: the User-Agent header is the one string the
// server stores that the user did not type (the session records it). A
// browser may send Latin-1 in it; a correct login answered 200 on SQLite
// and 400 on PostgreSQL. It signs in on both.
func TestLoginUserAgentNotUTF8(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			body := []byte(`{"username":"root","password":"` + uiPassword + `"}`)
			req, err := http.NewRequest("POST", u.srv.URL+"/api/v1/session", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "Mozilla/5.0 (caf\xe9)")
			resp, err := u.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if r := readReply(resp); r.status != http.StatusOK {
				t.Fatalf("login with a Latin-1 User-Agent: %s", r)
			}
		})
	}
}

// TestGoodTextStillAccepted: the check refuses bad text only. Non-ASCII,
// U+FFFD itself, a lone surrogate escape (decoded to U+FFFD, as JSON
// parsers do) and the six characters \u0000 after an escaped backslash are
// ordinary text and round-trip.
func TestGoodTextStillAccepted(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			root := u.login(t, "root", uiPassword)
			for i, tc := range []struct{ literal, want string }{
				{`"café 🙂 ünïcödé"`, "café 🙂 ünïcödé"},
				{`"\ufffd"`, "\ufffd"},
				{`"\ud800"`, "\ufffd"},
				{`"a\\u0000b"`, `a\u0000b`},
				{`"\\\\u0000"`, `\\u0000`},
			} {
				name := "text-" + string(rune('a'+i))
				res := u.sendRaw(t, "POST", "/api/v1/fleets", root, []byte(`{"name":"`+name+`","description":`+tc.literal+`}`))
				if res.status != http.StatusCreated {
					t.Fatalf("%s: %d %s", tc.literal, res.status, res)
				}
				res = u.sendRaw(t, "GET", "/api/v1/fleets/"+name, root, nil)
				var f apitypes.Fleet
				if err := json.Unmarshal(res.body, &f); err != nil || f.Description != tc.want {
					t.Errorf("%s: stored %q, want %q (%v)", tc.literal, f.Description, tc.want, err)
				}
			}
			if res := u.sendRaw(t, "GET", "/api/v1/devices?q=caf%C3%A9", root, nil); res.status != http.StatusOK {
				t.Errorf("non-ASCII search: %d %s", res.status, res)
			}
			// Escapes Go would write otherwise (lowercase hex, an escaped
			// unreserved letter) name the same fleet as the plain path.
			for _, p := range []string{"/api/v1/fleets/%64efault", "/api/v1/fleets/text%2da", "/api/v1/fleets/text%2Da"} {
				if res := u.sendRaw(t, "GET", p, root, nil); res.status != http.StatusOK {
					t.Errorf("GET %s: %d %s", p, res.status, res)
				}
			}
		})
	}
}
