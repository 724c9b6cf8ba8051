package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// uiClock is the auth service's clock in these tests, moved by hand.
type uiClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *uiClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *uiClock) Advance(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

const uiPassword = "a long enough password"

// uiStack is a stack with web UI users admin "root", operator "olga" and
// viewer "vic", all with uiPassword.
type uiStack struct {
	*stack
	auth  *auth.Service
	clock *uiClock
}

func withAuth(clk *uiClock, secure bool, out **auth.Service) stackOpt {
	return func(c *stackCfg) {
		prev := c.build
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			if prev != nil {
				prev(t, st, theCA, rec, cfg)
			}
			svc, err := auth.New(auth.Config{Users: st, Sessions: st, Now: clk.Now,
				Params: auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Auth, cfg.SecureCookies = svc, secure
			cfg.PublicURL = "https://gatehouse.example:8443"
			*out = svc
		}
	}
}

func newUIStack(t *testing.T, backend string, opts ...stackOpt) *uiStack {
	t.Helper()
	u := &uiStack{clock: &uiClock{}}
	opts = append([]stackOpt{withAuth(u.clock, false, &u.auth)}, opts...)
	u.stack = newStack(t, testdb.DSN(t, backend), opts...)
	for name, role := range map[string]auth.Role{"root": auth.RoleAdmin, "olga": auth.RoleOperator, "vic": auth.RoleViewer} {
		if _, err := u.auth.CreateUser(context.Background(), "seed", name, uiPassword, role); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// browser is a signed-in session as a browser holds it.
type browser struct {
	cookie string
	csrf   string
}

// do sends a request with optional cookie, CSRF token and extra headers.
func (u *uiStack) do(t testing.TB, method, path string, b *browser, csrf string, in any, hdr map[string]string) reply {
	t.Helper()
	var body io.Reader
	if in != nil {
		j, _ := json.Marshal(in)
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b != nil {
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: b.cookie})
	}
	if csrf != "" {
		req.Header.Set(api.CSRFHeader, csrf)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := u.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: rb}
}

func sessionCookie(r reply) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	return nil
}

func (u *uiStack) login(t testing.TB, user, pass string) *browser {
	t.Helper()
	r := u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": user, "password": pass}, nil)
	if r.status != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, r.status, r)
	}
	var s apitypes.Session
	if err := json.Unmarshal(r.body, &s); err != nil || s.CSRFToken == "" || s.User.Username != user {
		t.Fatalf("login body: %v %s", err, r)
	}
	ck := sessionCookie(r)
	if ck == nil {
		t.Fatalf("login set no cookie: %v", r.header)
	}
	return &browser{cookie: ck.Value, csrf: s.CSRFToken}
}

func TestSessionLogin(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			for _, tc := range []struct {
				name       string
				body       any
				hdr        map[string]string
				wantStatus int
				wantCode   fault.Code
			}{
				{"good", map[string]string{"username": "olga", "password": uiPassword}, nil, 200, ""},
				{"same-origin fetch", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": u.srv.URL}, 200, ""},
				{"wrong password", map[string]string{"username": "olga", "password": uiPassword + "x"}, nil, 401, fault.Unauthenticated},
				{"unknown user", map[string]string{"username": "nobody", "password": uiPassword}, nil, 401, fault.Unauthenticated},
				{"missing password", map[string]string{"username": "olga"}, nil, 400, fault.InvalidArgument},
				{"unknown field", map[string]string{"username": "olga", "password": uiPassword, "otp": "1"}, nil, 400, fault.InvalidArgument},
				{"cross-site fetch", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, fault.CSRFFailed},
				{"foreign origin", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Origin": "https://evil.example"}, 403, fault.CSRFFailed},
				{"null origin", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Origin": "null"}, 403, fault.CSRFFailed},
				// Behind a proxy that rewrites Host, the browser's Origin is
				// the public URL's.
				{"public URL origin", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Origin": "https://gatehouse.example:8443"}, 200, ""},
				{"public host, other scheme", map[string]string{"username": "olga", "password": uiPassword},
					map[string]string{"Origin": "http://gatehouse.example:8443"}, 403, fault.CSRFFailed},
			} {
				r := u.do(t, "POST", "/api/v1/session", nil, "", tc.body, tc.hdr)
				if tc.wantCode != "" {
					wantError(t, r, tc.wantStatus, tc.wantCode)
					if sessionCookie(r) != nil {
						t.Errorf("%s: failed login set a cookie", tc.name)
					}
					continue
				}
				if r.status != tc.wantStatus {
					t.Fatalf("%s: %d %s", tc.name, r.status, r)
				}
				var s apitypes.Session
				dec := json.NewDecoder(bytes.NewReader(r.body))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&s); err != nil || s.User.Username != "olga" || s.User.Role != "operator" ||
					len(s.CSRFToken) < 40 || s.ExpiresAt.Before(time.Now().Add(59*time.Minute)) {
					t.Errorf("%s: body %v %s", tc.name, err, r)
				}
				ck := sessionCookie(r)
				if ck == nil || len(ck.Value) != 43 || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
					t.Errorf("%s: cookie %+v (raw %q)", tc.name, ck, r.header.Values("Set-Cookie"))
				}
				if strings.Contains(string(r.body), ck.Value) {
					t.Errorf("%s: the session secret is in the body", tc.name)
				}
			}
			// Same message for an unknown user and a wrong password.
			a := u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "nobody", "password": uiPassword}, nil)
			b := u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "olga", "password": "wrong-but-long"}, nil)
			if string(a.body) != string(b.body) {
				t.Errorf("unknown user %s vs wrong password %s", a, b)
			}
		})
	}
}

