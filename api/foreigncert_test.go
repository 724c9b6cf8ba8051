package api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// TestForeignClientCertRefused: the API listener asks for a client
// certificate without verifying it at the handshake (a vendor IDevID must
// reach EST), so every consumer verifies it itself. A certificate of a
// foreign CA that copies a real device certificate's subject, SANs and
// serial, presented over mutual TLS, is refused with certificate_invalid
// (401) by /api/v1/renew, /api/v1/renew/challenge and EST simplereenroll
// (with and without a label), and nothing is issued.
func TestForeignClientCertRefused(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), withTLS())
	s.call(t, http.MethodPost, "/api/v1/profiles", s.admin,
		map[string]any{"name": "eager", "key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 1, "ttl": "1h"})
	victim, _, real := s.enrollOK(t, b.Tokens[0].Token)

	// The foreign CA and its forgery of the victim's certificate.
	caKey := testpki.Key(t, "P-256")
	caTmpl := &x509.Certificate{SerialNumber: real.SerialNumber, Subject: pkix.Name{CommonName: "Gatehouse Intermediate CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, _ := x509.ParseCertificate(caDER)
	key := testpki.Key(t, "P-256")
	tmpl := &x509.Certificate{SerialNumber: real.SerialNumber, Subject: real.Subject, URIs: real.URIs,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, foreignCA, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := x509.ParseCertificate(der)

	c := s.srv.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{forged.Raw, foreignCA.Raw}, PrivateKey: key, Leaf: forged}}
	client := &http.Client{Transport: tr}

	csrPEM := testpki.CSRPEM(t, testpki.Key(t, "P-256"))
	p10 := base64.StdEncoding.EncodeToString(testpki.CSR(t, testpki.Key(t, "P-256")))
	for _, tc := range []struct {
		name, path, ct, body string
	}{
		{"renew", "/api/v1/renew", "application/json", string(mustJSON(t, apitypes.RenewRequest{CSR: csrPEM}))},
		{"renew challenge", "/api/v1/renew/challenge", "application/json", "{}"},
		{"EST simplereenroll", "/.well-known/est/simplereenroll", "application/pkcs10", p10},
		{"EST simplereenroll under the device's label", "/.well-known/est/eager/simplereenroll", "application/pkcs10", p10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Post(s.srv.URL+tc.path, tc.ct, bytes.NewReader([]byte(tc.body)))
			if err != nil {
				t.Fatalf("the handshake refused the foreign certificate (it must reach the handler): %v", err)
			}
			r := readReply(resp)
			if strings.HasPrefix(tc.path, "/.well-known/est/") {
				if r.status != http.StatusUnauthorized || !strings.HasPrefix(string(r.body), string(fault.CertInvalid)+": ") {
					t.Fatalf("%d %s, want 401 %s", r.status, r.body, fault.CertInvalid)
				}
				return
			}
			wantError(t, r, http.StatusUnauthorized, fault.CertInvalid)
		})
	}
	var certs apitypes.CertificateList
	s.call(t, http.MethodGet, "/api/v1/devices/"+victim.DeviceID+"/certificates", s.viewer, nil, http.StatusOK, &certs)
	if len(certs.Certificates) != 1 || certs.Certificates[0].Status != "active" {
		t.Fatalf("victim's certificates after the forgeries: %+v, want its one active certificate", certs.Certificates)
	}
}
