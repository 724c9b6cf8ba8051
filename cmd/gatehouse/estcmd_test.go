package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// testIssuer is a CA made in the test: a vendor's IDevID CA, or the fake
// EST server's.
type testIssuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestIssuer(t *testing.T, cn string) *testIssuer {
	t.Helper()
	key := testpki.Key(t, "P-256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testIssuer{c, key}
}

func (i *testIssuer) issue(t *testing.T, cn string, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, pub, i.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// writeKeyPair writes cert and key as PEM files in dir.
func writeKeyPair(t *testing.T, dir, name string, cert *x509.Certificate, key crypto.Signer) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, testpki.KeyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// estRequest is what the fake EST server saw of a request.
type estRequest struct {
	op    string
	basic bool
	peer  *x509.Certificate
}

// fakeESTServer answers cacerts with its CA and simpleenroll with a
// certificate from that CA, over TLS that asks for any client certificate
// (as a server taking vendor IDevIDs must). It returns the server's URL,
// the TLS trust file and the requests it saw.
func fakeESTServer(t *testing.T, issuer *testIssuer) (string, string, func() []estRequest) {
	t.Helper()
	var mu sync.Mutex
	var seen []estRequest
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := estRequest{op: r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]}
		_, _, req.basic = r.BasicAuth()
		if len(r.TLS.PeerCertificates) > 0 {
			req.peer = r.TLS.PeerCertificates[0]
		}
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		var answer *x509.Certificate
		switch req.op {
		case "csrattrs":
			der, _ := est.CSRAttrs([]string{"P-384", "RSA"})
			w.Header().Set("Content-Type", "application/csrattrs")
			_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString(der))
			return
		case "cacerts":
			answer = issuer.cert
		case "simpleenroll":
			b, _ := io.ReadAll(r.Body)
			der, _ := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, "csr_invalid: no\n")
				return
			}
			answer = issuer.issue(t, "SN-0042", csr.PublicKey)
		}
		p7, _ := est.CertsOnly([]*x509.Certificate{answer})
		w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
		_, _ = io.WriteString(w, base64.StdEncoding.EncodeToString(p7))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "est-tls.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile, func() []estRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]estRequest(nil), seen...)
	}
}

// TestESTAuthFlags: the enroll flags make one EST credential, the token as
// Basic password or the IDevID as TLS client certificate, never both.
func TestESTAuthFlags(t *testing.T) {
	dir := t.TempDir()
	vendor := newTestIssuer(t, "Vendor CA")
	idKey := testpki.Key(t, "P-256")
	idevid := vendor.issue(t, "SN-0042", idKey.Public())
	idCert, idKeyFile := writeKeyPair(t, dir, "idevid", idevid, idKey)
	trust := filepath.Join(dir, "trust.pem")
	_ = os.WriteFile(trust, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vendor.cert.Raw}), 0o644)
	const url = "https://127.0.0.1:8443/.well-known/est/line"
	for _, tc := range []struct {
		name string
		o    estEnroll
		code fault.Code
	}{
		{"token and IDevID", estEnroll{token: "ghb_x", idevidCert: idCert, idevidKey: idKeyFile}, fault.InvalidArgument},
		{"IDevID without key", estEnroll{idevidCert: idCert}, fault.InvalidArgument},
		{"IDevID key without certificate", estEnroll{idevidKey: idKeyFile}, fault.InvalidArgument},
		{"IDevID and device id", estEnroll{idevidCert: idCert, idevidKey: idKeyFile, deviceID: "cam-1"}, fault.InvalidArgument},
		{"IDevID that does not load", estEnroll{idevidCert: idKeyFile, idevidKey: idCert}, fault.InvalidArgument},
		{"no credential", estEnroll{}, fault.TokenInvalid},
		{"bad device id", estEnroll{token: "ghb_x", deviceID: "../x"}, fault.InvalidArgument},
		{"token without --ca-file", estEnroll{token: "ghb_x", caFile: "-"}, fault.InvalidArgument},
		{"IDevID without --ca-file", estEnroll{idevidCert: idCert, idevidKey: idKeyFile, caFile: "-"}, fault.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.url = url
			if tc.o.caFile == "" {
				tc.o.caFile = trust
			} else {
				tc.o.caFile = ""
			}
			if _, err := estAuth(tc.o); fault.CodeOf(err) != tc.code {
				t.Fatalf("%v, want %s", err, tc.code)
			}
		})
	}

	cfg, err := estAuth(estEnroll{url: url, caFile: trust, token: "ghb_x", deviceID: "cam-1"})
	if err != nil || cfg.Username != "" || cfg.Password != "ghb_x" || cfg.Certificate != nil || cfg.RootCAs == nil {
		t.Fatalf("token: %+v %v", cfg, err)
	}
	cfg, err = estAuth(estEnroll{url: url, caFile: trust, idevidCert: idCert, idevidKey: idKeyFile})
	if err != nil || cfg.Password != "" || cfg.Username != "" || cfg.Certificate == nil || cfg.Certificate.Leaf == nil ||
		!cfg.Certificate.Leaf.Equal(idevid) {
		t.Fatalf("IDevID: %+v %v", cfg, err)
	}
}

