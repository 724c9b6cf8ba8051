package api_test

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// fullUIStack wires the real policy, OCSP and auth services, so that
// every route answers as in the server binary, and signs in root (admin),
// olga (operator) and vic (viewer).
func fullUIStack(t *testing.T, backend string) (*uiStack, []route) {
	t.Helper()
	var (
		core *authz.Authorizer
		sync *authzsync.Syncer
	)
	u := &uiStack{clock: &uiClock{}}
	// withPolicies replaces the build chain, so it goes first.
	u.stack = newStack(t, testdb.DSN(t, backend), withPolicies(&core, &sync), withOCSP(),
		withAuth(u.clock, false, &u.auth))
	for name, role := range map[string]auth.Role{"root": auth.RoleAdmin, "olga": auth.RoleOperator, "vic": auth.RoleViewer} {
		if _, err := u.auth.CreateUser(context.Background(), "seed", name, uiPassword, role); err != nil {
			t.Fatal(err)
		}
	}
	var routes []route
	seen := map[string]bool{}
	for _, r := range u.srv.Config.Handler.(*api.Server).Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || seen[r.Method+" "+r.Path] {
			continue // the UI, the public CRL/OCSP paths and the /api fallbacks
		}
		seen[r.Method+" "+r.Path] = true
		routes = append(routes, route{r.Method, r.Path})
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].String() < routes[j].String() })
	if len(routes) < 40 {
		t.Fatalf("only %d API routes: is a route group missing?", len(routes))
	}
	return u, routes
}

type route struct{ method, path string }

func (r route) String() string { return r.method + " " + r.path }

func (r route) unsafe() bool {
	return r.method != http.MethodGet && r.method != http.MethodHead && r.method != http.MethodOptions
}

// url fills the path parameters with names that exist nowhere.
func (r route) url() string {
	segs := strings.Split(r.path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = "zz-missing"
		}
	}
	return strings.Join(segs, "/")
}

// Routes a cookie never authenticates: devices (bootstrap token or client
// certificate) and the login itself.
var cookieless = map[string]bool{
	"POST /api/v1/enroll":          true,
	"POST /api/v1/renew":           true,
	"POST /api/v1/renew/challenge": true,
	"POST /api/v1/session":         true,
}

// Unsafe routes a viewer may call: its own session and password, and the
// read-only policy what-if.
var viewerMay = map[string]bool{
	"DELETE /api/v1/session":          true,
	"POST /api/v1/session/password":   true,
	"POST /api/v1/decisions/simulate": true,
}

// Unsafe routes only admins may call.
var adminOnly = map[string]bool{
	"POST /api/v1/policies/:version/activate": true,
	"POST /api/v1/users":                      true,
	"PATCH /api/v1/users/:username":           true,
	"DELETE /api/v1/users/:username":          true,
	// A registered vendor lets devices enroll without a token.
	"POST /api/v1/fleets/:fleet/idevid-vendors":                  true,
	"PATCH /api/v1/fleets/:fleet/idevid-vendors/:vendor":         true,
	"DELETE /api/v1/fleets/:fleet/idevid-vendors/:vendor":        true,
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/crls":      true,
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/allowlist": true,
}

// TestEveryUnsafeRouteNeedsCSRF: a session cookie without the CSRF token
// changes nothing anywhere, whatever the role; derived from the router, so a
// new route is covered the day it is added.
func TestEveryUnsafeRouteNeedsCSRF(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u, routes := fullUIStack(t, backend)
			root := u.login(t, "root", uiPassword)
			n := 0
			for _, r := range routes {
				if !r.unsafe() || cookieless[r.String()] {
					continue
				}
				n++
				for _, tc := range []struct {
					name string
					csrf string
					hdr  map[string]string
				}{
					{"no token", "", nil},
					{"wrong token", wrongFirst(root.csrf), nil},
					{"right token, cross-site", root.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
					{"right token, foreign origin", root.csrf, map[string]string{"Origin": "https://evil.example"}},
				} {
					res := u.do(t, r.method, r.url(), root, tc.csrf, map[string]any{}, tc.hdr)
					if res.status != http.StatusForbidden || !strings.Contains(string(res.body), string(fault.CSRFFailed)) {
						t.Errorf("%s, admin cookie, %s: %d %s", r, tc.name, res.status, res)
					}
				}
			}
			if n < 20 {
				t.Fatalf("only %d unsafe cookie routes checked", n)
			}
			t.Logf("%d unsafe routes of %d refuse a cookie without a valid CSRF token", n, len(routes))
			// The session survived all of that (DELETE /session included).
			if res := u.do(t, "GET", "/api/v1/session", root, "", nil, nil); res.status != 200 {
				t.Fatalf("session after CSRF failures: %d %s", res.status, res)
			}
		})
	}
}

// TestCookieNeverAuthenticatesDevices: the device endpoints and the login
// answer a request with an admin cookie exactly as one without.
func TestCookieNeverAuthenticatesDevices(t *testing.T) {
	u, routes := fullUIStack(t, "sqlite")
	root := u.login(t, "root", uiPassword)
	for _, r := range routes {
		if !cookieless[r.String()] || r.path == "/api/v1/session" {
			continue
		}
		bare := u.do(t, r.method, r.url(), nil, "", map[string]any{}, nil)
		withCookie := u.do(t, r.method, r.url(), root, root.csrf, map[string]any{}, nil)
		if bare.status != withCookie.status || string(bare.body) != string(withCookie.body) || bare.status < 400 {
			t.Errorf("%s: without cookie %d %s, with %d %s", r, bare.status, bare, withCookie.status, withCookie)
		}
	}
}

