package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	adminUserLine     = regexp.MustCompile(`(?m)^admin-user: admin$`)
	adminPasswordLine = regexp.MustCompile(`(?m)^admin-password: ([A-Za-z0-9_-]{24})$`)
	cliPasswordLine   = regexp.MustCompile(`(?m)^password: ([A-Za-z0-9_-]{24})$`)
)

// TestWebLogin: init prints the first UI user's password once, that
// password signs in over HTTP, and the admin CLI makes and resets users.
func TestWebLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"GATEHOUSE_CA_PASSPHRASE=", "GATEHOUSE_ADMIN_TOKEN="}
	in := run(t, env, bin, "init", "--data-dir", data)
	if in.code != 0 {
		t.Fatalf("init: %d\n%s%s", in.code, in.stdout, in.stderr)
	}
	m := adminPasswordLine.FindStringSubmatch(in.stdout)
	if m == nil || !adminUserLine.MatchString(in.stdout) {
		t.Fatalf("init printed no admin-user/admin-password lines:\n%s", in.stdout)
	}
	password := m[1]
	if strings.Contains(in.stderr, password) {
		t.Fatal("the admin password leaked into the log output")
	}
	if again := run(t, env, bin, "init", "--data-dir", data, "--if-missing"); again.code != 0 || strings.Contains(again.stdout, "admin-password") {
		t.Fatalf("init --if-missing: %d\n%s", again.code, again.stdout)
	}

	// CLI: a user with a password from stdin, one with a generated password.
	uc := exec.Command(bin, "admin", "user-create", "--data-dir", data, "--username", "olga", "--role", "operator", "--password-stdin")
	uc.Env = append(os.Environ(), env...)
	uc.Stdin = strings.NewReader("olga's long password\n")
	if out, err := uc.CombinedOutput(); err != nil || !strings.Contains(string(out), "created user olga") || strings.Contains(string(out), "password:") {
		t.Fatalf("user-create --password-stdin: %v\n%s", err, out)
	}
	gen := run(t, env, bin, "admin", "user-create", "--data-dir", data, "--username", "vic", "--role", "viewer")
	if gen.code != 0 || cliPasswordLine.FindStringSubmatch(gen.stdout) == nil {
		t.Fatalf("user-create: %d\n%s%s", gen.code, gen.stdout, gen.stderr)
	}
	short := exec.Command(bin, "admin", "user-create", "--data-dir", data, "--username", "sam", "--password-stdin")
	short.Env = append(os.Environ(), env...)
	short.Stdin = strings.NewReader("short\n")
	if out, err := short.CombinedOutput(); err == nil || !strings.Contains(string(out), "invalid_argument") {
		t.Fatalf("short password accepted: %v\n%s", err, out)
	}
	pw := run(t, env, bin, "admin", "user-passwd", "--data-dir", data, "--username", "vic")
	pm := cliPasswordLine.FindStringSubmatch(pw.stdout)
	if pw.code != 0 || pm == nil {
		t.Fatalf("user-passwd: %d\n%s%s", pw.code, pw.stdout, pw.stderr)
	}
	if r := run(t, env, bin, "admin", "user-passwd", "--data-dir", data, "--username", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("user-passwd for nobody: %d %s", r.code, r.stderr)
	}

	apiAddr := freeAddr(t)
	srv := exec.Command(bin, "serve", "--data-dir", data, "--api-addr", apiAddr, "--hooks-addr", freeAddr(t), "--diag-addr", freeAddr(t))
	srv.Env = append(os.Environ(), env...)
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
		}
	})
	server := "http://" + apiAddr
	waitReady(t, server+"/api/v1/version")

	login := func(user, pass string) (*http.Cookie, string, int) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"username": user, "password": pass})
		resp, err := http.Post(server+"/api/v1/session", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			CSRFToken string `json:"csrf_token"`
			User      struct {
				Role string `json:"role"`
			} `json:"user"`
		}
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

	_ = srv.Process.Signal(os.Interrupt)
	<-logDone
	for _, secret := range []string{password, ck.Value, csrf, pm[1]} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a password or session secret appeared in the server log")
		}
	}
}