func TestSessionThrottledOverHTTP(t *testing.T) {
	u := newUIStack(t, "sqlite")
	for range 6 {
		u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "vic", "password": "wrong password"}, nil)
	}
	r := u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "vic", "password": uiPassword}, nil)
	wantError(t, r, http.StatusTooManyRequests, auth.LoginThrottled)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After: %v", r.header)
	}
}

func TestSessionCookieSecure(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []stackOpt
	}{
		{"tls", []stackOpt{withTLS()}},
		{"configured", []stackOpt{func(c *stackCfg) {
			prev := c.build
			c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
				prev(t, st, theCA, rec, cfg)
				cfg.SecureCookies = true
			}
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUIStack(t, "sqlite", tc.opts...)
			r := u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "vic", "password": uiPassword}, nil)
			if ck := sessionCookie(r); r.status != 200 || ck == nil || !ck.Secure || !ck.HttpOnly {
				t.Fatalf("%d %v", r.status, r.header.Values("Set-Cookie"))
			}
		})
	}
}

func TestSessionCSRFAndRoles(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			olga, vic := u.login(t, "olga", uiPassword), u.login(t, "vic", uiPassword)
			n := 0
			fleet := func() map[string]string { n++; return map[string]string{"name": "f" + string(rune('a'+n))} }
			for _, tc := range []struct {
				name     string
				b        *browser
				csrf     string
				bearer   string
				hdr      map[string]string
				method   string
				want     int
				wantCode fault.Code
			}{
				{"cookie, no token", olga, "", "", nil, "POST", 403, fault.CSRFFailed},
				{"cookie, wrong token", olga, wrongFirst(olga.csrf), "", nil, "POST", 403, fault.CSRFFailed},
				{"cookie, other session's token", olga, vic.csrf, "", nil, "POST", 403, fault.CSRFFailed},
				{"cookie, right token", olga, olga.csrf, "", nil, "POST", 201, ""},
				{"cookie, right token, cross-site", olga, olga.csrf, "", map[string]string{"Sec-Fetch-Site": "cross-site"}, "POST", 403, fault.CSRFFailed},
				{"viewer cookie, right token", vic, vic.csrf, "", nil, "POST", 403, fault.PermissionDenied},
				{"viewer cookie, read", vic, "", "", nil, "GET", 200, ""},
				{"bearer, no token", nil, "", u.admin, nil, "POST", 201, ""},
				{"bearer viewer", nil, "", u.viewer, nil, "POST", 403, fault.PermissionDenied},
				{"nothing", nil, "", "", nil, "POST", 401, fault.Unauthenticated},
				{"garbage cookie", &browser{cookie: "nope"}, "x", "", nil, "GET", 401, fault.Unauthenticated},
			} {
				hdr := map[string]string{}
				for k, v := range tc.hdr {
					hdr[k] = v
				}
				if tc.bearer != "" {
					hdr["Authorization"] = "Bearer " + tc.bearer
				}
				var body any
				if tc.method == "POST" {
					body = fleet()
				}
				r := u.do(t, tc.method, "/api/v1/fleets", tc.b, tc.csrf, body, hdr)
				if tc.wantCode != "" {
					wantError(t, r, tc.want, tc.wantCode)
				} else if r.status != tc.want {
					t.Errorf("%s: %d %s", tc.name, r.status, r)
				}
			}
			// The audit event of the cookie-made fleet names the user.
			evs, err := u.st.ListAudit(context.Background(), store.AuditFilter{ObjectType: "fleet"})
			if err != nil {
				t.Fatal(err)
			}
			actors := map[string]bool{}
			for _, e := range evs {
				actors[e.Actor] = true
			}
			if !actors["user:olga"] || !actors["token:admin"] {
				t.Fatalf("audit actors %v", actors)
			}

			// GET /session echoes the session for its cookie only.
			var s apitypes.Session
			r := u.do(t, "GET", "/api/v1/session", olga, "", nil, nil)
			if err := json.Unmarshal(r.body, &s); r.status != 200 || err != nil || s.CSRFToken != olga.csrf || s.User.Role != "operator" {
				t.Fatalf("get session: %d %s", r.status, r)
			}
			wantError(t, u.do(t, "GET", "/api/v1/session", nil, "", nil, nil), 401, fault.Unauthenticated)
			wantError(t, u.do(t, "GET", "/api/v1/session", nil, "", nil, map[string]string{"Authorization": "Bearer " + u.admin}), 401, fault.Unauthenticated)

			// Logout needs the token, ends the session and clears the cookie.
			wantError(t, u.do(t, "DELETE", "/api/v1/session", olga, "", nil, nil), 403, fault.CSRFFailed)
			r = u.do(t, "DELETE", "/api/v1/session", olga, olga.csrf, nil, nil)
			if ck := sessionCookie(r); r.status != 204 || ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
				t.Fatalf("logout: %d %v", r.status, r.header.Values("Set-Cookie"))
			}
			wantError(t, u.do(t, "GET", "/api/v1/session", olga, "", nil, nil), 401, fault.Unauthenticated)
			wantError(t, u.do(t, "GET", "/api/v1/fleets", olga, "", nil, nil), 401, fault.Unauthenticated)
			if r := u.do(t, "GET", "/api/v1/fleets", vic, "", nil, nil); r.status != 200 {
				t.Fatalf("another session after logout: %d", r.status)
			}
		})
	}
}

