package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFactoryLine drives the real binary the way the README does: init,
// serve, create a token batch as CSV, enroll with the CLI, verify with openssl.
func TestFactoryLine(t *testing.T) {
	g := newGatehouse(t)
	admin := g.adminToken
	if !strings.Contains(g.initOut.stdout, "generated a CA key passphrase") {
		t.Errorf("init did not say it generated a passphrase:\n%s", g.initOut.stdout)
	}
	if st, err := os.Stat(filepath.Join(g.data, "ca-passphrase")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("passphrase file: %v %v", st, err)
	}
	init2 := g.run(t, nil, "init", "--data-dir", g.data)
	if init2.code == 0 || !strings.Contains(init2.stderr, "already initialised") {
		t.Fatalf("second init: code %d\n%s", init2.code, init2.stderr)
	}
	if r := g.run(t, nil, "init", "--data-dir", g.data, "--if-missing"); r.code != 0 {
		t.Fatalf("init --if-missing on an initialised dir: %d %s", r.code, r.stderr)
	}

	g.serve(t)
	server := g.server
	rows := g.tokenCSV(t, 3)
	token := rows[0][0]

	out := filepath.Join(t.TempDir(), "device")
	en := g.run(t, nil, "enroll", "--server", server, "--token", token, "--out", out, "--device-id", "sensor-001", "--json")
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
	verify, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"),
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
	again := g.run(t, nil, "enroll", "--server", server, "--token", token, "--out", t.TempDir(), "--json")
	if again.code != 1 || !strings.Contains(again.stdout, `"code": "token_used"`) {
		t.Fatalf("replayed token: code %d\n%s", again.code, again.stdout)
	}
	over := g.run(t, nil, "enroll", "--server", server, "--token", rows[1][0], "--out", out)
	if over.code != 1 || !strings.Contains(over.stderr, "already_exists") {
		t.Fatalf("enroll over an enrolled dir: code %d\n%s", over.code, over.stderr)
	}
	bad := g.run(t, nil, "enroll", "--server", server, "--token", "ghb_nope", "--out", t.TempDir())
	if bad.code != 1 || !strings.Contains(bad.stderr, "token_invalid") {
		t.Fatalf("unknown token: code %d\n%s", bad.code, bad.stderr)
	}
	down := g.run(t, nil, "enroll", "--server", "http://"+freeAddr(t), "--token", "x", "--out", t.TempDir())
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

	g.stop()
	for _, secret := range []string{admin, token} {
		if strings.Contains(g.logs.String(), secret) {
			t.Fatal("a secret appeared in the server log")
		}
	}
}
