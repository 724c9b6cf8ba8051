package main

import (
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// TestESTIDevIDWithCurl runs the README's IDevID commands as written (the
// vendor registered with the CLI, then curl with the IDevID as client
// certificate and no Basic credentials, openssl reading the answer)
// against the real binary over HTTPS; then the refusals over the same
// wire: a replayed IDevID with another key, an unregistered vendor, an
// expired IDevID (an EST answer, not a TLS alert) and, after the vendor's
// CRL revoking its intermediate is imported, a revoked one — on both
// databases.
func TestESTIDevIDWithCurl(t *testing.T) {
	eachBackend(t, testESTIDevID)
}

func testESTIDevID(t *testing.T, g *gatehouse) {
	crt, key := serverCert(t, g.dir)
	g.serveTLS(t, crt, key)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "line", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h", "roles": []string{"telemetry"}}, http.StatusCreated, nil)
	dir := t.TempDir()
	acme := idevidtest.NewVendor(t, "ACME")
	leaf, leafKey, chain := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-0001"})
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("acme-root.pem", acme.AnchorsPEM())
	write("acme-ca.pem", acme.IntermediatesPEM())
	write("idevid.pem", idevidtest.ChainPEM(chain))
	write("idevid.key", idevidtest.KeyPEM(t, leafKey))

	script := readmeBlock(t, "### IDevID enrollment (vendor certificates)")
	script = strings.ReplaceAll(script, "https://127.0.0.1:8443", g.server)
	script = strings.ReplaceAll(script, "api-tls.crt", crt)
	script = strings.ReplaceAll(script, "\ngatehouse ", "\n"+g.bin+" ")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEHOUSE_ADMIN_TOKEN="+g.adminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's IDevID commands failed: %v\n%s\n--- script\n%s", err, out, script)
	}
	for _, want := range []string{"CN = acme-SN-0001", "URI:urn:gatehouse:default:acme-SN-0001", "TLS Web Client Authentication"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("openssl output lacks %q:\n%s", want, out)
		}
	}
	got := pemCerts(t, filepath.Join(dir, "dev.crt"))
	if len(got) != 1 || got[0].Subject.CommonName != "acme-SN-0001" {
		t.Fatalf("simpleenroll answered %d certificates", len(got))
	}
	if o, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"), "-untrusted",
		filepath.Join(g.data, "ca", "intermediate_ca.crt"), filepath.Join(dir, "dev.crt")).CombinedOutput(); err != nil {
		t.Errorf("openssl verify dev.crt against the data dir's root: %v %s", err, o)
	}
	var dev apitypes.Device
	g.api(t, "GET", "/api/v1/devices/acme-SN-0001", nil, http.StatusOK, &dev)
	if dev.Profile != "line" || dev.Fleet != "default" || dev.Status != "active" {
		t.Errorf("device %+v", dev)
	}
	var events apitypes.AuditEventList
	g.api(t, "GET", "/api/v1/audit?action=device.enroll_idevid", nil, http.StatusOK, &events)
	idSerial := strings.ToLower(leaf.SerialNumber.Text(16))
	if len(events.Events) != 1 || !strings.Contains(events.Events[0].Detail, "idevid_issuer="+leaf.Issuer.String()) ||
		!strings.Contains(events.Events[0].Detail, "idevid_serial="+idSerial) {
		t.Errorf("audit %+v, want one event with the IDevID's issuer and serial %s", events.Events, idSerial)
	}

	// A retry after a lost reply (same IDevID, same key): the same certificate.
	r := g.estCurl(t, dir, "--cert", filepath.Join(dir, "idevid.pem"), "--key", filepath.Join(dir, "idevid.key"),
		"-H", "Content-Type: application/pkcs10", "-H", "Content-Transfer-Encoding: base64", "--data-binary", "@"+filepath.Join(dir, "dev.p10"),
		g.server+"/.well-known/est/line/simpleenroll")
	if r.status != 200 {
		t.Fatalf("retry: %d %q", r.status, r.body)
	}
	if err := os.WriteFile(filepath.Join(dir, "retry.b64"), []byte(r.body), 0o600); err != nil {
		t.Fatal(err)
	}
	dec := exec.Command("bash", "-c", "openssl base64 -d -in retry.b64 | openssl pkcs7 -inform DER -print_certs -out retry.crt")
	dec.Dir = dir
	if o, err := dec.CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v %s", err, o)
	}
	if again := pemCerts(t, filepath.Join(dir, "retry.crt")); len(again) != 1 || !again[0].Equal(got[0]) {
		t.Fatalf("retry answered %d certificates, want the first one again", len(again))
	}

	// The device side from the Gatehouse CLI: enroll --est with the IDevID
	// as client certificate, the vendor chain in the PEM after it.
	_, key2, chain2 := acme.Device(t, idevidtest.DeviceOptions{SerialNumber: "SN-0002"})
	out2 := filepath.Join(dir, "cli-device")
	if r := g.run(t, nil, "enroll", "--est", g.server+"/.well-known/est/line", "--ca-file", crt,
		"--idevid-cert", write("idevid2.pem", idevidtest.ChainPEM(chain2)), "--idevid-key", write("idevid2.key", idevidtest.KeyPEM(t, key2)),
		"--out", out2); r.code != 0 {
		t.Fatalf("enroll --est --idevid-cert: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkDeviceDir(t, g, out2, "acme-SN-0002")
	// The same IDevID again from the CLI, with a new key: once per IDevID.
	if r := g.run(t, nil, "enroll", "--est", g.server+"/.well-known/est/line", "--ca-file", crt,
		"--idevid-cert", filepath.Join(dir, "idevid2.pem"), "--idevid-key", filepath.Join(dir, "idevid2.key"),
		"--out", filepath.Join(dir, "cli-again")); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "idevid_used") {
		t.Fatalf("a second enroll --est with one IDevID: %d\n%s%s, want idevid_used", r.code, r.stdout, r.stderr)
	}

	idevidRefusals(t, g, dir, acme, got[0])
}

