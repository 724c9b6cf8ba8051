package ca_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
)

// TestCRLToleratesBrokerClockBehind: a broker whose clock runs behind ours
// (by less than the CA's backdate) verifies a fresh list and accepts an
// unrevoked client with it. Were thisUpdate "now", OpenSSL would find the
// list not yet valid and refuse every client until its clock caught up.
func TestCRLToleratesBrokerClockBehind(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (apt-get install openssl)")
	}
	c, dir, _, _ := crlCA(t)
	leaf := issue(t, c, "skewed")
	got, err := c.GenerateCRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	crlFile := writePEM(t, filepath.Join(tmp, "crl.pem"), "X509 CRL", got.DER)
	leafFile := writePEM(t, filepath.Join(tmp, "leaf.crt"), "CERTIFICATE", leaf.Raw)
	for _, behind := range []time.Duration{0, 5 * time.Second, 30 * time.Second} {
		at := strconv.FormatInt(time.Now().Add(-behind).Unix(), 10)
		out, err := exec.Command("openssl", "verify", "-attime", at, "-crl_check", "-CRLfile", crlFile,
			"-CAfile", filepath.Join(dir, ca.RootCertFile), "-untrusted", filepath.Join(dir, ca.IntermediateCertFile),
			leafFile).CombinedOutput()
		if err != nil {
			t.Errorf("broker clock %v behind: openssl refused an unrevoked leaf: %v\n%s", behind, err, out)
		}
	}
	// The list still lasts its full validity from now.
	if d := time.Until(got.NextUpdate); d < 2*time.Hour-time.Minute {
		t.Errorf("nextUpdate only %v away", d)
	}
}
