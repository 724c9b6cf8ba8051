package hooks_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
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
			b, _ := json.Marshal(tc.req)
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/hooks/v1/authorize", strings.NewReader(string(b)))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-Gatehouse-Hook-Secret", secret)
			h.ServeHTTP(rec, r)
			var out hooks.NativeResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.Allow != tc.allow {
				t.Fatalf("%d %s, want allow=%v (%v)", rec.Code, rec.Body, tc.allow, err)
			}
		})
	}
}
