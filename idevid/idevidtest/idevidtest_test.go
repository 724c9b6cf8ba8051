package idevidtest_test

import (
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// TestOpenSSLReadsTheFiles: what the helper writes is what curl and openssl
// expect (e2e tests hand these files to them): the chain verifies, the key
// matches, the CRL verifies against the root and lists the intermediate.
func TestOpenSSLReadsTheFiles(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	now := time.Now()
	v := idevidtest.NewVendor(t, "acme")
	leaf, key, chain := v.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-1", HWModule: &idevidtest.HWModule{Serial: []byte{1, 2}}})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root.pem", v.AnchorsPEM())
	inter := write("int.pem", v.IntermediatesPEM())
	leafFile := write("leaf.pem", idevidtest.CertPEM(leaf))
	chainFile := write("chain.pem", idevidtest.ChainPEM(chain))
	keyFile := write("key.pem", idevidtest.KeyPEM(t, key))
	crlFile := write("crl.pem", idevidtest.CRLPEM(v.RevokeIntermediateCRL(t, now, now.Add(time.Hour))))

	run := func(args ...string) string {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("verify", "-CAfile", root, "-untrusted", inter, leafFile); !strings.Contains(out, "OK") {
		t.Fatal(out)
	}
	if out := run("verify", "-CAfile", root, "-untrusted", chainFile, chainFile); !strings.Contains(out, "OK") {
		t.Fatal(out)
	}
	if a, b := run("x509", "-in", leafFile, "-noout", "-pubkey"), run("pkey", "-in", keyFile, "-pubout"); a != b {
		t.Fatalf("key does not match the certificate:\n%s\n%s", a, b)
	}
	out := run("crl", "-in", crlFile, "-CAfile", root, "-noout", "-text")
	if !strings.Contains(strings.ToUpper(out), strings.ToUpper(v.Intermediate.SerialNumber.Text(16))) {
		t.Fatalf("CRL does not list the intermediate:\n%s", out)
	}
	if !strings.Contains(out, "verify OK") {
		t.Fatalf("CRL signature not verified:\n%s", out)
	}
}

// TestCRLNumbersIncrease: each CRL a VendorPKI makes is newer than the last
// (the store refuses a CRL that is not).
func TestCRLNumbersIncrease(t *testing.T) {
	now := time.Now()
	v := idevidtest.NewVendor(t, "acme")
	a := idevidtest.ParseCRL(t, v.LeafCRL(t, nil, now, now.Add(time.Hour)))
	b := idevidtest.ParseCRL(t, v.RootCRL(t, []*big.Int{big.NewInt(1)}, now, now.Add(time.Hour)))
	if a.Number.Cmp(b.Number) >= 0 {
		t.Fatalf("CRL numbers %v then %v", a.Number, b.Number)
	}
	// And the vendor built from the PKI accepts its devices.
	_, _, chain := v.Device(t, idevidtest.DeviceOptions{CN: "dev-1"})
	if id, err := v.Vendor("f", "p", idevid.FromCN).Check(chain, now); err != nil || id.DeviceID != "dev-1" {
		t.Fatalf("%+v %v", id, err)
	}
}
