package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
)

// TestHooksMutualTLS: with hooks.client_ca the hook listener refuses a
// broker without a certificate from that CA, and serves one with it
// without a secret (mutual TLS is the broker's authentication).
func TestHooksMutualTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	crt, kf := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	_ = os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	t.Setenv("GATEHOUSE_HOOKS_CLIENT_CA", crt)
	t.Setenv("GATEHOUSE_DATA_DIR", dir) // holds no hooks-secret
	t.Setenv("GATEHOUSE_HOOKS_SECRET", "")
	t.Setenv("GATEHOUSE_HOOKS_SECRET_FILE", "")
	cmd := newServeCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	v, err := loadConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hooksTLS(v); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("client CA without a server certificate: %v", err)
	}
	t.Setenv("GATEHOUSE_HOOKS_TLS_CERT", crt)
	t.Setenv("GATEHOUSE_HOOKS_TLS_KEY", kf)
	if v, err = loadConfig(cmd); err != nil {
		t.Fatal(err)
	}
	cfg, err := hooksTLS(v)
	if err != nil {
		t.Fatal(err)
	}
	// The hook handler as serve builds it with mutual TLS and no secret:
	// the verified client certificate is the broker's authentication.
	a, err := hooksAuth(v)
	if err != nil || a.secret != "" || !a.clientCerts {
		t.Fatalf("hook auth with a client CA and no secret: %+v, %v", a, err)
	}
	h, err := hooks.New(hooks.Config{Authorizer: allowAll{}, ClientCerts: a.clientCerts})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(mustParse(t, der))
	pair, err := tls.LoadX509KeyPair(crt, kf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{{"without client certificate", nil, false}, {"with client certificate", []tls.Certificate{pair}, true}} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: tc.certs}}}
		resp, err := c.Post(srv.URL+"/hooks/v1/authorize", "application/json",
			strings.NewReader(`{"action":"connect","client_id":"dev1","identity":"dev1"}`))
		if (err == nil) != tc.ok {
			t.Fatalf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(body)) != `{"allow":true}` {
				t.Fatalf("%s: %d %s, want the request served", tc.name, resp.StatusCode, body)
			}
		}
	}
}

// allowAll is a decision core that allows everything.
type allowAll struct{}

func (allowAll) Authorize(context.Context, authz.Request) (authz.Decision, error) {
	return authz.Decision{Allow: true}, nil
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
