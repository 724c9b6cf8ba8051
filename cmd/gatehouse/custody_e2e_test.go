package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/ca"
)

// TestOfflineRoot: init --root-offline leaves no root key in the data
// directory, serve runs without it and refuses to run beside it; the root
// then signs a second Gatehouse's intermediate offline (init
// --intermediate-from-csr, ca sign-intermediate, ca install-intermediate),
// and devices of both verify with openssl against the one root.
func TestOfflineRoot(t *testing.T) {
	keyOut := filepath.Join(t.TempDir(), "offline-root.key")
	rootPassFile := filepath.Join(t.TempDir(), "root-passphrase")
	if err := os.WriteFile(rootPassFile, []byte("the offline root's own passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGatehouseInit(t, []string{"--root-offline", "--root-key-out", keyOut, "--root-passphrase-file", rootPassFile})
	// Without a passphrase of its own the offline root is refused.
	if r := g.run(t, nil, "init", "--data-dir", filepath.Join(t.TempDir(), "data"), "--root-offline", "--root-key-out",
		filepath.Join(t.TempDir(), "k")); r.code == 0 || !strings.Contains(r.stderr, "--root-passphrase-file") {
		t.Fatalf("init --root-offline without --root-passphrase-file: %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(g.initOut.stdout, "root-key: "+keyOut) {
		t.Fatalf("init did not print where the root key went:\n%s", g.initOut.stdout)
	}
	if st, err := os.Stat(keyOut); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("offline root key: %v %v", st, err)
	}
	rootCert := filepath.Join(g.data, "ca", "root_ca.crt")
	if _, err := os.Stat(filepath.Join(g.data, "ca", "root_ca.key")); !os.IsNotExist(err) {
		t.Fatalf("root key in the data dir after init --root-offline: %v", err)
	}
	// A root key inside the data directory, under any name, stops serve.
	// (In clear: serve cannot open a copy under the root's own passphrase.)
	stray := filepath.Join(g.data, "keys-backup.pem")
	plain, err := exec.Command("openssl", "pkey", "-in", keyOut, "-passin", "file:"+rootPassFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stray, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	r := g.run(t, nil, "serve", "--data-dir", g.data, "--hooks-addr", g.hooksAddr, "--diag-addr", g.diagAddr, "--api-addr", g.apiAddr)
	if r.code == 0 || !strings.Contains(r.stderr, "permission_denied") || !strings.Contains(r.stderr, stray) {
		t.Fatalf("serve beside the root key: code %d\n%s", r.code, r.stderr)
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}
	// A root certificate replaced under the marker's pin stops serve (the
	// key scan would look for the other root's key).
	otherCA := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: otherCA, Passphrase: []byte("another CA's passphrase")}); err != nil {
		t.Fatal(err)
	}
	orig := mustRead(t, rootCert)
	if err := os.WriteFile(rootCert, mustRead(t, filepath.Join(otherCA, "root_ca.crt")), 0o644); err != nil {
		t.Fatal(err)
	}
	r = g.run(t, nil, "serve", "--data-dir", g.data, "--hooks-addr", g.hooksAddr, "--diag-addr", g.diagAddr, "--api-addr", g.apiAddr)
	if r.code == 0 || !strings.Contains(r.stderr, "root_mismatch") {
		t.Fatalf("serve with a replaced root certificate: code %d\n%s", r.code, r.stderr)
	}
	if err := os.WriteFile(rootCert, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	g.serve(t)
	verifyDevice(t, g.enroll(t, g.tokens(t, "default", 1)[0], "offline-1"), rootCert)

	h := newGatehouseInit(t, []string{"--intermediate-from-csr"})
	csr := filepath.Join(h.data, "ca", "intermediate_ca.csr")
	if !strings.Contains(h.initOut.stdout, csr) {
		t.Fatalf("init --intermediate-from-csr did not name the CSR:\n%s", h.initOut.stdout)
	}
	if r := h.run(t, nil, "serve", "--data-dir", h.data); r.code == 0 || !strings.Contains(r.stderr, "install-intermediate") {
		t.Fatalf("serve before the intermediate certificate: code %d\n%s", r.code, r.stderr)
	}
	// The offline machine: only the root's files and the CSR.
	signed := filepath.Join(t.TempDir(), "intermediate.crt")
	sign := []string{"ca", "sign-intermediate", "--root-cert", rootCert, "--root-key", keyOut, "--csr", csr, "--out", signed,
		"--root-passphrase-file", rootPassFile}
	if r := h.run(t, nil, sign...); r.code != 0 {
		t.Fatalf("sign-intermediate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := h.run(t, nil, sign...); r.code == 0 || !strings.Contains(r.stderr, "already_exists") {
		t.Fatalf("sign-intermediate over an existing file: code %d\n%s", r.code, r.stderr)
	}
	if r := h.run(t, nil, "ca", "install-intermediate", "--data-dir", h.data, "--cert", signed, "--root-cert", rootCert); r.code != 0 {
		t.Fatalf("install-intermediate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	h.serve(t)
	verifyDevice(t, h.enroll(t, h.tokens(t, "default", 1)[0], "csr-1"), rootCert)
}

func verifyDevice(t *testing.T, d testDevice, rootCert string) {
	t.Helper()
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", rootCert,
		"-untrusted", filepath.Join(d.dir, "ca-chain.crt"), d.cert).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify %s: %v\n%s", d.id, err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
