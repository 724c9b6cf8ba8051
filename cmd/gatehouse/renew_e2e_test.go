package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverCert writes a self-signed TLS server certificate for 127.0.0.1.
func serverCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

// TestRenewOverMutualTLS runs the API over HTTPS, enrolls a device, and
// renews it with a new key, authenticated by the old certificate in the
// TLS handshake.
func TestRenewOverMutualTLS(t *testing.T) {
	g := newGatehouse(t, "GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123")
	tmp := g.dir
	crt, key := serverCert(t, tmp)
	g.serveTLS(t, crt, key)
	server := g.server

	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "short", "key_types": []string{"P-256", "P-384"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	// Enrolls over https, trusting crt.
	dir := g.enroll(t, g.tokens(t, "short", 1)[0], "cam-9").dir
	oldCert, _ := os.ReadFile(filepath.Join(dir, "device.crt"))
	oldKey, _ := os.ReadFile(filepath.Join(dir, "device.key"))

	// Without the CA file the server certificate is not trusted.
	if r := g.run(t, nil, "renew", "--server", server, "--dir", dir); r.code == 0 {
		t.Fatal("renew trusted an unknown server certificate")
	}
	rn := g.run(t, nil, "renew", "--server", server, "--ca-file", crt, "--dir", dir, "--rotate-key", "--key-type", "P-384", "--json")
	if rn.code != 0 {
		t.Fatalf("renew: %d %s %s", rn.code, rn.stdout, rn.stderr)
	}
	newCert, _ := os.ReadFile(filepath.Join(dir, "device.crt"))
	newKey, _ := os.ReadFile(filepath.Join(dir, "device.key"))
	if bytes.Equal(oldCert, newCert) || bytes.Equal(oldKey, newKey) {
		t.Fatal("renew --rotate-key did not replace certificate and key")
	}
	text, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, "device.crt"), "-noout", "-text").Output()
	if err != nil || !strings.Contains(string(text), "CN = cam-9") || !strings.Contains(string(text), "NIST CURVE: P-384") {
		t.Fatalf("renewed certificate: %v\n%s", err, text)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"), "-untrusted",
		filepath.Join(dir, "ca-chain.crt"), filepath.Join(dir, "device.crt")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify renewed: %v %s", err, out)
	}
	// The superseded certificate cannot renew again.
	old := filepath.Join(tmp, "old")
	_ = os.MkdirAll(old, 0o700)
	_ = os.WriteFile(filepath.Join(old, "device.crt"), oldCert, 0o644)
	_ = os.WriteFile(filepath.Join(old, "device.key"), oldKey, 0o600)
	again := g.run(t, nil, "renew", "--server", server, "--ca-file", crt, "--dir", old, "--json")
	if again.code != 1 || !strings.Contains(again.stdout, "certificate_invalid") {
		t.Fatalf("renew with superseded certificate: %d %s", again.code, again.stdout)
	}
}

// TestRenewOverHTTP: without TLS, `gatehouse renew` fetches a single-use
// challenge and signs it into the CSR with the current key; the key stays,
// each renewal needs a new challenge, and the enrollment CSR replayed by
// hand is refused (issue 9).
func TestRenewOverHTTP(t *testing.T) {
	g := newGatehouse(t, "GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123")
	g.serve(t)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "short", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	dev := g.enroll(t, g.tokens(t, "short", 1)[0], "cam-10")
	oldKey, _ := os.ReadFile(dev.key)
	if r := g.run(t, nil, "renew", "--server", g.server, "--dir", dev.dir, "--rotate-key"); r.code == 0 {
		t.Fatal("--rotate-key over http succeeded")
	}
	for i := range 2 {
		before, _ := os.ReadFile(dev.cert)
		rn := g.run(t, nil, "renew", "--server", g.server, "--dir", dev.dir, "--json")
		if rn.code != 0 {
			t.Fatalf("renew %d over http: %d %s %s", i, rn.code, rn.stdout, rn.stderr)
		}
		after, _ := os.ReadFile(dev.cert)
		key, _ := os.ReadFile(dev.key)
		if bytes.Equal(before, after) || !bytes.Equal(key, oldKey) {
			t.Fatalf("renew %d over http: certificate replaced %v, key kept %v", i, !bytes.Equal(before, after), bytes.Equal(key, oldKey))
		}
	}
	// A CSR without the challenge (what renew sent before) is refused.
	certPEM, _ := os.ReadFile(dev.cert)
	keyPEM, _ := os.ReadFile(dev.key)
	block, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	status, body := g.call(t, "POST", "/api/v1/renew", map[string]string{"certificate": string(certPEM),
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	if status != http.StatusUnauthorized || !strings.Contains(string(body), "challenge_required") {
		t.Fatalf("renewal without a challenge: %d %s", status, body)
	}
}
