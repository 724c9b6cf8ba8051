package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeOCSP: the real binary answers OCSP at the URL it writes into
// each leaf's AIA, signed by a delegated responder that openssl accepts;
// after a revocation through the API the next answer is revoked.
func TestServeOCSP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"GATEHOUSE_CA_PASSPHRASE=", "GATEHOUSE_ADMIN_TOKEN="}
	in := run(t, env, bin, "init", "--data-dir", data)
	m := adminTokenLine.FindStringSubmatch(in.stdout)
	if in.code != 0 || m == nil {
		t.Fatalf("init: %d\n%s%s", in.code, in.stdout, in.stderr)
	}
	admin := m[1]

	apiAddr := freeAddr(t)
	srv := exec.Command(bin, "serve", "--data-dir", data, "--hooks-addr", freeAddr(t), "--diag-addr", freeAddr(t))
	srv.Env = append(os.Environ(), "GATEHOUSE_API_ADDR="+apiAddr)
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
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

	csv := filepath.Join(t.TempDir(), "tokens.csv")
	if r := run(t, []string{"GATEHOUSE_ADMIN_TOKEN=" + admin}, bin, "token", "create", "--server", server,
		"--count", "1", "--ttl", "1h", "--csv", csv); r.code != 0 {
		t.Fatalf("token create: %s", r.stderr)
	}
	b, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.Split(strings.Split(strings.TrimSpace(string(b)), "\n")[1], ",")[0]
	out := filepath.Join(t.TempDir(), "device")
	if r := run(t, nil, bin, "enroll", "--server", server, "--token", token, "--out", out, "--device-id", "meter-9"); r.code != 0 {
		t.Fatalf("enroll: %s", r.stderr)
	}
	leaf := filepath.Join(out, "device.crt")
	uri, err := exec.Command("openssl", "x509", "-in", leaf, "-noout", "-ocsp_uri").Output()
	if err != nil || strings.TrimSpace(string(uri)) != server+"/ocsp" {
		t.Fatalf("leaf OCSP URI %q (%v), want %s/ocsp", uri, err, server)
	}
	// The chain file holds the issuer first.
	issuer := filepath.Join(t.TempDir(), "issuer.pem")
	if o, err := exec.Command("openssl", "x509", "-in", filepath.Join(out, "ca-chain.crt"), "-out", issuer).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	check := func(want ...string) {
		t.Helper()
		o, err := exec.Command("openssl", "ocsp", "-issuer", issuer, "-CAfile", filepath.Join(data, "ca", "root_ca.crt"),
			"-cert", leaf, "-url", strings.TrimSpace(string(uri))).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "Response verify OK") || strings.Contains(string(o), "WARNING") {
			t.Fatalf("openssl ocsp: %v\n%s", err, o)
		}
		for _, w := range want {
			if !strings.Contains(string(o), w) {
				t.Fatalf("openssl ocsp lacks %q:\n%s", w, o)
			}
		}
	}
	check(leaf + ": good")

	req, _ := http.NewRequest("POST", server+"/api/v1/devices/meter-9/revoke", strings.NewReader(`{"reason":"cessationOfOperation"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: HTTP %d", resp.StatusCode)
	}
	check(leaf+": revoked", "Reason: cessationOfOperation")
}
