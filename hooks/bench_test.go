package hooks_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/ca"
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

// benchDevice is a CA, dev1's current certificate (PEM and DER) and a core
// that knows dev1 with it.
func benchDevice(b *testing.B) (*ca.CA, string, []byte, *authz.Authorizer) {
	b.Helper()
	c := newTestCA(b)
	cert, serial := issueLeaf(b, c, "dev1")
	der := derOf(b, cert)
	p := newAuthorizer(b)
	p.UpsertDevice(authz.Device{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"},
		CertSerial: serial, CertNotAfter: time.Now().Add(time.Hour), CertFingerprint: sha256.Sum256(der)})
	return c, cert, der, p
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
	c, cert, der, p := benchDevice(b)
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

// BenchmarkNativeDeviceHTTP is what one bench device costs Gatehouse through
// a real loopback HTTP server with keep-alive, as the plugin asks it: the
// CONNECT (base64 DER, fingerprint), the publish and the delivery (read),
// each decision uncached in the core (a new topic per iteration; CONNECT
// is never cached), several clients at once.
// Run with -cpuprofile to see where a storm's Gatehouse CPU goes.
func BenchmarkNativeDeviceHTTP(b *testing.B) {
	c, _, der, p := benchDevice(b)
	h, err := hooks.New(hooks.Config{Authorizer: p, Certs: c, Devices: p, Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	tele, cmd := "fleets/plant/devices/dev1/telemetry/", "fleets/plant/devices/dev1/cmd/"
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		ask := func(req hooks.NativeRequest) {
			body, _ := json.Marshal(req)
			hr, _ := http.NewRequest("POST", srv.URL+"/hooks/v1/authorize", bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("X-Gatehouse-Hook-Secret", secret)
			resp, err := client.Do(hr)
			if err != nil {
				b.Error(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(out), `"allow":true`) {
				b.Errorf("%s: %s", req.Action, out)
			}
		}
		for pb.Next() {
			// A new topic each time: decisions are not cached in the core.
			n := strconv.FormatInt(seq.Add(1), 10)
			ask(hooks.NativeRequest{Action: "connect", ClientID: "dev1", Identity: "dev1", CertificateDER: base64.StdEncoding.EncodeToString(der)})
			ask(hooks.NativeRequest{Action: "publish", ClientID: "dev1", Identity: "dev1", Topic: tele + n, QoS: 1})
			ask(hooks.NativeRequest{Action: "read", ClientID: "dev1", Identity: "dev1", Topic: cmd + n})
		}
	})
}
