//go:build pkcs11 && cgo

package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testhsm"
)

// binaryTags are the build tags of the binary under test.
const binaryTags = "pkcs11"

// TestSoftHSMEndToEnd: init --kms makes the issuing key inside a SoftHSM2
// token (no key file on disk, the token shows it non-extractable); serve
// signs through it: enroll, renew, revoke, then the CRL verifies with
// openssl against the intermediate and OCSP answers verify.
func TestSoftHSMEndToEnd(t *testing.T) {
	uri := testhsm.Token(t)
	pin := []string{"GATEHOUSE_CA_KMS_PIN=" + testhsm.PIN, "GATEHOUSE_CA_KMS=" + uri, "SOFTHSM2_CONF=" + os.Getenv("SOFTHSM2_CONF")}
	g := newGatehouseInit(t, []string{"--kms", uri}, pin...)
	if _, err := os.Stat(filepath.Join(g.data, "ca", "intermediate_ca.key")); !os.IsNotExist(err) {
		t.Fatalf("an intermediate key file exists: %v", err)
	}
	objs, err := exec.Command("pkcs11-tool", "--module", testhsm.Module, "--token-label", testhsm.Label, "--login", "--pin", testhsm.PIN,
		"--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil || !strings.Contains(string(objs), "never extractable") {
		t.Fatalf("pkcs11-tool: %v\n%s", err, objs)
	}
	g.serve(t)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "short", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	toks := g.tokens(t, "short", 2)
	d, other := g.enroll(t, toks[0], "hsm-1"), g.enroll(t, toks[1], "hsm-2")
	root, inter := filepath.Join(g.data, "ca", "root_ca.crt"), filepath.Join(g.data, "ca", "intermediate_ca.crt")
	if rn := g.run(t, nil, "renew", "--server", g.server, "--dir", d.dir, "--json"); rn.code != 0 {
		t.Fatalf("renew: %d %s %s", rn.code, rn.stdout, rn.stderr)
	}
	verifyDevice(t, d, root)
	g.api(t, "POST", "/api/v1/devices/hsm-1/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	ca := readCert(t, inter)
	crlVerify(t, g, g.api(t, "GET", "/crl", nil, http.StatusOK, nil), ca, root)
	ocspCheck(t, g, d, ca, root, ": revoked")
	ocspCheck(t, g, other, ca, root, ": good")
}
