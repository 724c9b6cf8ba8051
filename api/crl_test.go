package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func signedCRL(t *testing.T, number int64) *crl.Current {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	certDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(certDER)
	now := time.Now().Truncate(time.Second).UTC()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: now,
		NextUpdate: now.Add(24 * time.Hour)}, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &crl.Current{CRL: store.CRL{Number: number, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), DER: der},
		PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})}
}

func TestCRLRoutes(t *testing.T) {
	f := &fakeCRL{}
	s := newStack(t, testdb.SQLite(t), func(c *stackCfg) { c.api.CRL = f })

	// Before the first list: 404 with a stable code, not a 500.
	if r := s.send(t, request{method: "GET", path: "/crl"}); r.status != http.StatusNotFound {
		t.Fatalf("GET /crl with no list: %d %s", r.status, r)
	}

	f.cur = signedCRL(t, 7)
	f.status = crl.Status{Number: 7, ThisUpdate: f.cur.ThisUpdate, NextUpdate: f.cur.NextUpdate, File: "/var/lib/crl.pem",
		ReloadCommand: true, LastReload: &crl.Reload{At: time.Now(), Number: 7, Error: "exit status 1", Output: "no pid"}}
	for _, tc := range []struct {
		path, contentType string
		body              []byte
	}{
		{"/crl", "application/pkix-crl", f.cur.DER},
		{"/crl.pem", "application/x-pem-file", f.cur.PEM},
	} {
		r := s.send(t, request{method: "GET", path: tc.path})
		if r.status != 200 || r.header.Get("Content-Type") != tc.contentType || !bytes.Equal(r.body, tc.body) {
			t.Fatalf("GET %s: %d %q (%d bytes)", tc.path, r.status, r.header.Get("Content-Type"), len(r.body))
		}
		if r.header.Get("ETag") != `"crl-7"` || r.header.Get("Last-Modified") == "" ||
			r.header.Get("Cache-Control") != "public, no-cache, no-transform" {
			t.Fatalf("GET %s headers: %v", tc.path, r.header)
		}
		// A cache holding list 7 revalidates without a body.
		req, _ := http.NewRequest("GET", s.srv.URL+tc.path, nil)
		req.Header.Set("If-None-Match", `"crl-7"`)
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional GET %s: %d", tc.path, resp.StatusCode)
		}
		if r := s.send(t, request{method: "HEAD", path: tc.path}); r.status != 200 || len(r.body) != 0 {
			t.Fatalf("HEAD %s: %d", tc.path, r.status)
		}
	}
	if _, err := x509.ParseRevocationList(s.send(t, request{method: "GET", path: "/crl"}).body); err != nil {
		t.Fatalf("served DER does not parse: %v", err)
	}

	// The status needs a viewer.
	if r := s.send(t, request{method: "GET", path: "/api/v1/crl"}); r.status != http.StatusUnauthorized {
		t.Fatalf("status without a token: %d", r.status)
	}
	r := s.send(t, request{method: "GET", path: "/api/v1/crl", bearer: s.viewer})
	var v apitypes.CRLStatus
	if err := jsonUnmarshal(r.body, &v); err != nil || r.status != 200 {
		t.Fatalf("status: %d %s %v", r.status, r, err)
	}
	if v.Number != 7 || v.File != "/var/lib/crl.pem" || v.LastReload == nil || v.LastReload.OK || v.LastReload.Error != "exit status 1" || v.FileWrittenAt != nil {
		t.Fatalf("status: %s", r)
	}
}