func idevidRefusals(t *testing.T, g *gatehouse, dir string, acme *idevidtest.VendorPKI, first *x509.Certificate) {
	est := g.server + "/.well-known/est"
	p10 := filepath.Join(dir, "other.p10")
	writeCSR(t, p10, false)
	withCert := func(name string, chain []*x509.Certificate, key []byte) []string {
		c, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		if err := os.WriteFile(c, idevidtest.ChainPEM(chain), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(k, key, 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{"--cert", c, "--key", k, "-H", "Content-Type: application/pkcs10", "-H", "Content-Transfer-Encoding: base64",
			"--data-binary", "@" + p10, est + "/line/simpleenroll"}
	}
	device := func(v *idevidtest.VendorPKI, name string, o idevidtest.DeviceOptions) []string {
		_, key, chain := v.Device(t, o)
		return withCert(name, chain, idevidtest.KeyPEM(t, key))
	}
	stranger := idevidtest.NewVendor(t, "Stranger")
	cases := []struct {
		name   string
		args   []string
		status int
		code   string
	}{
		{"replayed IDevID, other key", []string{"--cert", filepath.Join(dir, "idevid.pem"), "--key", filepath.Join(dir, "idevid.key"),
			"-H", "Content-Type: application/pkcs10", "-H", "Content-Transfer-Encoding: base64", "--data-binary", "@" + p10,
			est + "/line/simpleenroll"}, 403, "idevid_used"},
		{"unregistered vendor", device(stranger, "stranger", idevidtest.DeviceOptions{SerialNumber: "SN-0002"}), 401, "idevid_unknown_vendor"},
		{"expired IDevID", device(acme, "expired", idevidtest.DeviceOptions{SerialNumber: "SN-0003",
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), 403, "idevid_invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := g.estCurl(t, dir, tc.args...)
			if r.status != tc.status || !strings.HasPrefix(r.body, tc.code+": ") {
				t.Fatalf("%d %q, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if (r.status == 401) != strings.Contains(r.headers, `www-authenticate: basic realm="gatehouse-est"`) {
				t.Errorf("401 and WWW-Authenticate disagree:\n%s", r.headers)
			}
		})
	}
	// The vendor revokes its intermediate; its CRL is imported with the CLI.
	revoking := device(acme, "revoked", idevidtest.DeviceOptions{SerialNumber: "SN-0004"})
	crl := filepath.Join(dir, "acme-root.crl")
	if err := os.WriteFile(crl, idevidtest.CRLPEM(acme.RevokeIntermediateCRL(t, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := g.adminCLI(t, "vendor", "crl", crl, "--server", g.server, "--ca-file", g.caFile, "--name", "acme"); r.code != 0 {
		t.Fatalf("vendor crl: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := g.estCurl(t, dir, revoking...); r.status != 403 || !strings.HasPrefix(r.body, "idevid_revoked: ") {
		t.Fatalf("IDevID under a revoked intermediate: %d %q, want 403 idevid_revoked", r.status, r.body)
	}
	// Counted as IDevID enrollments by their codes: the first and its
	// retry ok (EST answers a repeat 200 too), the CLI's ok and its
	// replay, then the refusals.
	m := g.scrape(t)
	for code, want := range map[string]float64{"ok": 2, "repeated": 1, "idevid_used": 2, "idevid_unknown_vendor": 1, "idevid_invalid": 1,
		"idevid_revoked": 1} {
		if got := m.get("gatehouse_enrollments_total", map[string]string{"kind": "idevid", "code": code}); got != want {
			t.Errorf("enrollments_total{kind=enroll_idevid,code=%s} = %v, want %v", code, got, want)
		}
	}
	if got := m.get("gatehouse_enrollments_total", map[string]string{"kind": "enroll"}); got != 0 {
		t.Errorf("IDevID enrollments counted as token enrollments: %v", got)
	}
	// Nothing of the refusals reached the device: one certificate, the first.
	var certs apitypes.CertificateList
	g.api(t, "GET", "/api/v1/devices/acme-SN-0001/certificates", nil, http.StatusOK, &certs)
	if len(certs.Certificates) != 1 || certs.Certificates[0].Serial != ca.SerialHex(first.SerialNumber) {
		t.Fatalf("acme-SN-0001 has %+v, want its one certificate", certs.Certificates)
	}
}