func TestSessionIdleOverHTTP(t *testing.T) {
	u := newUIStack(t, "sqlite")
	b := u.login(t, "vic", uiPassword)
	u.clock.Advance(50 * time.Minute)
	if r := u.do(t, "GET", "/api/v1/fleets", b, "", nil, nil); r.status != 200 {
		t.Fatalf("after 50m: %d", r.status)
	}
	u.clock.Advance(61 * time.Minute)
	r := u.do(t, "GET", "/api/v1/fleets", b, "", nil, nil)
	wantError(t, r, 401, fault.Unauthenticated)
	if ck := sessionCookie(r); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("expired session's cookie not cleared: %v", r.header.Values("Set-Cookie"))
	}
}

func TestUserAdmin(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			u := newUIStack(t, backend)
			root := u.login(t, "root", uiPassword)
			vic := u.login(t, "vic", uiPassword)
			decodeUser := func(r reply) apitypes.User {
				t.Helper()
				var out apitypes.User
				dec := json.NewDecoder(bytes.NewReader(r.body))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&out); err != nil {
					t.Fatalf("user body: %v %s", err, r)
				}
				return out
			}

			wantError(t, u.do(t, "GET", "/api/v1/users", vic, "", nil, nil), 403, fault.PermissionDenied)
			r := u.do(t, "GET", "/api/v1/users", root, "", nil, nil)
			var list apitypes.UserList
			if err := json.Unmarshal(r.body, &list); r.status != 200 || err != nil || len(list.Users) != 3 || strings.Contains(string(r.body), "argon2") {
				t.Fatalf("list: %d %s", r.status, r)
			}

			for _, tc := range []struct {
				name string
				body map[string]string
				code fault.Code
			}{
				{"short password", map[string]string{"username": "ann", "password": "short", "role": "viewer"}, fault.InvalidArgument},
				{"bad username", map[string]string{"username": "Ann Smith", "password": uiPassword, "role": "viewer"}, fault.InvalidArgument},
				{"bad role", map[string]string{"username": "ann", "password": uiPassword, "role": "root"}, fault.InvalidArgument},
				{"taken", map[string]string{"username": "vic", "password": uiPassword, "role": "viewer"}, fault.AlreadyExists},
			} {
				r := u.do(t, "POST", "/api/v1/users", root, root.csrf, tc.body, nil)
				wantError(t, r, map[fault.Code]int{fault.InvalidArgument: 400, fault.AlreadyExists: 409}[tc.code], tc.code)
			}
			r = u.do(t, "POST", "/api/v1/users", root, root.csrf, map[string]string{"username": "ann", "password": uiPassword, "role": "viewer"}, nil)
			if got := decodeUser(r); r.status != 201 || got.Username != "ann" || got.Role != "viewer" || got.Disabled {
				t.Fatalf("create: %d %s", r.status, r)
			}
			// Bearer admins manage users too, without CSRF.
			r = u.do(t, "PATCH", "/api/v1/users/ann", nil, "", map[string]any{"role": "operator"}, map[string]string{"Authorization": "Bearer " + u.admin})
			if got := decodeUser(r); r.status != 200 || got.Role != "operator" {
				t.Fatalf("promote: %d %s", r.status, r)
			}
			ann := u.login(t, "ann", uiPassword)
			// Disabling ends the user's sessions and stops logins.
			r = u.do(t, "PATCH", "/api/v1/users/ann", root, root.csrf, map[string]any{"disabled": true}, nil)
			if got := decodeUser(r); r.status != 200 || !got.Disabled || got.DisabledAt == nil {
				t.Fatalf("disable: %d %s", r.status, r)
			}
			wantError(t, u.do(t, "GET", "/api/v1/session", ann, "", nil, nil), 401, fault.Unauthenticated)
			wantError(t, u.do(t, "POST", "/api/v1/session", nil, "", map[string]string{"username": "ann", "password": uiPassword}, nil), 401, fault.Unauthenticated)
			r = u.do(t, "PATCH", "/api/v1/users/ann", root, root.csrf, map[string]any{"disabled": false, "password": "another long password"}, nil)
			if r.status != 200 {
				t.Fatalf("enable + reset: %d %s", r.status, r)
			}
			u.login(t, "ann", "another long password")
			wantError(t, u.do(t, "PATCH", "/api/v1/users/ann", root, root.csrf, map[string]any{}, nil), 400, fault.InvalidArgument)
			wantError(t, u.do(t, "PATCH", "/api/v1/users/zed", root, root.csrf, map[string]any{"disabled": true}, nil), 404, fault.NotFound)
			// The last enabled admin stays.
			wantError(t, u.do(t, "PATCH", "/api/v1/users/root", root, root.csrf, map[string]any{"role": "viewer"}, nil), 409, fault.Conflict)
			wantError(t, u.do(t, "DELETE", "/api/v1/users/root", root, root.csrf, nil, nil), 409, fault.Conflict)
			if r := u.do(t, "DELETE", "/api/v1/users/ann", root, root.csrf, nil, nil); r.status != 204 {
				t.Fatalf("delete: %d %s", r.status, r)
			}
			wantError(t, u.do(t, "DELETE", "/api/v1/users/ann", root, root.csrf, nil, nil), 404, fault.NotFound)

			// Own password: the current one is checked; other sessions end.
			vic2 := u.login(t, "vic", uiPassword)
			wantError(t, u.do(t, "POST", "/api/v1/session/password", vic, vic.csrf, map[string]string{"current": "wrong password!", "new": "my new password"}, nil), 403, fault.PermissionDenied)
			wantError(t, u.do(t, "POST", "/api/v1/session/password", vic, vic.csrf, map[string]string{"current": uiPassword, "new": "short"}, nil), 400, fault.InvalidArgument)
			wantError(t, u.do(t, "POST", "/api/v1/session/password", vic, "", map[string]string{"current": uiPassword, "new": "my new password"}, nil), 403, fault.CSRFFailed)
			if r := u.do(t, "POST", "/api/v1/session/password", vic, vic.csrf, map[string]string{"current": uiPassword, "new": "my new password"}, nil); r.status != 204 {
				t.Fatalf("change own password: %d %s", r.status, r)
			}
			if r := u.do(t, "GET", "/api/v1/session", vic, "", nil, nil); r.status != 200 {
				t.Fatalf("own session after password change: %d", r.status)
			}
			wantError(t, u.do(t, "GET", "/api/v1/session", vic2, "", nil, nil), 401, fault.Unauthenticated)
			u.login(t, "vic", "my new password")

			// Every change is audited with its actor; no password in any detail.
			evs, err := u.st.ListAudit(context.Background(), store.AuditFilter{ObjectType: "admin_user", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, e := range evs {
				got[e.Actor+" "+e.Action] = true
				if strings.Contains(e.Detail, "password") && !strings.Contains(e.Detail, "password=reset") && e.Detail != "own password" {
					t.Errorf("audit detail %q", e.Detail)
				}
				if strings.Contains(e.Detail, uiPassword) || strings.Contains(e.Detail, "another long") {
					t.Errorf("password in audit: %q", e.Detail)
				}
			}
			for _, want := range []string{"user:root admin_user.create", "token:admin admin_user.update", "user:root admin_user.update",
				"user:root admin_user.delete", "user:vic admin_user.password_change", "user:ann session.login"} {
				if !got[want] {
					t.Errorf("no audit event %q in %v", want, got)
				}
			}
		})
	}
}

// wrongFirst changes a token's first character: "x"+tok[1:] was the token
// itself whenever it began with x (1 run in 64).
func wrongFirst(tok string) string {
	if strings.HasPrefix(tok, "x") {
		return "y" + tok[1:]
	}
	return "x" + tok[1:]
}
