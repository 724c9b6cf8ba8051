package hooks_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
)

// BenchmarkEMQXAuthz is the in-process cost of one cached EMQX authz
// request through the handler (decode, decide, encode), no network.
func BenchmarkEMQXAuthz(b *testing.B) {
	h, err := hooks.New(hooks.Config{Authorizer: newAuthorizer(b), Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"clientid":"dev1","username":"dev1","cert_common_name":"dev1","action":"publish","topic":"fleets/plant/devices/dev1/telemetry/temp","qos":"1","retain":"false"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/hooks/emqx/authz", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "allow") {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkNativeConnect is the in-process cost of a broker CONNECT through
// the native hook with the client certificate (what the gatehouse-mosquitto
// plugin asks): decode, the certificate check, the decision, encode; no
// network. pem-verified is the certificate as PEM, parsed and found in the
// CA's verified cache (a reconnect; the first-connect chain verification it
// skips is BenchmarkVerifyClientCert in ca); der-fingerprint is what the
// plugin sends: base64 DER with the identity, recognised as the device's
// current certificate by its SHA-256, no parse.
func BenchmarkNativeConnect(b *testing.B) {
	c := newTestCA(b)
	cert, serial := issueLeaf(b, c, "dev1")
	der := derOf(b, cert)
	p := newAuthorizer(b)
	p.UpsertDevice(authz.Device{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"},
		CertSerial: serial, CertNotAfter: time.Now().Add(time.Hour), CertFingerprint: sha256.Sum256(der)})
	for _, bc := range []struct {
		name    string
		devices hooks.Devices
		req     hooks.NativeRequest
	}{
		{"pem-verified", nil, hooks.NativeRequest{Action: "connect", ClientID: "dev1", Certificate: cert}},
		{"der-fingerprint", p, hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1",
			CertificateDER: base64.StdEncoding.EncodeToString(der)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := hooks.New(hooks.Config{Authorizer: p, Certs: c, Devices: bc.devices, Secret: secret})
			if err != nil {
				b.Fatal(err)
			}
			body, _ := json.Marshal(bc.req)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/hooks/v1/authorize", strings.NewReader(string(body)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Gatehouse-Hook-Secret", secret)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"allow":true`) {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}
