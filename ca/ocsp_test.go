package ca_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
)

// TestOCSPSigner: the delegated responder certificate is issued by the
// intermediate for OCSP signing only, carries id-pkix-ocsp-nocheck, lives
// as long as asked, and openssl accepts it as an OCSP helper.
func TestOCSPSigner(t *testing.T) {
	c, dir := newCA(t, nil)
	ctx := context.Background()
	if _, err := c.NewOCSPSigner(ctx, time.Minute); err == nil {
		t.Fatal("a one-minute responder certificate was accepted")
	}
	s, err := c.NewOCSPSigner(ctx, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cert := cred.Cert
	if err := cert.CheckSignatureFrom(c.Intermediate()); err != nil {
		t.Fatalf("not issued by the intermediate: %v", err)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < 48*time.Hour || d > 48*time.Hour+2*time.Minute {
		t.Errorf("validity %v", d)
	}
	if cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning ||
		len(cert.UnknownExtKeyUsage) != 0 || len(cert.URIs)+len(cert.DNSNames)+len(cert.OCSPServer) != 0 {
		t.Errorf("responder certificate: CA %v EKU %v %v URIs %v DNS %v OCSP %v", cert.IsCA, cert.ExtKeyUsage,
			cert.UnknownExtKeyUsage, cert.URIs, cert.DNSNames, cert.OCSPServer)
	}
	if !publicKeyMatches(cert, cred) {
		t.Error("signer does not match the certificate")
	}
	p := filepath.Join(t.TempDir(), "ocsp.crt")
	if err := os.WriteFile(p, ca.EncodePEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	text := openssl(t, "x509", "-in", p, "-noout", "-text")
	for _, w := range []string{"OCSP No Check", "OCSP Signing", "CA:FALSE"} {
		if !strings.Contains(text, w) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", w, text)
		}
	}
	out := openssl(t, "verify", "-purpose", "ocsphelper", "-CAfile", filepath.Join(dir, ca.RootCertFile),
		"-untrusted", filepath.Join(dir, ca.IntermediateCertFile), p)
	if !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify: %s", out)
	}
}

func publicKeyMatches(cert *x509.Certificate, cred ca.OCSPCredential) bool {
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(cred.Signer.Public())
}
