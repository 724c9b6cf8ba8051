//go:build linux

package main

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// TestRotateIntermediate: devices enrolled before and after `gatehouse ca
// rotate` verify with the published chain, and an old device renews onto
// the new intermediate; the old intermediate keeps
// signing its own CRL (at /crl, where its leaves point) and OCSP answers,
// so revoking an old device shows there; Mosquitto with both lists in its
// crlfile refuses the revoked device and accepts the others.
func TestRotateIntermediate(t *testing.T) {
	pub, _ := testbroker.RequireMosquittoClients(t)
	testbroker.RequireMosquitto(t)
	g := newGatehouse(t)
	crlFile := filepath.Join(g.dir, "broker", "crl.pem")
	if err := os.MkdirAll(filepath.Dir(crlFile), 0o755); err != nil {
		t.Fatal(err)
	}
	env := "GATEHOUSE_CRL_FILE=" + crlFile
	g.serve(t, env)
	toks := g.tokens(t, "default", 3)
	old1, old2 := g.enroll(t, toks[0], "old-1"), g.enroll(t, toks[1], "old-2")
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "short", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	old3 := g.enroll(t, g.tokens(t, "short", 1)[0], "old-3")
	g.stop()
	if r := g.run(t, nil, "ca", "rotate", "--data-dir", g.data); r.code != 0 || !strings.Contains(r.stdout, "G2") {
		t.Fatalf("ca rotate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.logs = &logBuffer{}
	g.serve(t, env)
	new1 := g.enroll(t, toks[2], "new-1")
	oldInter, newInter := issuerOf(t, g, old1), issuerOf(t, g, new1)
	if oldInter.Equal(newInter) || !strings.HasSuffix(newInter.Subject.CommonName, " G2") {
		t.Fatalf("new device issued by %q, old by %q", newInter.Subject.CommonName, oldInter.Subject.CommonName)
	}
	if cdp := readCert(t, new1.cert).CRLDistributionPoints; len(cdp) != 1 || cdp[0] != g.server+"/crl/2" {
		t.Fatalf("new leaf's CRL URL %v, want %s/crl/2", cdp, g.server)
	}
	// A device of the old intermediate renews onto the new one.
	if rn := g.run(t, nil, "renew", "--server", g.server, "--dir", old3.dir, "--json"); rn.code != 0 {
		t.Fatalf("renew old-3: %d %s %s", rn.code, rn.stdout, rn.stderr)
	}
	if err := readCert(t, old3.cert).CheckSignatureFrom(newInter); err != nil {
		t.Fatalf("old-3 renewed, but not by the new intermediate: %v", err)
	}
	root := filepath.Join(g.data, "ca", "root_ca.crt")
	chain := filepath.Join(g.dir, "published-chain.pem")
	if err := os.WriteFile(chain, g.api(t, "GET", "/api/v1/ca/chain", nil, http.StatusOK, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []testDevice{old1, old2, old3, new1} {
		out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", root, "-untrusted", chain, d.cert).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Fatalf("%s with the published chain: %v\n%s", d.id, err, out)
		}
	}

	g.api(t, "POST", "/api/v1/devices/old-1/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	serial := readCert(t, old1.cert).SerialNumber
	for path, inter := range map[string]*x509.Certificate{"/crl": oldInter, "/crl/1": oldInter, "/crl/2": newInter} {
		der := g.api(t, "GET", path, nil, http.StatusOK, nil)
		crlVerify(t, g, der, inter, root)
		rl, err := x509.ParseRevocationList(der)
		if err != nil || len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(serial) != 0 {
			t.Fatalf("%s does not list old-1: %v", path, err)
		}
	}
	ocspCheck(t, g, old1, oldInter, root, ": revoked")
	ocspCheck(t, g, old2, oldInter, root, ": good")
	ocspCheck(t, g, new1, newInter, root, ": good")

	// The file holds both lists; Mosquitto reads it at start.
	if n := strings.Count(string(mustRead(t, crlFile)), "BEGIN X509 CRL"); n != 2 {
		t.Fatalf("CRL file holds %d lists, want 2", n)
	}
	brokerCA, brokerCert, brokerKey := rmqServerPKI(t, g.dir)
	broker := testbroker.Mosquitto(t, testbroker.MosquittoConfig{CAFile: chain, CertFile: brokerCert, KeyFile: brokerKey,
		RequireCertificate: true, UseIdentityAsUsername: true, CRLFile: crlFile})
	clients := mqttCLI{version: mqttV311, pub: pub, port: broker.Port, cafile: brokerCA}
	for _, c := range []struct {
		d  testDevice
		ok bool
	}{{old1, false}, {old2, true}, {new1, true}} {
		out, err := clients.publish(c.d, c.d.id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), "e2e/"+c.d.id, "hi")
		if (err == nil) != c.ok {
			t.Fatalf("%s at the broker: err %v, want ok %v\n%s\n%s", c.d.id, err, c.ok, out, broker.LogTail(20))
		}
	}
}

// issuerOf returns the intermediate a device's chain file names first.
func issuerOf(t *testing.T, g *gatehouse, d testDevice) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(readPEM(t, filepath.Join(d.dir, "ca-chain.crt")))
	if err != nil {
		t.Fatal(err)
	}
	if err := readCert(t, d.cert).CheckSignatureFrom(c); err != nil {
		t.Fatalf("%s's chain file does not start with its issuer: %v", d.id, err)
	}
	return c
}

// crlVerify has openssl check a DER list's signature against inter.
func crlVerify(t *testing.T, g *gatehouse, der []byte, inter *x509.Certificate, root string) {
	t.Helper()
	dir := t.TempDir()
	list, ca := filepath.Join(dir, "list.crl"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(list, der, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}), mustRead(t, root)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", list, "-CAfile", ca, "-noout", "-verify").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -verify (%s): %v\n%s", inter.Subject.CommonName, err, out)
	}
}

func ocspCheck(t *testing.T, g *gatehouse, d testDevice, inter *x509.Certificate, root, want string) {
	t.Helper()
	issuer := filepath.Join(t.TempDir(), "issuer.pem")
	if err := os.WriteFile(issuer, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "ocsp", "-issuer", issuer, "-CAfile", root, "-cert", d.cert, "-url", g.server+"/ocsp").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), d.cert+want) {
		t.Fatalf("openssl ocsp %s: %v\n%s", d.id, err, out)
	}
}
