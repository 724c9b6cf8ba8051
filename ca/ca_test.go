package ca_test

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

var pass = []byte("correct horse battery staple")

func newCA(t testing.TB, mutate func(*ca.Config)) (*ca.CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(context.Background(), store.Config{DSN: testdb.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := ca.Config{Dir: dir, Passphrase: pass, Store: st,
		CRLURL: "http://127.0.0.1:8080/crl", OCSPURL: "http://127.0.0.1:8080/ocsp"}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestIssuedLeafPassesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (apt-get install openssl)")
	}
	c, dir := newCA(t, nil)
	key := testpki.Key(t, "P-256")
	iss, err := c.Issue(context.Background(), ca.LeafRequest{
		CSR: testpki.ParseCSR(t, testpki.CSR(t, key)), Fleet: "plant-7", DeviceID: "thermo-42",
		Validity: 24 * time.Hour, Roles: []string{"telemetry", "command"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leaf := filepath.Join(tmp, "leaf.crt")
	if err := os.WriteFile(leaf, ca.EncodePEM(iss.Leaf), 0o644); err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(tmp, "chain.crt")
	if err := os.WriteFile(chain, ca.EncodePEM(iss.Chain...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := openssl(t, "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, ca.RootCertFile),
		"-untrusted", filepath.Join(dir, ca.IntermediateCertFile), leaf)
	if !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify: %s", out)
	}
	// The purpose check must fail for server use: the leaf is clientAuth only.
	if out, err := exec.Command("openssl", "verify", "-purpose", "sslserver", "-CAfile",
		filepath.Join(dir, ca.RootCertFile), "-untrusted", filepath.Join(dir, ca.IntermediateCertFile),
		leaf).CombinedOutput(); err == nil {
		t.Fatalf("leaf verified for sslserver, want refusal:\n%s", out)
	}
	text := openssl(t, "x509", "-in", leaf, "-noout", "-text")
	for _, want := range []string{
		"Subject: CN = thermo-42",
		"URI:urn:gatehouse:plant-7:thermo-42",
		"TLS Web Client Authentication, 1.3.6.1.4.1.32473.1.1, 1.3.6.1.4.1.32473.1.2",
		"Digital Signature",
		"CA:FALSE",
		"URI:http://127.0.0.1:8080/crl",
		"OCSP - URI:http://127.0.0.1:8080/ocsp",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("certificate text lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"Server Authentication", "evil", "DNS:", "email:", "urn:gatehouse:other"} {
		if strings.Contains(text, bad) {
			t.Errorf("certificate text contains %q copied from the CSR or forbidden:\n%s", bad, text)
		}
	}
	// The chain file verifies on its own too (intermediate + root).
	openssl(t, "verify", "-CAfile", chain, leaf)
	if id, err := ca.IdentityOf(iss.Leaf); err != nil || id.Fleet != "plant-7" || id.DeviceID != "thermo-42" {
		t.Fatalf("IdentityOf = %+v, %v", id, err)
	}
}

func TestKeyTypesAndValidity(t *testing.T) {
	c, _ := newCA(t, nil)
	for _, kind := range []string{"P-256", "P-384", "Ed25519", "RSA-2048"} {
		t.Run(kind, func(t *testing.T) {
			key := testpki.Key(t, kind)
			iss, err := c.Issue(context.Background(), ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, key)),
				Fleet: "f", DeviceID: "d-" + strings.ToLower(kind), Validity: 90 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if got := ca.KeyType(iss.Leaf.PublicKey); got != kind {
				t.Fatalf("key type %q, want %q", got, kind)
			}
			if life := iss.Leaf.NotAfter.Sub(iss.Leaf.NotBefore); life != 91*time.Minute {
				t.Fatalf("lifetime %v, want 90m + 1m backdate", life)
			}
			if len(iss.Leaf.UnknownExtKeyUsage) != 0 {
				t.Fatalf("role OIDs without roles: %v", iss.Leaf.UnknownExtKeyUsage)
			}
		})
	}
}

func TestIssueRefusals(t *testing.T) {
	c, _ := newCA(t, nil)
	key := testpki.Key(t, "P-256")
	good := testpki.ParseCSR(t, testpki.CSR(t, key))
	tampered := testpki.ParseCSR(t, testpki.CSR(t, key))
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff
	cases := []struct {
		name string
		req  ca.LeafRequest
		code fault.Code
	}{
		{"nil csr", ca.LeafRequest{Fleet: "f", DeviceID: "d", Validity: time.Hour}, fault.CSRInvalid},
		{"bad signature", ca.LeafRequest{CSR: tampered, Fleet: "f", DeviceID: "d", Validity: time.Hour}, fault.CSRInvalid},
		{"bad device id", ca.LeafRequest{CSR: good, Fleet: "f", DeviceID: "a/b", Validity: time.Hour}, fault.InvalidArgument},
		{"bad fleet", ca.LeafRequest{CSR: good, Fleet: "", DeviceID: "d", Validity: time.Hour}, fault.InvalidArgument},
		{"unknown role", ca.LeafRequest{CSR: good, Fleet: "f", DeviceID: "d", Validity: time.Hour, Roles: []string{"root"}}, fault.InvalidArgument},
		{"zero validity", ca.LeafRequest{CSR: good, Fleet: "f", DeviceID: "d"}, fault.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Issue(context.Background(), tc.req)
			if got := fault.CodeOf(err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
		})
	}
}

func TestInitAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: []byte("short")}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("short passphrase: %v", err)
	}
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); fault.CodeOf(err) != fault.AlreadyExists {
		t.Fatalf("second init: %v, want already_exists", err)
	}
	for _, f := range []string{ca.RootKeyFile, ca.IntermediateKeyFile} {
		p := filepath.Join(dir, f)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		if !strings.HasPrefix(string(b), "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
			t.Errorf("%s is not encrypted PKCS#8", f)
		}
		// openssl can open it with the passphrase and not without.
		if _, err := exec.Command("openssl", "pkey", "-in", p, "-noout", "-passin", "pass:"+string(pass)).CombinedOutput(); err != nil {
			t.Errorf("openssl cannot decrypt %s: %v", f, err)
		}
		if _, err := exec.Command("openssl", "pkey", "-in", p, "-noout", "-passin", "pass:wrong-passphrase").CombinedOutput(); err == nil {
			t.Errorf("openssl decrypted %s with a wrong passphrase", f)
		}
	}
	text := openssl(t, "x509", "-in", filepath.Join(dir, ca.IntermediateCertFile), "-noout", "-text")
	if !strings.Contains(text, "CA:TRUE, pathlen:0") {
		t.Errorf("intermediate lacks pathlen 0:\n%s", text)
	}
	st, err := store.New(context.Background(), store.Config{DSN: testdb.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := ca.New(ca.Config{Dir: dir, Passphrase: []byte("wrong passphrase!"), Store: st}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, CRLURL: "ftp://x"}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("bad CRL URL: %v", err)
	}
	if _, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, RoleOIDs: map[string]string{"x": "1.2.a"}}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("bad OID: %v", err)
	}
}