// TestEnrollFlagsIDevID: with --idevid-*, a token inherited from the
// environment stays home, and --ca is --ca-file.
func TestEnrollFlagsIDevID(t *testing.T) {
	t.Setenv("GATEHOUSE_BOOTSTRAP_TOKEN", "ghb_from_env")
	cmd := newEnrollCmd()
	if err := cmd.ParseFlags([]string{"--est", "https://h", "--idevid-cert", "a.crt", "--idevid-key", "a.key", "--ca", "trust.pem"}); err != nil {
		t.Fatal(err)
	}
	o := estEnrollFlags(cmd.Flags())
	if o.token != "" || o.caFile != "trust.pem" || o.idevidCert != "a.crt" || o.idevidKey != "a.key" {
		t.Fatalf("flags %+v", o)
	}
	cmd = newEnrollCmd()
	if err := cmd.ParseFlags([]string{"--est", "https://h", "--ca-file", "trust.pem"}); err != nil {
		t.Fatal(err)
	}
	if o := estEnrollFlags(cmd.Flags()); o.token != "ghb_from_env" {
		t.Fatalf("token from the environment: %q", o.token)
	}
}

// TestEnrollESTWithIDevID runs `enroll --est` with an IDevID against a fake
// EST server: the TLS client certificate is the IDevID, no Basic auth goes
// out, and the files are written as `enroll` writes them.
func TestEnrollESTWithIDevID(t *testing.T) {
	dir := t.TempDir()
	vendor, gh := newTestIssuer(t, "Vendor CA"), newTestIssuer(t, "Gatehouse CA")
	idKey := testpki.Key(t, "P-256")
	idevid := vendor.issue(t, "SN-0042", idKey.Public())
	idCert, idKeyFile := writeKeyPair(t, dir, "idevid", idevid, idKey)
	url, trust, seen := fakeESTServer(t, gh)
	out := filepath.Join(dir, "device")
	res, err := runEnrollEST(estEnroll{url: url + "/.well-known/est", caFile: trust, idevidCert: idCert, idevidKey: idKeyFile,
		out: out, keyType: "P-256"})
	if err != nil {
		t.Fatal(err)
	}
	reqs := seen()
	if len(reqs) != 3 || reqs[0].op != "cacerts" || reqs[1].op != "csrattrs" || reqs[2].op != "simpleenroll" {
		t.Fatalf("requests %+v, want cacerts, csrattrs, simpleenroll", reqs)
	}
	for _, r := range reqs {
		if r.basic || r.peer == nil || !r.peer.Equal(idevid) {
			t.Fatalf("%s: Basic %v, client certificate %v: want the IDevID and no Basic auth", r.op, r.basic, r.peer)
		}
	}
	if res.DeviceID != "SN-0042" || !res.OK {
		t.Fatalf("result %+v", res)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(out, deviceCertFile), filepath.Join(out, deviceKeyFile))
	if err != nil || pair.Leaf.Subject.CommonName != "SN-0042" || pair.Leaf.Issuer.CommonName != "Gatehouse CA" {
		t.Fatalf("written key pair: %v", err)
	}
	// The server's csrattrs allow P-384 and RSA, not the default P-256.
	if pub, ok := pair.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Fatalf("key %T, want P-384 as csrattrs asked", pair.Leaf.PublicKey)
	}
	if st, err := os.Stat(filepath.Join(out, deviceKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device.key: %v %v, want mode 0600", st.Mode(), err)
	}
	if chain, err := readCertFile(filepath.Join(out, deviceChainFile)); err != nil || len(chain) != 1 || !chain[0].Equal(gh.cert) {
		t.Fatalf("ca-chain.crt: %v", err)
	}
	// A second run refuses to overwrite the key.
	if _, err := runEnrollEST(estEnroll{url: url, caFile: trust, idevidCert: idCert, idevidKey: idKeyFile, out: out, keyType: "P-256"}); fault.CodeOf(err) != fault.AlreadyExists {
		t.Fatalf("second enroll: %v, want already_exists", err)
	}
}

