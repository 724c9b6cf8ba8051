//go:build pkcs11 && cgo

package ca_test

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testhsm"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/store"
)

func kmsCA(t testing.TB, uri string) (*ca.CA, string, *store.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, KMS: uri, KMSPin: testhsm.PIN}); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.SQLite(t)
	st := openStore(t, dsn)
	c, err := ca.New(ca.Config{Dir: dir, Store: st, CRLStore: st, KMS: uri, KMSPin: testhsm.PIN,
		CRLURL: "http://127.0.0.1:1/crl", OCSPURL: "http://127.0.0.1:1/ocsp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, dir, st, dsn
}

// TestSoftHSMIssuingKey: the intermediate key is made inside the token,
// non-extractable, with no key file on disk; leaves, the CRL and the OCSP
// responder's certificate (hence every OCSP answer's chain) are signed
// through it, and openssl accepts all three.
func TestSoftHSMIssuingKey(t *testing.T) {
	uri := testhsm.Token(t)
	c, dir, st, dsn := kmsCA(t, uri)
	if _, err := os.Stat(filepath.Join(dir, ca.IntermediateKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("an intermediate key file exists: %v", err)
	}
	objs, err := exec.Command("pkcs11-tool", "--module", testhsm.Module, "--token-label", "gatehouse", "--login", "--pin", testhsm.PIN,
		"--list-objects", "--type", "privkey").CombinedOutput()
	access := strings.ReplaceAll(string(objs), "never extractable", "")
	if err != nil || !strings.Contains(string(objs), "gatehouse-issuing") || !strings.Contains(string(objs), "never extractable") ||
		!strings.Contains(string(objs), "always sensitive") || strings.Contains(access, "extractable") {
		t.Fatalf("pkcs11-tool: %v\n%s", err, objs)
	}
	tmp := t.TempDir()
	root := filepath.Join(dir, ca.RootCertFile)
	issueAndVerify(t, c, root, "hsm-1")
	iss, err := c.Issue(context.Background(), ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))),
		Fleet: "f", DeviceID: "hsm-2", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := writePEM(t, filepath.Join(tmp, "leaf.crt"), "CERTIFICATE", iss.Leaf.Raw)
	// With its PEM: OCSP answers good only for a certificate it can see
	// the named issuer issued.
	testdb.SeedCertificates(t, dsn, []testdb.Cert{{Serial: ca.SerialHex(iss.Leaf.SerialNumber), NotAfter: iss.Leaf.NotAfter,
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.Leaf.Raw}))}})
	inter := filepath.Join(dir, ca.IntermediateCertFile)

	list, err := c.GenerateCRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crlFile := writePEM(t, filepath.Join(tmp, "list.crl"), "X509 CRL", list.DER)
	if out := openssl(t, "crl", "-in", crlFile, "-CAfile", inter, "-noout", "-verify"); !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl -verify: %s", out)
	}

	signer, err := c.NewOCSPSigner(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.New(ocsp.Config{Certs: st, Signer: signer, Issuer: c.Intermediate()})
	if err != nil {
		t.Fatal(err)
	}
	reqFile, respFile := filepath.Join(tmp, "req.der"), filepath.Join(tmp, "resp.der")
	openssl(t, "ocsp", "-issuer", inter, "-cert", leaf, "-no_nonce", "-reqout", reqFile)
	req, err := os.ReadFile(reqFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(respFile, resp.Respond(context.Background(), req).DER, 0o644); err != nil {
		t.Fatal(err)
	}
	out := openssl(t, "ocsp", "-respin", respFile, "-issuer", inter, "-CAfile", root, "-cert", leaf)
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leaf+": good") {
		t.Fatalf("openssl ocsp: %s", out)
	}
}

// TestSoftHSMWrongPIN: a wrong PIN opens nothing, and the error does not
// show it. (Within one process a token stays logged in while a session is
// open, so this runs before any right PIN.)
func TestSoftHSMWrongPIN(t *testing.T) {
	uri := testhsm.Token(t)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, KMS: uri, KMSPin: testhsm.PIN}); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, testdb.SQLite(t))
	if _, err := ca.New(ca.Config{Dir: dir, Store: st, KMS: uri, KMSPin: "000000"}); err == nil || strings.Contains(err.Error(), "000000") {
		t.Fatalf("New with a wrong PIN: %v", err)
	}
	if _, err := ca.New(ca.Config{Dir: dir, Store: st, KMS: strings.Replace(uri, "object=gatehouse-issuing", "object=other", 1), KMSPin: testhsm.PIN}); err == nil {
		t.Fatal("New with a key the token does not hold succeeded")
	}
}

// BenchmarkIssueSigner compares issuance (the signing part of an
// enrollment) through the SoftHSM2 token with the file key, in one run.
// SoftHSM2 is software: the ratio says what the PKCS#11 path costs, not
// what a hardware HSM would do.
func BenchmarkIssueSigner(b *testing.B) {
	uri := testhsm.Token(b)
	hsm, _, _, _ := kmsCA(b, uri)
	file, _ := newCA(b, nil)
	csr := testpki.ParseCSR(b, testpki.CSR(b, testpki.Key(b, "P-256")))
	for name, c := range map[string]*ca.CA{"file": file, "pkcs11": hsm} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Issue(context.Background(), ca.LeafRequest{CSR: csr, Fleet: "f", DeviceID: "bench", Validity: time.Hour}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
