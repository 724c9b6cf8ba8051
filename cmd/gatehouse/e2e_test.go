package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildBinary compiles the real gatehouse binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatehouse")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type runResult struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, env []string, bin string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return runResult{so.String(), se.String(), code}
}

var adminTokenLine = regexp.MustCompile(`(?m)^admin-token: (gha_[A-Za-z0-9_-]{43})$`)

// TestFactoryLine drives the real binary the way the README does: init,
// serve, create a token batch as CSV, enroll with the CLI, verify with openssl.
func TestFactoryLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"GATEHOUSE_CA_PASSPHRASE=", "GATEHOUSE_ADMIN_TOKEN="}

	init1 := run(t, env, bin, "init", "--data-dir", data)
	if init1.code != 0 {
		t.Fatalf("init: %d\n%s%s", init1.code, init1.stdout, init1.stderr)
	}
	m := adminTokenLine.FindStringSubmatch(init1.stdout)
	if m == nil {
		t.Fatalf("init printed no admin-token line:\n%s", init1.stdout)
	}
	admin := m[1]
	if !strings.Contains(init1.stdout, "generated a CA key passphrase") {
		t.Errorf("init did not say it generated a passphrase:\n%s", init1.stdout)
	}
	if st, err := os.Stat(filepath.Join(data, "ca-passphrase")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("passphrase file: %v %v", st, err)
	}
	if strings.Contains(init1.stderr, admin) {
		t.Fatal("admin token leaked into the log output")
	}
	init2 := run(t, env, bin, "init", "--data-dir", data)
	if init2.code == 0 || !strings.Contains(init2.stderr, "already initialised") {
		t.Fatalf("second init: code %d\n%s", init2.code, init2.stderr)
	}
	if r := run(t, env, bin, "init", "--data-dir", data, "--if-missing"); r.code != 0 {
		t.Fatalf("init --if-missing on an initialised dir: %d %s", r.code, r.stderr)
	}

	apiAddr, hooksAddr, diagAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	srv := exec.Command(bin, "serve", "--data-dir", data, "--hooks-addr", hooksAddr, "--diag-addr", diagAddr)
	// The API address comes from the environment to prove env config works.
	srv.Env = append(os.Environ(), "GATEHOUSE_API_ADDR="+apiAddr)
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
			t.Error("serve did not stop on SIGINT within 10s")
		}
	})
	waitReady(t, "http://"+diagAddr+"/readyz")
	server := "http://" + apiAddr

	csvPath := filepath.Join(t.TempDir(), "tokens.csv")
	tc := run(t, []string{"GATEHOUSE_ADMIN_TOKEN=" + admin}, bin, "token", "create", "--server", server,
		"--count", "3", "--ttl", "1h", "--csv", csvPath)
	if tc.code != 0 {
		t.Fatalf("token create: %d\n%s", tc.code, tc.stderr)
	}
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(csvPath); st.Mode().Perm() != 0o600 {
		t.Errorf("tokens CSV mode %v, want 0600", st.Mode().Perm())
	}
	rows := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(rows) != 4 || rows[0] != "token,device_id,batch_id,fleet,profile,expires_at" {
		t.Fatalf("tokens CSV:\n%s", b)
	}
	token := strings.Split(rows[1], ",")[0]

	out := filepath.Join(t.TempDir(), "device")
	en := run(t, nil, bin, "enroll", "--server", server, "--token", token, "--out", out, "--device-id", "sensor-001", "--json")
	if en.code != 0 {
		t.Fatalf("enroll: %d\n%s%s", en.code, en.stdout, en.stderr)
	}
	var res struct {
		OK       bool   `json:"ok"`
		DeviceID string `json:"device_id"`
		Identity string `json:"identity"`
	}
	if err := json.Unmarshal([]byte(en.stdout), &res); err != nil || !res.OK || res.DeviceID != "sensor-001" ||
		res.Identity != "urn:gatehouse:default:sensor-001" {
		t.Fatalf("enroll --json: %v %s", err, en.stdout)
	}
	if st, err := os.Stat(filepath.Join(out, "device.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device.key: %v %v", st, err)
	}
	verify, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(data, "ca", "root_ca.crt"),
		"-untrusted", filepath.Join(out, "ca-chain.crt"), filepath.Join(out, "device.crt")).CombinedOutput()
	if err != nil || !strings.Contains(string(verify), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, verify)
	}
	// The key on disk matches the certificate.
	keyPub, err1 := exec.Command("openssl", "pkey", "-in", filepath.Join(out, "device.key"), "-pubout").Output()
	certPub, err2 := exec.Command("openssl", "x509", "-in", filepath.Join(out, "device.crt"), "-noout", "-pubkey").Output()
	if err1 != nil || err2 != nil || string(keyPub) != string(certPub) {
		t.Fatalf("device.key does not match device.crt: %v %v", err1, err2)
	}

	// Replaying the token fails with a stable code and exit 1, and does not
	// touch the enrolled directory.
	again := run(t, nil, bin, "enroll", "--server", server, "--token", token, "--out", t.TempDir(), "--json")
	if again.code != 1 || !strings.Contains(again.stdout, `"code": "token_used"`) {
		t.Fatalf("replayed token: code %d\n%s", again.code, again.stdout)
	}
	over := run(t, nil, bin, "enroll", "--server", server, "--token", strings.Split(rows[2], ",")[0], "--out", out)
	if over.code != 1 || !strings.Contains(over.stderr, "already_exists") {
		t.Fatalf("enroll over an enrolled dir: code %d\n%s", over.code, over.stderr)
	}
	bad := run(t, nil, bin, "enroll", "--server", server, "--token", "ghb_nope", "--out", t.TempDir())
	if bad.code != 1 || !strings.Contains(bad.stderr, "token_invalid") {
		t.Fatalf("unknown token: code %d\n%s", bad.code, bad.stderr)
	}
	down := run(t, nil, bin, "enroll", "--server", "http://"+freeAddr(t), "--token", "x", "--out", t.TempDir())
	if down.code != 1 || !strings.Contains(down.stderr, "unavailable") {
		t.Fatalf("server down: code %d\n%s", down.code, down.stderr)
	}

	// The UI is served by the same binary.
	resp, err := http.Get(server + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	_ = srv.Process.Signal(os.Interrupt)
	<-logDone
	for _, secret := range []string{admin, token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a secret appeared in the server log")
		}
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready", url)
}