// TestRolesOverEveryRoute: a viewer session changes nothing; an operator
// session cannot activate policies or manage users. Only the role check is
// exercised: path parameters name nothing, so an admitted request ends in
// 400/404, never in a change.
func TestRolesOverEveryRoute(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u, routes := fullUIStack(t, backend)
			vic, olga := u.login(t, "vic", uiPassword), u.login(t, "olga", uiPassword)
			for k := range adminOnly {
				if !containsRoute(routes, k) {
					t.Errorf("admin-only route %s is not registered", k)
				}
			}
			for _, r := range routes {
				if !r.unsafe() || cookieless[r.String()] || viewerMay[r.String()] {
					continue
				}
				denied := func(res reply) bool {
					return res.status == http.StatusForbidden && strings.Contains(string(res.body), string(fault.PermissionDenied))
				}
				if res := u.do(t, r.method, r.url(), vic, vic.csrf, map[string]any{}, nil); !denied(res) {
					t.Errorf("%s, viewer: %d %s", r, res.status, res)
				}
				res := u.do(t, r.method, r.url(), olga, olga.csrf, map[string]any{}, nil)
				if denied(res) != adminOnly[r.String()] {
					t.Errorf("%s, operator: %d %s (admin only: %v)", r, res.status, res, adminOnly[r.String()])
				}
				if res.status == http.StatusUnauthorized || res.status >= 500 {
					t.Errorf("%s, operator: %d %s", r, res.status, res)
				}
			}
		})
	}
}

func containsRoute(rs []route, s string) bool {
	for _, r := range rs {
		if r.String() == s {
			return true
		}
	}
	return false
}

// TestSessionReplacedAndDemoted: signing in over a session ends the old
// one server-side, and a role change or disable applies to the very next
// request of a live session.
func TestSessionReplacedAndDemoted(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			old := u.login(t, "vic", uiPassword)
			r := u.do(t, "POST", "/api/v1/session", old, "", map[string]string{"username": "olga", "password": uiPassword}, nil)
			ck := sessionCookie(r)
			if r.status != 200 || ck == nil || ck.Value == old.cookie {
				t.Fatalf("login over a session: %d %v", r.status, r.header.Values("Set-Cookie"))
			}
			wantError(t, u.do(t, "GET", "/api/v1/session", old, "", nil, nil), 401, fault.Unauthenticated)

			root, olga := u.login(t, "root", uiPassword), u.login(t, "olga", uiPassword)
			fleet := func(name string) reply {
				return u.do(t, "POST", "/api/v1/fleets", olga, olga.csrf, map[string]string{"name": name}, nil)
			}
			if r := fleet("before"); r.status != 201 {
				t.Fatalf("operator create: %d %s", r.status, r)
			}
			if r := u.do(t, "PATCH", "/api/v1/users/olga", root, root.csrf, map[string]any{"role": "viewer"}, nil); r.status != 200 {
				t.Fatalf("demote: %d %s", r.status, r)
			}
			wantError(t, fleet("after-demotion"), 403, fault.PermissionDenied)
			if r := u.do(t, "PATCH", "/api/v1/users/olga", root, root.csrf, map[string]any{"disabled": true}, nil); r.status != 200 {
				t.Fatalf("disable: %d %s", r.status, r)
			}
			wantError(t, u.do(t, "GET", "/api/v1/fleets", olga, "", nil, nil), 401, fault.Unauthenticated)
		})
	}
}

// TestAPIResponseHeaders: every API answer, success or error, token batch
// included (the only copy of its secrets), is never cached and never
// rendered as a page.
func TestAPIResponseHeaders(t *testing.T) {
	u := newUIStack(t, "sqlite")
	root := u.login(t, "root", uiPassword)
	for _, tc := range []struct {
		method, path string
		b            *browser
		body         any
		hdr          map[string]string
		want         int
	}{
		{"POST", "/api/v1/token-batches", root, map[string]any{"fleet": "default", "profile": "default", "count": 2, "ttl": "1h"}, nil, 201},
		{"POST", "/api/v1/token-batches?format=csv", root, map[string]any{"fleet": "default", "profile": "default", "count": 2, "ttl": "1h"}, nil, 201},
		{"GET", "/api/v1/session", root, nil, nil, 200},
		{"POST", "/api/v1/session", nil, map[string]string{"username": "vic", "password": uiPassword}, nil, 200},
		{"GET", "/api/v1/fleets", nil, nil, nil, 401},
		{"GET", "/api/v1/nope", nil, nil, nil, 404},
	} {
		csrf := ""
		if tc.b != nil {
			csrf = tc.b.csrf
		}
		r := u.do(t, tc.method, tc.path, tc.b, csrf, tc.body, tc.hdr)
		if r.status != tc.want {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.status, r)
		}
		for k, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"} {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
	}
}
