package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// estReply is what curl got from an EST endpoint.
type estReply struct {
	status  int
	headers string
	body    string
}

// estCurl runs curl against the server's EST endpoints (trusting its TLS
// certificate) and returns the status, headers and body, whatever the status.
func (g *gatehouse) estCurl(t *testing.T, dir string, args ...string) estReply {
	t.Helper()
	hdr, body := filepath.Join(dir, "curl.headers"), filepath.Join(dir, "curl.body")
	base := []string{"-sS", "-o", body, "-D", hdr, "-w", "%{http_code}"}
	if g.caFile != "" {
		base = append(base, "--cacert", g.caFile)
	}
	out, err := exec.Command("curl", append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	status, err := strconv.Atoi(string(out))
	if err != nil {
		t.Fatalf("curl status %q", out)
	}
	h, _ := os.ReadFile(hdr)
	b, _ := os.ReadFile(body)
	return estReply{status, strings.ToLower(string(h)), string(b)}
}

// pemCerts reads every certificate of a PEM file (openssl's -print_certs
// output, with its subject/issuer lines).
func pemCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// writeCSR writes a base64 PKCS#10 request for a fresh P-256 key; bad
// flips a byte of its signature.
func writeCSR(t *testing.T, path string, bad bool) {
	t.Helper()
	der := testpki.CSR(t, testpki.Key(t, "P-256"))
	if bad {
		der[len(der)-5] ^= 0xff
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(der)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestESTWithCurlAndOpenSSL runs the README's EST commands as written
// (curl and openssl, no client of ours) against the real binary over
// HTTPS: cacerts, csrattrs, simpleenroll with a bootstrap token and
// simplereenroll over mutual TLS; then the refusals: a token used twice, a
// superseded and a revoked certificate, malformed bodies, bad credentials
// — on both databases.
func TestESTWithCurlAndOpenSSL(t *testing.T) {
	eachBackend(t, testESTWithCurlAndOpenSSL)
}

func testESTWithCurlAndOpenSSL(t *testing.T, g *gatehouse) {
	crt, key := serverCert(t, g.dir)
	g.serveTLS(t, crt, key)
	// line as the README has it; other with the defaults (no serverkeygen,
	// the device id from the token).
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "line", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h", "server_keygen": true, "device_id_from": "csr_serial_number"}, http.StatusCreated, nil)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "other", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	toks := g.tokens(t, "line", 2)
	tok, keygenTok := toks[0], toks[1]
	dir := t.TempDir()
	script := readmeBlock(t, "## EST (RFC 7030)")
	script = strings.ReplaceAll(script, "https://127.0.0.1:8443", g.server)
	// KEYGEN_TOKEN first: it ends in TOKEN=ghb_… too.
	script = strings.ReplaceAll(script, "KEYGEN_TOKEN=ghb_…", "KEYGEN_TOKEN="+keygenTok)
	script = strings.ReplaceAll(script, "TOKEN=ghb_…", "TOKEN="+tok)
	script = strings.ReplaceAll(script, "api-tls.crt", crt)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's EST commands failed: %v\n%s\n--- script\n%s", err, out, script)
	}
	for _, want := range []string{"id-ecPublicKey", "prime256v1", "est.crt: OK", "est-new.crt: OK",
		"Key is valid", "skg.crt: OK", "skg.crt: certifies skg.key"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkESTFiles(t, g, dir)
	checkServerKeygen(t, g, dir)
	estRefusals(t, g, dir, tok, keygenTok)
	estRace(t, g)
}

// checkServerKeygen checks what the README's serverkeygen commands got: a
// P-256 key, a certificate for it naming cam-8 (the CSR's serialNumber),
// and an audit record saying the key was the server's. The key is in no
// log line.
func checkServerKeygen(t *testing.T, g *gatehouse, dir string) {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(dir, "skg.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("skg.key is not PEM:\n%s", keyPEM)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve.Params().Name != "P-256" {
		t.Fatalf("server key %T, want P-256", key)
	}
	certs := pemCerts(t, filepath.Join(dir, "skg.crt"))
	if len(certs) != 1 || certs[0].Subject.CommonName != "cam-8" || !ec.PublicKey.Equal(certs[0].PublicKey) {
		t.Fatalf("serverkeygen: %d certificates, want one for cam-8 and the key", len(certs))
	}
	var dev apitypes.Device
	g.api(t, "GET", "/api/v1/devices/cam-8", nil, http.StatusOK, &dev)
	if dev.Profile != "line" {
		t.Errorf("device cam-8: %+v", dev)
	}
	var audit apitypes.AuditEventList
	g.api(t, "GET", "/api/v1/audit?action=device.enroll&object_id=cam-8", nil, http.StatusOK, &audit)
	if len(audit.Events) != 1 || !strings.Contains(audit.Events[0].Detail, "key=server-generated") {
		t.Errorf("audit of cam-8's enrollment: %+v", audit.Events)
	}
	b64 := base64.StdEncoding.EncodeToString(block.Bytes)
	for _, s := range []string{b64[:40], b64[len(b64)-40:]} {
		if strings.Contains(g.logs.String(), s) {
			t.Fatal("the server logged the generated key")
		}
	}
}

// estRace sends one token with many keys at once: exactly one gets a
// certificate; the others are token_used, or unavailable while the winner
// is in flight; never a 5xx otherwise, and one device.
func estRace(t *testing.T, g *gatehouse) {
	const n = 12
	tok := g.tokens(t, "line", 1)[0]
	// Profile line takes the device id from the CSR's serialNumber.
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = base64.StdEncoding.EncodeToString(testpki.CSRSubject(t, testpki.Key(t, "P-256"), pkix.Name{SerialNumber: "race-1"}))
	}
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, n)
	var start sync.WaitGroup
	start.Add(1)
	for i := range n {
		go func() {
			start.Wait()
			req, _ := http.NewRequest("POST", g.server+"/.well-known/est/line/simpleenroll", strings.NewReader(bodies[i]))
			req.SetBasicAuth("estuser", tok)
			req.Header.Set("Content-Type", "application/pkcs10")
			resp, err := g.client.Do(req)
			if err != nil {
				answers <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	start.Done()
	won := 0
	for range n {
		a := <-answers
		switch {
		case a.status == 200:
			won++
		case a.status == 409 && strings.HasPrefix(a.body, "token_used: "), a.status == 503 && strings.HasPrefix(a.body, "unavailable: "):
		default:
			t.Errorf("racing enrollment: %d %q", a.status, a.body)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing enrollments with one token got a certificate, want 1", won, n)
	}
	var certs apitypes.CertificateList
	g.api(t, "GET", "/api/v1/devices/race-1/certificates", nil, http.StatusOK, &certs)
	// Discarded ones (signed, never handed out, revoked) do not count.
	issued := 0
	for _, c := range certs.Certificates {
		if !c.Discarded {
			issued++
		}
	}
	if issued != 1 {
		t.Fatalf("race-1 has %d certificates, want 1", issued)
	}
}

// checkESTFiles checks what the README's commands wrote against the data
// dir's CA: the chain, the certificate and its renewal.
func checkESTFiles(t *testing.T, g *gatehouse, dir string) {
	t.Helper()
	chain := pemCerts(t, filepath.Join(dir, "est-ca.pem"))
	want := pemCerts(t, g.caChain(t)) // root, intermediate
	if len(chain) != 2 || !chain[0].Equal(want[1]) || !chain[1].Equal(want[0]) {
		t.Fatalf("cacerts: %d certificates, want the intermediate and the root", len(chain))
	}
	first, renewed := pemCerts(t, filepath.Join(dir, "est.crt")), pemCerts(t, filepath.Join(dir, "est-new.crt"))
	if len(first) != 1 || len(renewed) != 1 {
		t.Fatalf("simpleenroll/simplereenroll answered %d and %d certificates, want 1 each", len(first), len(renewed))
	}
	if first[0].Subject.CommonName != "cam-7" || renewed[0].Subject.CommonName != "cam-7" ||
		first[0].SerialNumber.Cmp(renewed[0].SerialNumber) == 0 || first[0].PublicKey.(*ecdsa.PublicKey).Equal(renewed[0].PublicKey) {
		t.Fatalf("certificates: %s (%x) then %s (%x), want cam-7 twice with new serial and key",
			first[0].Subject, first[0].SerialNumber, renewed[0].Subject, renewed[0].SerialNumber)
	}
	for _, f := range []string{"est.crt", "est-new.crt"} {
		if o, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"), "-untrusted",
			filepath.Join(g.data, "ca", "intermediate_ca.crt"), filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Errorf("openssl verify %s against the data dir's root: %v %s", f, err, o)
		}
	}
	var dev apitypes.Device
	g.api(t, "GET", "/api/v1/devices/cam-7", nil, http.StatusOK, &dev)
	if dev.Profile != "line" || dev.Fleet != "default" {
		t.Errorf("device cam-7: %+v", dev)
	}
}

func estRefusals(t *testing.T, g *gatehouse, dir, tok, keygenTok string) {
	est := g.server + "/.well-known/est"
	good, bad := filepath.Join(dir, "good.p10"), filepath.Join(dir, "bad.p10")
	writeCSR(t, good, false)
	writeCSR(t, bad, true)
	p10 := []string{"-H", "Content-Type: application/pkcs10", "-H", "Content-Transfer-Encoding: base64"}
	post := func(auth []string, ct []string, body, url string) []string {
		return append(append(append(append([]string{}, auth...), ct...), "--data-binary", "@"+body), url)
	}
	otherTok := g.tokens(t, "other", 1)[0]
	freshTok := g.tokens(t, "line", 1)[0]
	var revoked apitypes.CertificateResult
	serial := pemCerts(t, filepath.Join(dir, "est-new.crt"))[0].SerialNumber.Text(16)
	g.api(t, "POST", "/api/v1/certificates/"+serial+"/revoke", map[string]string{"reason": "keyCompromise"}, http.StatusOK, &revoked)
	old := []string{"--cert", filepath.Join(dir, "est.crt"), "--key", filepath.Join(dir, "est.key")}
	rev := []string{"--cert", filepath.Join(dir, "est-new.crt"), "--key", filepath.Join(dir, "est-new.key")}
	basic := []string{"-u", "cam-8:" + tok}
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		code   string
	}{
		{"token used twice (new key)", post(basic, p10, good, est+"/line/simpleenroll"), 409, "token_used"},
		{"token used twice (no label)", post(basic, p10, good, est+"/simpleenroll"), 409, "token_used"},
		{"superseded certificate", post(old, p10, good, est+"/simplereenroll"), 401, "certificate_invalid"},
		{"revoked certificate", post(rev, p10, good, est+"/simplereenroll"), 401, "certificate_invalid"},
		{"reenroll without client certificate", post(nil, p10, good, est+"/simplereenroll"), 401, "unauthenticated"},
		{"no credentials", post(nil, p10, good, est+"/simpleenroll"), 401, "unauthenticated"},
		{"not a token", post([]string{"-u", ":ghb_nope"}, p10, good, est+"/simpleenroll"), 401, "token_invalid"},
		{"unknown token", post([]string{"-u", ":ghb_" + strings.Repeat("A", 43)}, p10, good, est+"/simpleenroll"), 401, "token_invalid"},
		{"token of another label", post([]string{"-u", ":" + otherTok}, p10, good, est+"/line/simpleenroll"), 403, "permission_denied"},
		{"wrong content type", post([]string{"-u", ":" + otherTok}, []string{"-H", "Content-Type: application/json"}, good, est+"/simpleenroll"), 400, "invalid_argument"},
		{"form content type", post([]string{"-u", ":" + otherTok}, nil, good, est+"/simpleenroll"), 400, "invalid_argument"},
		{"bad base64", post([]string{"-u", ":" + otherTok}, p10, filepath.Join(dir, "est.crt"), est+"/simpleenroll"), 400, "invalid_argument"},
		{"bad signature", post([]string{"-u", ":" + otherTok}, p10, bad, est+"/simpleenroll"), 400, "csr_invalid"},
		{"unknown label", []string{est + "/nope/cacerts"}, 404, "not_found"},
		{"serverkeygen off for the token's profile", post([]string{"-u", ":" + otherTok}, p10, good, est+"/serverkeygen"), 403, "permission_denied"},
		{"serverkeygen off under the label", post([]string{"-u", ":" + otherTok}, p10, good, est+"/other/serverkeygen"), 403, "permission_denied"},
		{"serverkeygen token of another label", post([]string{"-u", ":" + otherTok}, p10, good, est+"/line/serverkeygen"), 403, "permission_denied"},
		{"serverkeygen retried", post([]string{"-u", ":" + keygenTok}, p10, good, est+"/line/serverkeygen"), 409, "token_used"},
		{"serverkeygen bad signature", post([]string{"-u", ":" + otherTok}, p10, bad, est+"/serverkeygen"), 400, "csr_invalid"},
		{"serverkeygen without credentials", post(nil, p10, good, est+"/serverkeygen"), 401, "unauthenticated"},
		{"enroll without the CSR's serialNumber", post([]string{"-u", ":" + freshTok}, p10, good, est+"/line/simpleenroll"), 400, "csr_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.estCurl(t, dir, tc.args...)
			if r.status != tc.status || !strings.HasPrefix(r.body, tc.code+": ") || !strings.Contains(r.headers, "content-type: text/plain") {
				t.Fatalf("%d %q, want %d %s as text", r.status, r.body, tc.status, tc.code)
			}
			if (r.status == 401) != strings.Contains(r.headers, `www-authenticate: basic realm="gatehouse-est"`) {
				t.Errorf("401 and WWW-Authenticate disagree:\n%s", r.headers)
			}
		})
	}
	// The token of another label still enrolls under its own label, or none:
	// every refusal above left it unused.
	if r := g.estCurl(t, dir, post([]string{"-u", "cam-9:" + otherTok}, p10, good, est+"/simpleenroll")...); r.status != 200 {
		t.Fatalf("enroll with the other profile's token: %d %s", r.status, r.body)
	}
	if r := g.estCurl(t, dir, est+"/csrattrs"); r.status != 204 {
		t.Errorf("csrattrs without a label: %d, want 204", r.status)
	}
	if r := g.estCurl(t, dir, est+"/cacerts"); r.status != 200 ||
		!strings.Contains(r.headers, "content-type: application/pkcs7-mime; smime-type=certs-only") ||
		!strings.Contains(r.headers, "content-transfer-encoding: base64") {
		t.Errorf("cacerts without a label: %d\n%s", r.status, r.headers)
	}
}

// TestESTNeedsTLS: with the API on plain http, EST answers tls_required.
func TestESTNeedsTLS(t *testing.T) {
	g := newGatehouse(t, "GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123")
	g.serve(t)
	dir := t.TempDir()
	for _, args := range [][]string{{g.server + "/.well-known/est/cacerts"},
		{"-u", ":ghb_x", "-H", "Content-Type: application/pkcs10", "--data-binary", "AAAA", g.server + "/.well-known/est/simpleenroll"}} {
		if r := g.estCurl(t, dir, args...); r.status != http.StatusForbidden || !strings.HasPrefix(r.body, "tls_required: ") {
			t.Errorf("%v over http: %d %q, want 403 tls_required", args, r.status, r.body)
		}
	}
}
