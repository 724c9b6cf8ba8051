package hooks_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

// newTestCA is a fresh Gatehouse CA over its own SQLite store.
func newTestCA(tb testing.TB) *ca.CA {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "ca")
	pass := []byte("a long enough passphrase")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		tb.Fatal(err)
	}
	st, err := store.New(context.Background(), store.Config{DSN: testdb.SQLite(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// issueLeaf issues a device certificate and returns it as PEM with its serial.
func issueLeaf(tb testing.TB, c *ca.CA, id string) (string, string) {
	tb.Helper()
	iss, err := c.Issue(context.Background(), ca.LeafRequest{CSR: testpki.ParseCSR(tb, testpki.CSR(tb, testpki.Key(tb, "P-256"))),
		Fleet: "plant", DeviceID: id, Validity: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return string(ca.EncodePEM(iss.Leaf)), ca.SerialHex(iss.Leaf.SerialNumber)
}

// expectNative posts req to the native endpoint and fails unless the answer
// is a 200 with the wanted allow.
func expectNative(t *testing.T, h *hooks.Handler, req hooks.NativeRequest, allow bool) {
	t.Helper()
	b, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/hooks/v1/authorize", strings.NewReader(string(b)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Gatehouse-Hook-Secret", secret)
	h.ServeHTTP(rec, r)
	var out hooks.NativeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.Allow != allow {
		t.Fatalf("%d %s, want allow=%v (%v)", rec.Code, rec.Body, allow, err)
	}
}

// TestNativeCertificate: the native endpoint verifies the certificate it is
// given — chain to the Gatehouse CA, and that it is the device's current
// one — before the decision core sees the request.
func TestNativeCertificate(t *testing.T) {
	mine, foreign := newTestCA(t), newTestCA(t)
	current, serial := issueLeaf(t, mine, "dev1")
	old, _ := issueLeaf(t, mine, "dev1")
	other, _ := issueLeaf(t, foreign, "dev1")

	p := newAuthorizer(t)
	p.UpsertDevice(authz.Device{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"},
		CertSerial: serial, CertNotAfter: time.Now().Add(time.Hour)})
	h, err := hooks.New(hooks.Config{Authorizer: p, Certs: mine, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		req   hooks.NativeRequest
		allow bool
	}{
		{"current certificate", hooks.NativeRequest{Action: "publish", ClientID: "dev1", Certificate: current, Topic: "fleets/plant/devices/dev1/telemetry/t"}, true},
		{"current certificate, other device's topic", hooks.NativeRequest{Action: "publish", ClientID: "dev1", Certificate: current, Topic: "fleets/plant/devices/dev2/telemetry/t"}, false},
		{"superseded certificate", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Certificate: old}, false},
		{"certificate from another CA", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Certificate: other}, false},
		{"identity contradicts certificate", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev2", Certificate: current}, false},
		{"client id spoof", hooks.NativeRequest{Action: "connect", ClientID: "dev2", Certificate: current}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectNative(t, h, tc.req, tc.allow)
		})
	}
}

// countingCerts counts the certificates that reached chain verification.
type countingCerts struct {
	hooks.CertVerifier
	n atomic.Int32
}

func (c *countingCerts) VerifyClientDER(der []byte) (string, string, error) {
	c.n.Add(1)
	return c.CertVerifier.VerifyClientDER(der)
}

func derOf(tb testing.TB, p string) []byte {
	tb.Helper()
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		tb.Fatal("not PEM")
	}
	return block.Bytes
}

// TestNativeCertificateDER: the certificate as base64 DER decides as the
// PEM does. The device's current certificate, with the identity it names,
// is recognised by fingerprint and never reaches verification; every other
// certificate is verified and must still be current; a fingerprint hit is
// still refused for a suspended device or a spoofed client id; both
// encodings at once, or bad base64, are refused.
func TestNativeCertificateDER(t *testing.T) {
	mine, foreign := newTestCA(t), newTestCA(t)
	currentPEM, serial := issueLeaf(t, mine, "dev1")
	oldPEM, _ := issueLeaf(t, mine, "dev1")
	otherPEM, _ := issueLeaf(t, foreign, "dev1")
	suspPEM, suspSerial := issueLeaf(t, mine, "susp")
	b64 := func(p string) string { return base64.StdEncoding.EncodeToString(derOf(t, p)) }
	current, old, other, susp := b64(currentPEM), b64(oldPEM), b64(otherPEM), b64(suspPEM)

	p := newAuthorizer(t)
	exp := time.Now().Add(time.Hour)
	p.UpsertDevice(authz.Device{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"},
		CertSerial: serial, CertNotAfter: exp, CertFingerprint: sha256.Sum256(derOf(t, currentPEM))})
	p.UpsertDevice(authz.Device{ID: "susp", Fleet: "plant", Active: false, Status: "suspended",
		CertSerial: suspSerial, CertNotAfter: exp, CertFingerprint: sha256.Sum256(derOf(t, suspPEM))})
	certs := &countingCerts{CertVerifier: mine}
	h, err := hooks.New(hooks.Config{Authorizer: p, Certs: certs, Devices: p, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tele := "fleets/plant/devices/dev1/telemetry/t"
	cases := []struct {
		name     string
		req      hooks.NativeRequest
		allow    bool
		verified int32 // certificates that reached verification
	}{
		{"current, identity given: fingerprint", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: current}, true, 0},
		{"current, publish own topic: fingerprint", hooks.NativeRequest{Action: "publish", ClientID: "dev1", Identity: "dev1", CertificateDER: current, Topic: tele}, true, 0},
		{"current, no identity: verified", hooks.NativeRequest{Action: "connect", ClientID: "dev1", CertificateDER: current}, true, 1},
		{"current as PEM, identity given: fingerprint", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", Certificate: currentPEM}, true, 0},
		{"superseded", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: old}, false, 1},
		{"another CA", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: other}, false, 1},
		{"identity names another device", hooks.NativeRequest{Action: "connect", ClientID: "dev2", Identity: "dev2", CertificateDER: current}, false, 1},
		{"client id spoof on a fingerprint hit", hooks.NativeRequest{Action: "connect", ClientID: "dev2", Identity: "dev1", CertificateDER: current}, false, 0},
		{"suspended device on a fingerprint hit", hooks.NativeRequest{Action: "connect", ClientID: "susp", Identity: "susp", CertificateDER: susp}, false, 0},
		{"PEM and DER together", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: current, Certificate: currentPEM}, false, 0},
		{"DER not base64", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: "not*base64"}, false, 0},
		{"DER not a certificate", hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: base64.StdEncoding.EncodeToString([]byte("junk"))}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			certs.n.Store(0)
			expectNative(t, h, tc.req, tc.allow)
			if n := certs.n.Load(); n != tc.verified {
				t.Errorf("%d certificates verified, want %d", n, tc.verified)
			}
		})
	}
}