func TestVerifyLeaf(t *testing.T) {
	now := time.Now()
	c, _ := newCA(t, func(cfg *ca.Config) { cfg.Now = func() time.Time { return now } })
	other, _ := newCA(t, nil)
	key := testpki.Key(t, "P-256")
	req := ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, key)), Fleet: "f", DeviceID: "d1", Validity: time.Hour}
	mine, err := c.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.VerifyLeaf(mine.Leaf); err != nil || id.DeviceID != "d1" {
		t.Fatalf("own leaf: %+v %v", id, err)
	}
	if _, err := c.VerifyLeaf(foreign.Leaf); fault.CodeOf(err) != fault.CertInvalid {
		t.Fatalf("foreign leaf: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := c.VerifyLeaf(mine.Leaf); fault.CodeOf(err) != fault.CertInvalid || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired leaf: %v", err)
	}
	var _ *x509.Certificate = mine.Leaf
}

func BenchmarkBareSign(b *testing.B) {
	c, _ := newCA(b, nil)
	csr := testpki.ParseCSR(b, testpki.CSR(b, testpki.Key(b, "P-256")))
	req := ca.LeafRequest{CSR: csr, Fleet: "f", DeviceID: "d", Validity: time.Hour}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Issue(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyClientCert is the certificate half of a broker CONNECT
// through the native hook (/hooks/v1/authorize with a certificate): parse
// (paid by every such CONNECT), full verification (the chain to the
// Gatehouse CA, clientAuth, the identity: a first CONNECT) and a cached
// one (a reconnect with the same certificate; cached-der: from the bytes,
// no parse), in one run.
func BenchmarkVerifyClientCert(b *testing.B) {
	c, _ := newCA(b, nil)
	req := ca.LeafRequest{CSR: testpki.ParseCSR(b, testpki.CSR(b, testpki.Key(b, "P-256"))), Fleet: "f", DeviceID: "d1", Validity: time.Hour}
	leaf, err := c.Issue(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := x509.ParseCertificate(leaf.Leaf.Raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if id, err := c.VerifyLeaf(leaf.Leaf); err != nil || id.DeviceID != "d1" {
				b.Fatal(id, err)
			}
		}
	})
	// A reconnect: the same certificate again (verifycache.go).
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if id, err := c.VerifyClientCert(leaf.Leaf); err != nil || id != "d1" {
				b.Fatal(id, err)
			}
		}
	})
	// The same from the DER bytes: the cache is looked up before any parse.
	b.Run("cached-der", func(b *testing.B) {
		for b.Loop() {
			if id, _, err := c.VerifyClientDER(leaf.Leaf.Raw); err != nil || id != "d1" {
				b.Fatal(id, err)
			}
		}
	})
}
