package main

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeOCSP: the real binary answers OCSP at the URL it writes into
// each leaf's AIA, signed by a delegated responder that openssl accepts;
// after a revocation through the API the next answer is revoked.
func TestServeOCSP(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t)
	d := g.enroll(t, g.tokenCSV(t, 1)[0][0], "meter-9")
	leaf := d.cert
	uri, err := exec.Command("openssl", "x509", "-in", leaf, "-noout", "-ocsp_uri").Output()
	if err != nil || strings.TrimSpace(string(uri)) != g.server+"/ocsp" {
		t.Fatalf("leaf OCSP URI %q (%v), want %s/ocsp", uri, err, g.server)
	}
	// The chain file holds the issuer first.
	issuer := filepath.Join(t.TempDir(), "issuer.pem")
	if o, err := exec.Command("openssl", "x509", "-in", filepath.Join(d.dir, "ca-chain.crt"), "-out", issuer).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	check := func(want ...string) {
		t.Helper()
		o, err := exec.Command("openssl", "ocsp", "-issuer", issuer, "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"),
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

	g.api(t, "POST", "/api/v1/devices/meter-9/revoke", map[string]any{"reason": "cessationOfOperation"}, http.StatusOK, nil)
	check(leaf+": revoked", "Reason: cessationOfOperation")
}
