package idevid_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// TestCheckRekeyedIssuerCRL: the vendor re-keys its IDevID CA under the same name (both
// certificates registered) and, as RFC 5280 allows, its current CRL for that
// name is signed with the new key and lists a device issued under the old
// key. The CRL imports (ParseCRL accepts it: same name, registered signer),
// and it must revoke the old-key device too (a review found Check
// skipping it: CheckSignatureFrom(chain issuer) failed).
func TestCheckRekeyedIssuerCRL(t *testing.T) {
	now := time.Now()
	acme := idevidtest.NewVendor(t, "acme")
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newCA := acme.NewIntermediate(t, "acme IDevID CA", newKey, now.Add(-time.Hour), now.AddDate(20, 0, 0))
	leaf, _, chain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-OLD", Serial: big.NewInt(0x4242)})
	crlDER := acme.CRL(t, newCA, newKey, []*big.Int{leaf.SerialNumber}, now, now.Add(24*time.Hour))

	v := acme.Vendor("plant", "sensor", idevid.FromSerialNumber)
	v.Intermediates = append(v.Intermediates, newCA)
	// The operator's import path accepts this CRL.
	if _, err := idevid.ParseCRL(crlDER, append([]*x509.Certificate{acme.Root}, v.Intermediates...)); err != nil {
		t.Fatalf("import refused: %v", err)
	}
	v.CRLs = crls(t, crlDER)
	id, err := v.Check(chain, now)
	if !fault.Is(err, idevid.Revoked) {
		t.Errorf("serial %s is listed on the vendor's imported CRL for %q, yet Check = (%s, %v)", leaf.SerialNumber.Text(16), leaf.Issuer, id.DeviceID, err)
	}
}
