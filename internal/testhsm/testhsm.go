// Package testhsm gives tests a SoftHSM2 token of their own (Debian:
// apt-get install softhsm2 opensc): a configuration and token directory in
// the test's temp dir, selected through SOFTHSM2_CONF.
package testhsm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Module is Debian's SoftHSM2 PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every test token.
const PIN = "204719"

// Label is the test token's label.
const Label = "gatehouse"

// Token makes a fresh token and returns the PKCS#11 URI (without PIN) of
// the issuing key Gatehouse is to create in it. It sets SOFTHSM2_CONF for
// the test and fails it when SoftHSM2 is missing.
func Token(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Module); err != nil {
		t.Fatalf("SoftHSM2 is required for the pkcs11 build (apt-get install softhsm2 opensc): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", Label, "--pin", PIN, "--so-pin", "93725104").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	return "pkcs11:module-path=" + Module + ";token=" + Label + ";id=%01;object=gatehouse-issuing"
}
