package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
)

// cliPasswordLine is how the admin CLI prints a password it generated.
var cliPasswordLine = regexp.MustCompile(`(?m)^password: ([A-Za-z0-9_-]{24})$`)

// TestWebLogin: init prints the first UI user's password once, that
// password signs in over HTTP, and the admin CLI makes and resets users.
func TestWebLogin(t *testing.T) {
	g := newGatehouse(t)
	password := g.adminPassword
	if g.adminUser != "admin" {
		t.Fatalf("init printed admin-user %q, want admin:\n%s", g.adminUser, g.initOut.stdout)
	}
	if again := g.run(t, nil, "init", "--data-dir", g.data, "--if-missing"); again.code != 0 || strings.Contains(again.stdout, "admin-password") {
		t.Fatalf("init --if-missing: %d\n%s", again.code, again.stdout)
	}

	// CLI: a user with a password from stdin, one with a generated password.
	uc := g.runStdin(t, "olga's long password\n", nil, "admin", "user-create", "--data-dir", g.data, "--username", "olga", "--role", "operator", "--password-stdin")
	if out := uc.stdout + uc.stderr; uc.code != 0 || !strings.Contains(out, "created user olga") || strings.Contains(out, "password:") {
		t.Fatalf("user-create --password-stdin: %d\n%s", uc.code, out)
	}
	gen := g.run(t, nil, "admin", "user-create", "--data-dir", g.data, "--username", "vic", "--role", "viewer")
	if gen.code != 0 || cliPasswordLine.FindStringSubmatch(gen.stdout) == nil {
		t.Fatalf("user-create: %d\n%s%s", gen.code, gen.stdout, gen.stderr)
	}
	short := g.runStdin(t, "short\n", nil, "admin", "user-create", "--data-dir", g.data, "--username", "sam", "--password-stdin")
	if out := short.stdout + short.stderr; short.code == 0 || !strings.Contains(out, "invalid_argument") {
		t.Fatalf("short password accepted: %d\n%s", short.code, out)
	}
	pw := g.run(t, nil, "admin", "user-passwd", "--data-dir", g.data, "--username", "vic")
	pm := cliPasswordLine.FindStringSubmatch(pw.stdout)
	if pw.code != 0 || pm == nil {
		t.Fatalf("user-passwd: %d\n%s%s", pw.code, pw.stdout, pw.stderr)
	}
	if r := g.run(t, nil, "admin", "user-passwd", "--data-dir", g.data, "--username", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("user-passwd for nobody: %d %s", r.code, r.stderr)
	}

	g.serve(t)
	server := g.server
	login := func(user, pass string) (*http.Cookie, string, int) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"username": user, "password": pass})
		resp, err := http.Post(server+"/api/v1/session", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body apitypes.Session
		_ = json.NewDecoder(resp.Body).Decode(&body)
		for _, c := range resp.Cookies() {
			if c.Name == "gatehouse_session" {
				return c, body.CSRFToken, resp.StatusCode
			}
		}
		return nil, "", resp.StatusCode
	}
	ck, csrf, code := login("admin", password)
	if code != 200 || ck == nil || csrf == "" || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("admin login with the printed password: %d %+v", code, ck)
	}
	if _, _, code := login("admin", password+"x"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	if c, _, code := login("olga", "olga's long password"); code != 200 || c == nil {
		t.Fatalf("olga: %d", code)
	}
	if _, _, code := login("vic", pm[1]); code != 200 {
		t.Fatalf("vic with the reset password: %d", code)
	}

	// The session drives the API: a change with the CSRF token succeeds.
	req, _ := http.NewRequest("POST", server+"/api/v1/fleets", strings.NewReader(`{"name":"lab"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", csrf)
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create fleet with the session: %d", resp.StatusCode)
	}

	g.stop()
	for _, secret := range []string{password, ck.Value, csrf, pm[1]} {
		if strings.Contains(g.logs.String(), secret) {
			t.Fatal("a password or session secret appeared in the server log")
		}
	}
}