func TestPickKeyType(t *testing.T) {
	for _, tc := range []struct {
		allowed   []string
		def, want string
	}{
		{nil, "P-256", "P-256"},
		{[]string{"P-384", "P-256"}, "P-256", "P-256"},
		{[]string{"P-384"}, "P-256", "P-384"},
		{[]string{"RSA", "Ed25519"}, "P-256", "RSA-2048"},
		{[]string{"Ed25519"}, "P-256", "Ed25519"},
	} {
		if got := pickKeyType(tc.allowed, tc.def); got != tc.want {
			t.Errorf("pickKeyType(%v, %s) = %s, want %s", tc.allowed, tc.def, got, tc.want)
		}
	}
}

// TestEnrollESTRefusesForeignCertificate: a certificate that does not
// chain to the CA certificates the server sent is not written.
func TestEnrollESTRefusesForeignCertificate(t *testing.T) {
	gh, other := newTestIssuer(t, "Gatehouse CA"), newTestIssuer(t, "Other CA")
	key := testpki.Key(t, "P-256")
	if err := verifyIssued(gh.issue(t, "cam-1", key.Public()), []*x509.Certificate{gh.cert}); err != nil {
		t.Fatalf("own certificate: %v", err)
	}
	if err := verifyIssued(other.issue(t, "cam-1", key.Public()), []*x509.Certificate{gh.cert}); fault.CodeOf(err) != "bad_response" {
		t.Fatalf("foreign certificate: %v, want bad_response", err)
	}
}

// TestRenewFlagsEST: renew (and renew --loop, which renews with the same
// function) goes over EST with --est, and refuses --est with --server.
func TestRenewFlagsEST(t *testing.T) {
	cmd := newRenewCmd()
	if err := cmd.ParseFlags([]string{"--est", "https://h", "--server", "https://h", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if _, err := renewFunc(cmd.Flags()); fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("--est with --server: %v", err)
	}
	// An empty directory: runRenewEST's own refusal, before any request.
	cmd = newRenewCmd()
	if err := cmd.ParseFlags([]string{"--est", "https://127.0.0.1:9/.well-known/est", "--ca", "x.pem", "--dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	renew, err := renewFunc(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := renew(); fault.CodeOf(err) != fault.InvalidArgument || !strings.Contains(err.Error(), "cannot load") {
		t.Fatalf("renew --est in an empty directory: %v", err)
	}
}

// TestFinishKeySwap: a renewal that crashed after writing the new
// certificate but before renaming its key is completed; a side file next
// to a whole pair (maybe a renewal running now) and a mismatch that is not
// ours stay as they are.
func TestFinishKeySwap(t *testing.T) {
	gh := newTestIssuer(t, "CA")
	oldKey, newKey := testpki.Key(t, "P-256"), testpki.Key(t, "P-256")
	newCert := gh.issue(t, "cam-1", newKey.Public())
	for _, tc := range []struct {
		name        string
		key, next   crypto.Signer // device.key, device.key.new (nil: none)
		wantKey     crypto.Signer
		wantNewGone bool
	}{
		{"interrupted swap", oldKey, newKey, newKey, true},
		{"side file next to a whole pair", newKey, oldKey, newKey, false},
		{"no side file", newKey, nil, newKey, true},
		{"side file of another key", oldKey, testpki.Key(t, "P-256"), oldKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := writeKeyPair(t, dir, "device", newCert, tc.key)
			if tc.next != nil {
				if err := os.WriteFile(keyFile+".new", testpki.KeyPEM(t, tc.next), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := finishKeySwap(certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(keyFile); !bytes.Equal(b, testpki.KeyPEM(t, tc.wantKey)) {
				t.Error("device.key is not the expected key")
			}
			if _, err := os.Stat(keyFile + ".new"); (err != nil) != tc.wantNewGone {
				t.Errorf("device.key.new present: %v, want gone: %v", err == nil, tc.wantNewGone)
			}
		})
	}
}
