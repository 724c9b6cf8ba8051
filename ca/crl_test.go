package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

// crlCA is a CA with CRLs enabled on a fresh SQLite store.
func crlCA(t testing.TB) (*ca.CA, string, *store.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	dsn := testdb.SQLite(t)
	st, err := store.New(context.Background(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, CRLStore: st,
		CRLURL: "http://127.0.0.1:8080/crl", CRLValidity: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c, dir, st, dsn
}

func issue(t *testing.T, c *ca.CA, device string) *x509.Certificate {
	t.Helper()
	iss, err := c.Issue(context.Background(), ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))),
		Fleet: "seed", DeviceID: device, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return iss.Leaf
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCRLPassesOpenSSL checks the list the authority signs with openssl: it
// verifies against the chain, lists revoked serials with their reasons and
// a rising number, and makes openssl refuse a revoked leaf but not another.
func TestCRLPassesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (apt-get install openssl)")
	}
	ctx := context.Background()
	c, dir, st, dsn := crlCA(t)
	if _, err := c.CurrentCRL(ctx); !fault.Is(err, fault.NotFound) {
		t.Fatalf("CurrentCRL before the first generation: %v", err)
	}
	good, bad := issue(t, c, "good"), issue(t, c, "bad")
	now := time.Now()
	testdb.SeedCertificates(t, dsn, []testdb.Cert{
		{Serial: ca.SerialHex(good.SerialNumber), NotAfter: good.NotAfter},
		{Serial: ca.SerialHex(bad.SerialNumber), NotAfter: bad.NotAfter, RevokedAt: now.Add(-time.Minute), Reason: 1},
		// Long expired: left off the list.
		{Serial: "abcdef", NotAfter: now.Add(-2 * ca.CRLRetention), RevokedAt: now.Add(-3 * ca.CRLRetention), Reason: 4},
	})
	tmp := t.TempDir()
	chain := filepath.Join(tmp, "chain.pem")
	if err := os.WriteFile(chain, c.ChainPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, ca.RootCertFile)
	inter := filepath.Join(dir, ca.IntermediateCertFile)
	goodFile := writePEM(t, filepath.Join(tmp, "good.crt"), "CERTIFICATE", good.Raw)
	badFile := writePEM(t, filepath.Join(tmp, "bad.crt"), "CERTIFICATE", bad.Raw)
	verify := func(crlFile, leaf string) (string, error) {
		out, err := exec.Command("openssl", "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", root,
			"-untrusted", inter, leaf).CombinedOutput()
		return string(out), err
	}

	var last int64
	for round, tc := range []struct {
		revoke     *x509.Certificate // revoked in the store before this round
		refused    []string
		accepted   []string
		wantSerial []*x509.Certificate
	}{
		{nil, []string{badFile}, []string{goodFile}, []*x509.Certificate{bad}},
		{good, []string{badFile, goodFile}, nil, []*x509.Certificate{bad, good}},
	} {
		if tc.revoke != nil {
			if err := st.RevokeCertificate(ctx, ca.SerialHex(tc.revoke.SerialNumber), 5, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.GenerateCRL(ctx)
		if err != nil {
			t.Fatalf("round %d: GenerateCRL: %v", round, err)
		}
		if got.Number != last+1 || got.Entries != len(tc.wantSerial) {
			t.Fatalf("round %d: number %d entries %d, want %d and %d", round, got.Number, got.Entries, last+1, len(tc.wantSerial))
		}
		last = got.Number
		if cur, err := c.CurrentCRL(ctx); err != nil || cur.Number != got.Number {
			t.Fatalf("round %d: CurrentCRL: %+v %v", round, cur.Number, err)
		}
		crlFile := writePEM(t, filepath.Join(tmp, fmt.Sprintf("crl-%d.pem", round)), "X509 CRL", got.DER)
		if out := openssl(t, "crl", "-in", crlFile, "-CAfile", chain, "-verify", "-noout"); !strings.Contains(out, "verify OK") {
			t.Fatalf("round %d: openssl crl -verify: %s", round, out)
		}
		text := openssl(t, "crl", "-in", crlFile, "-noout", "-text")
		if !regexp.MustCompile(fmt.Sprintf(`X509v3 CRL Number:\s*\n\s*%d\b`, got.Number)).MatchString(text) {
			t.Fatalf("round %d: CRL number %d not in:\n%s", round, got.Number, text)
		}
		for _, cert := range tc.wantSerial {
			hex := strings.ToUpper(ca.SerialHex(cert.SerialNumber))
			if len(hex)%2 == 1 {
				hex = "0" + hex
			}
			if !strings.Contains(text, "Serial Number: "+hex) {
				t.Fatalf("round %d: serial %s not listed:\n%s", round, hex, text)
			}
		}
		if !strings.Contains(text, "Key Compromise") || strings.Contains(text, "ABCDEF") {
			t.Fatalf("round %d: reasons or retention wrong:\n%s", round, text)
		}
		if round == 1 && !strings.Contains(text, "Cessation Of Operation") {
			t.Fatalf("round %d: reason of the second revocation missing:\n%s", round, text)
		}
		for _, leaf := range tc.refused {
			if out, err := verify(crlFile, leaf); err == nil || !strings.Contains(out, "certificate revoked") {
				t.Fatalf("round %d: openssl accepted revoked %s: %v %s", round, leaf, err, out)
			}
		}
		for _, leaf := range tc.accepted {
			if out, err := verify(crlFile, leaf); err != nil {
				t.Fatalf("round %d: openssl refused good %s: %v %s", round, leaf, err, out)
			}
		}
	}
}

// TestCRLDisabled: without a CRLStore the CA generates nothing.
func TestCRLDisabled(t *testing.T) {
	c, _ := newCA(t, nil)
	if _, err := c.GenerateCRL(context.Background()); !fault.Is(err, fault.NotFound) {
		t.Fatalf("GenerateCRL without a CRLStore: %v", err)
	}
}

// TestCRLParsesInGo checks the encoding with crypto/x509: signature,
// number, authority key id, times, entries with their reasons.
func TestCRLParsesInGo(t *testing.T) {
	ctx := context.Background()
	c, _, _, dsn := crlCA(t)
	now := time.Now().UTC().Truncate(time.Second)
	certs := []testdb.Cert{
		{Serial: "80", NotAfter: now.Add(time.Hour), RevokedAt: now.Add(-time.Hour), Reason: 1},    // top bit: needs a 0 byte
		{Serial: "abc", NotAfter: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute), Reason: 0}, // odd length, unspecified
		{Serial: "00ff", NotAfter: now.Add(time.Hour), RevokedAt: now, Reason: 9},                  // leading zero byte
		{Serial: "7fffffffffffffffffffffffffffffffffffffff", NotAfter: now.Add(time.Hour), RevokedAt: now, Reason: 5},
	}
	testdb.SeedCertificates(t, dsn, certs)
	got, err := c.GenerateCRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(got.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(c.Intermediate()); err != nil {
		t.Fatal(err)
	}
	if rl.Number.Int64() != 1 || !rl.ThisUpdate.Equal(got.ThisUpdate) || !rl.NextUpdate.Equal(got.ThisUpdate.Add(2*time.Hour+time.Minute)) ||
		string(rl.AuthorityKeyId) != string(c.Intermediate().SubjectKeyId) || len(rl.RevokedCertificateEntries) != len(certs) {
		t.Fatalf("parsed list: number %v this %s next %s aki %x entries %d", rl.Number, rl.ThisUpdate, rl.NextUpdate,
			rl.AuthorityKeyId, len(rl.RevokedCertificateEntries))
	}
	want := map[string]testdb.Cert{}
	for _, ct := range certs {
		want[strings.TrimLeft(ct.Serial, "0")] = ct
	}
	for _, e := range rl.RevokedCertificateEntries {
		ct, ok := want[e.SerialNumber.Text(16)]
		if !ok || e.ReasonCode != ct.Reason || !e.RevocationTime.Equal(ct.RevokedAt) || e.SerialNumber.Sign() <= 0 {
			t.Errorf("entry %x reason %d at %s; want %+v", e.SerialNumber, e.ReasonCode, e.RevocationTime, ct)
		}
	}
	// An empty list leaves revokedCertificates out and still parses.
	c2, _, _, _ := crlCA(t)
	empty, err := c2.GenerateCRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rl, err := x509.ParseRevocationList(empty.DER); err != nil || len(rl.RevokedCertificateEntries) != 0 || empty.Entries != 0 {
		t.Fatalf("empty list: %v", err)
	}
}

// TestCRLRefusesBadSerial: a stored serial that is not hex fails the
// generation with an error instead of producing a wrong list.
func TestCRLRefusesBadSerial(t *testing.T) {
	c, _, st, dsn := crlCA(t)
	testdb.SeedCertificates(t, dsn, []testdb.Cert{{Serial: "xyz", NotAfter: time.Now().Add(time.Hour), RevokedAt: time.Now(), Reason: 1}})
	if _, err := c.GenerateCRL(context.Background()); err == nil || !strings.Contains(err.Error(), "not hex") {
		t.Fatalf("GenerateCRL with a bad serial: %v", err)
	}
	if n, _ := st.CRLNumber(context.Background()); n != 0 {
		t.Fatalf("a list was stored: %d", n)
	}
}
