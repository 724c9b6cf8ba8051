package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
)

// TestESTClientCLI runs `gatehouse enroll --est` with a bootstrap token and
// `gatehouse renew --est` against the real binary over HTTPS, with the
// README's commands, on both databases: the files enroll writes, a spent
// token, a superseded certificate, and serverkeygen refused without a file
// written.
func TestESTClientCLI(t *testing.T) {
	eachBackend(t, testESTClientCLI)
}

func testESTClientCLI(t *testing.T, g *gatehouse) {
	crt, key := serverCert(t, g.dir)
	g.serveTLS(t, crt, key)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "line", "key_types": []string{"P-256", "P-384"},
		"validity": "2h", "renew_window": "2h", "device_id_from": "csr_serial_number"}, http.StatusCreated, nil)
	tok := g.tokens(t, "line", 3)
	estURL := g.server + "/.well-known/est/line"

	// The README's commands, as written: enroll cam-7 with a token, renew.
	dir := filepath.Join(g.dir, "cam-7")
	script := readmeBlock(t, "### EST from the Gatehouse CLI")
	script = strings.NewReplacer("https://gatehouse.example:8443", g.server, "api-tls.crt", crt, "/etc/device", dir).Replace(script)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", "TOKEN="+tok[0]+"\n"+script)
	cmd.Env = append(append(os.Environ(), g.env...), "PATH="+filepath.Dir(g.bin)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's EST client commands failed: %v\n%s\n--- script\n%s", err, out, script)
	} else if strings.Contains(string(out), tok[0]) {
		t.Error("enroll printed the token")
	}
	checkDeviceDir(t, g, dir, "cam-7")
	var certs apitypes.CertificateList
	g.api(t, "GET", "/api/v1/devices/cam-7/certificates", nil, http.StatusOK, &certs)
	if len(certs.Certificates) != 2 {
		t.Fatalf("cam-7 has %d certificates after enroll and renew, want 2", len(certs.Certificates))
	}

	// --json, and --ca for --ca-file.
	dir = filepath.Join(g.dir, "cam-9")
	r := g.run(t, nil, "enroll", "--est", estURL, "--token", tok[1], "--device-id", "cam-9", "--out", dir, "--ca", crt, "--json")
	if r.code != 0 {
		t.Fatalf("enroll --est: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var res enrollResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	first := checkDeviceDir(t, g, dir, "cam-9")
	if res.DeviceID != "cam-9" || res.Identity != ca.IdentityURI("default", "cam-9") || res.Serial != ca.SerialHex(first.SerialNumber) {
		t.Fatalf("enroll --est printed %+v for certificate %s", res, first.Subject)
	}
	var dev apitypes.Device
	g.api(t, "GET", "/api/v1/devices/cam-9", nil, http.StatusOK, &dev)
	if dev.Profile != "line" {
		t.Errorf("cam-9's profile is %q, want line", dev.Profile)
	}

	// Without --key-type, a profile that does not take P-256 gets the key
	// type its csrattrs name.
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "p384", "key_types": []string{"P-384"},
		"validity": "2h", "renew_window": "2h", "device_id_from": "csr_serial_number"}, http.StatusCreated, nil)
	p384 := filepath.Join(g.dir, "cam-384")
	if r := g.run(t, nil, "enroll", "--est", g.server+"/.well-known/est/p384", "--token", g.tokens(t, "p384", 1)[0],
		"--device-id", "cam-384", "--out", p384, "--ca-file", crt); r.code != 0 {
		t.Fatalf("enroll --est under p384: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if pub, ok := checkDeviceDir(t, g, p384, "cam-384").PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Fatal("enroll --est under a P-384 profile did not make a P-384 key")
	}

	refused := func(name, want string, out string, args ...string) {
		t.Helper()
		r := g.run(t, nil, append(args, "--json")...)
		if r.code != 1 || !strings.Contains(r.stdout, `"code": "`+want+`"`) {
			t.Errorf("%s: %d %s%s, want code %s", name, r.code, r.stdout, r.stderr, want)
		}
		if _, err := os.Stat(filepath.Join(out, deviceKeyFile)); err == nil {
			t.Errorf("%s: wrote %s", name, deviceKeyFile)
		}
	}
	other := filepath.Join(g.dir, "cam-8")
	refused("token used twice", "token_used", other, "enroll", "--est", estURL, "--token", tok[0], "--out", other, "--ca-file", crt)
	refused("no --ca-file", "invalid_argument", other, "enroll", "--est", estURL, "--token", tok[2], "--out", other)
	refused("server not trusted", "unavailable", other, "enroll", "--est", estURL, "--token", tok[2], "--out", other,
		"--ca-file", filepath.Join(g.data, "ca", "root_ca.crt"))
	refused("--est over http", "invalid_argument", other, "enroll", "--est", strings.Replace(estURL, "https:", "http:", 1),
		"--token", tok[2], "--out", other, "--ca-file", crt)
	refused("unknown label", "not_found", other, "enroll", "--est", g.server+"/.well-known/est/nope", "--token", tok[2], "--out", other, "--ca-file", crt)
	// serverkeygen is off for the profile: the server's refusal comes
	// through with its code, and nothing is written.
	refused("serverkeygen off", "permission_denied", other, "enroll", "--est", estURL, "--token", tok[2], "--server-keygen",
		"--device-id", "cam-8", "--out", other, "--ca-file", crt)
	// On for it: the key comes from the server, P-384 as asked, and the
	// files are the ones enroll writes, the certificate for that key.
	if r := g.adminCLI(t, "profile", "update", "line", "--server-keygen", "--server", g.server, "--ca-file", crt); r.code != 0 {
		t.Fatalf("profile update: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := g.run(t, nil, "enroll", "--est", estURL, "--token", tok[2], "--server-keygen", "--key-type", "P-384",
		"--device-id", "cam-8", "--out", other, "--ca-file", crt); r.code != 0 {
		t.Fatalf("enroll --est --server-keygen: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if pub, ok := checkDeviceDir(t, g, other, "cam-8").PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Error("serverkeygen with --key-type P-384 did not give a P-384 key")
	}

	// Re-enroll over mutual TLS with a new key.
	oldCert, _ := os.ReadFile(filepath.Join(dir, deviceCertFile))
	oldKey, _ := os.ReadFile(filepath.Join(dir, deviceKeyFile))
	r = g.run(t, nil, "renew", "--est", estURL, "--dir", dir, "--ca-file", crt, "--key-type", "P-384", "--json")
	if r.code != 0 {
		t.Fatalf("renew --est: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	renewed := checkDeviceDir(t, g, dir, "cam-9")
	newKey, _ := os.ReadFile(filepath.Join(dir, deviceKeyFile))
	if pub, ok := renewed.PublicKey.(*ecdsa.PublicKey); renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || bytes.Equal(oldKey, newKey) ||
		!ok || pub.Curve != elliptic.P384() {
		t.Fatal("renew --est did not replace certificate and key with a P-384 one")
	}
	if _, err := os.Stat(filepath.Join(dir, deviceKeyFile+".new")); err == nil {
		t.Error("renew --est left device.key.new behind")
	}
	// The superseded certificate cannot re-enroll again.
	old := filepath.Join(g.dir, "old")
	_ = os.MkdirAll(old, 0o700)
	_ = os.WriteFile(filepath.Join(old, deviceCertFile), oldCert, 0o644)
	_ = os.WriteFile(filepath.Join(old, deviceKeyFile), oldKey, 0o600)
	again := g.run(t, nil, "renew", "--est", estURL, "--dir", old, "--ca-file", crt, "--json")
	if again.code != 1 || !strings.Contains(again.stdout, `"code": "certificate_invalid"`) {
		t.Fatalf("renew --est with a superseded certificate: %d %s%s", again.code, again.stdout, again.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(old, deviceCertFile)); !bytes.Equal(b, oldCert) {
		t.Error("a refused re-enrollment changed device.crt")
	}
	if r := g.run(t, nil, "renew", "--est", estURL, "--server", g.server, "--dir", dir, "--ca-file", crt); r.code == 0 {
		t.Error("renew with --est and --server succeeded")
	}
	estRenewRace(t, g, estURL, crt, dir)
}

// estRenewRace runs several `renew --est` at once with one certificate and
// key, each in a copy of the device directory: the server re-enrolls the
// certificate once; the losers are refused and write nothing.
func estRenewRace(t *testing.T, g *gatehouse, estURL, crt, dir string) {
	t.Helper()
	const n = 6
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(g.dir, "race", strconv.Itoa(i))
		if err := os.MkdirAll(dirs[i], 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{deviceCertFile, deviceKeyFile, deviceChainFile} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dirs[i], f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, deviceCertFile))
	results := make([]runResult, n)
	testrace.Run(n, func(i int) {
		cmd := exec.Command(g.bin, "renew", "--est", estURL, "--dir", dirs[i], "--ca-file", crt, "--json")
		cmd.Env = append(os.Environ(), g.env...)
		var out strings.Builder
		cmd.Stdout = &out
		err := cmd.Run()
		results[i] = runResult{stdout: out.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			results[i].code = ee.ExitCode()
		} else if err != nil {
			results[i].code = -1
		}
	})
	won, winner := 0, ""
	for i, r := range results {
		switch {
		case r.code == 0:
			won++
			winner = dirs[i]
		case r.code == 1 && strings.Contains(r.stdout, `"code": "certificate_invalid"`):
			if b, _ := os.ReadFile(filepath.Join(dirs[i], deviceCertFile)); !bytes.Equal(b, before) {
				t.Errorf("a refused renew --est changed %s", dirs[i])
			}
		default:
			t.Errorf("racing renew --est: %d %s", r.code, r.stdout)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing renew --est with one certificate succeeded, want 1", won, n)
	}
	// Without --key-type the new key has the current one's type (P-384 since
	// the renewal above).
	if pub, ok := checkDeviceDir(t, g, winner, "cam-9").PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Error("renew --est without --key-type changed the key type")
	}
	final := checkDeviceDir(t, g, winner, "cam-9")
	var certs apitypes.CertificateList
	g.api(t, "GET", "/api/v1/devices/cam-9/certificates", nil, http.StatusOK, &certs)
	active := 0
	for _, c := range certs.Certificates {
		if c.Status == "active" {
			active++
			if c.Serial != ca.SerialHex(final.SerialNumber) {
				t.Errorf("the active certificate is %s, the directory holds %s", c.Serial, ca.SerialHex(final.SerialNumber))
			}
		}
	}
	if len(certs.Certificates) != 3 || active != 1 {
		t.Fatalf("cam-9 has %d certificates (%d active), want 3 (1 active)", len(certs.Certificates), active)
	}
}

// checkDeviceDir checks what enroll (or renew) --est wrote: a 0600 key, a
// certificate for it issued to id that openssl verifies against the data
// dir's root with the written chain, and that chain (intermediate, root).
func checkDeviceDir(t *testing.T, g *gatehouse, dir, id string) *x509.Certificate {
	t.Helper()
	if st, err := os.Stat(filepath.Join(dir, deviceKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device.key: %v, want mode 0600", err)
	}
	certs := pemCerts(t, filepath.Join(dir, deviceCertFile))
	chain := pemCerts(t, filepath.Join(dir, deviceChainFile))
	want := pemCerts(t, g.caChain(t)) // root, intermediate
	if len(certs) != 1 || certs[0].Subject.CommonName != id || len(chain) != 2 || !chain[0].Equal(want[1]) || !chain[1].Equal(want[0]) {
		t.Fatalf("%s: %d certificates, chain of %d", dir, len(certs), len(chain))
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(g.data, "ca", "root_ca.crt"), "-untrusted",
		filepath.Join(dir, deviceChainFile), filepath.Join(dir, deviceCertFile)).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v %s", err, out)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, deviceCertFile), filepath.Join(dir, deviceKeyFile)); err != nil {
		t.Fatalf("device.key is not device.crt's key: %v", err)
	}
	return certs[0]
}
