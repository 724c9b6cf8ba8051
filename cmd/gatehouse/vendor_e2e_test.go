package main

import (
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// TestVendorCLI runs the README's vendor commands as written against the
// real binary over HTTPS, then the refusals an operator meets (a CRL
// rollback, a bad CSV line, a bad PEM file, a removed vendor), on both
// databases.
func TestVendorCLI(t *testing.T) {
	eachBackend(t, testVendorCLI)
}

func testVendorCLI(t *testing.T, g *gatehouse) {
	crt, key := serverCert(t, g.dir)
	g.serveTLS(t, crt, key)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "line", "key_types": []string{"P-256"},
		"validity": "2h", "renew_window": "2h"}, http.StatusCreated, nil)
	pki := idevidtest.NewVendor(t, "Acme")
	dir := t.TempDir()
	now := time.Now()
	older := pki.LeafCRL(t, []*big.Int{big.NewInt(9)}, now.Add(-time.Minute), now.Add(24*time.Hour))
	newer := pki.LeafCRL(t, []*big.Int{big.NewInt(9), big.NewInt(10)}, now, now.Add(24*time.Hour))
	for name, data := range map[string][]byte{
		"acme-root.pem": pki.AnchorsPEM(), "acme-int.pem": pki.IntermediatesPEM(), "acme-int.crl": idevidtest.CRLPEM(newer),
		"acme-older.crl": older, "acme-serials.csv": []byte("serial\n0a:0b\n0x1234\n"),
		"bad-serials.csv": []byte("serial\n0a:0b\nnot hex\n"), "not-a-cert.pem": []byte("hello\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	script := readmeBlock(t, "### Vendor IDevIDs")
	script = strings.ReplaceAll(script, "https://127.0.0.1:8443", g.server)
	script = strings.ReplaceAll(script, "api-tls.crt", crt)
	script = strings.ReplaceAll(script, "gatehouse vendor", g.bin+" vendor")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), g.env...), "GATEHOUSE_ADMIN_TOKEN="+g.adminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's vendor commands failed: %v\n%s\n--- script\n%s", err, out, script)
	}
	for _, want := range []string{
		"vendor default/acme registered", "anchor: " + pki.Root.Subject.String(), "intermediate: " + pki.Intermediate.Subject.String(),
		"CRL of " + pki.Intermediate.Subject.String() + " imported: number " + idevidtest.ParseCRL(t, newer).Number.String() + ", 2 entries",
		"allow-list of default/acme replaced: 2 serials", "acme\tprofile=line\tid_from=serial_number\tanchors=1\tcrls=1\tallowlist=2",
		`device id: "acme-" + the IDevID's serial_number`, "require allow-list: true (2 serials)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	vendor := func(args ...string) runResult {
		t.Helper()
		return g.adminCLI(t, append([]string{"vendor", args[0], "--server", g.server, "--ca-file", crt}, args[1:]...)...)
	}
	for _, c := range []struct {
		name string
		args []string
		says []string
	}{
		{"CRL rollback", []string{"crl", "--name", "acme", filepath.Join(dir, "acme-older.crl")}, []string{"(conflict)"}},
		{"bad CSV line", []string{"allowlist", "--name", "acme", filepath.Join(dir, "bad-serials.csv")}, []string{"line 3", "(invalid_argument)"}},
		{"bad PEM", []string{"add", "--name", "other", "--anchors", filepath.Join(dir, "not-a-cert.pem")}, []string{"line 1", "(invalid_argument)"}},
		{"no name", []string{"show"}, []string{"--name is required"}},
		{"no such vendor", []string{"show", "--name", "ghost"}, []string{"(not_found)"}},
	} {
		r := vendor(c.args...)
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", c.name, r.code, r.stdout, r.stderr)
		}
		for _, w := range c.says {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q: %s", c.name, w, r.stderr)
			}
		}
	}
	// The refusals changed nothing.
	r := vendor("show", "--name", "acme", "--json")
	var v apitypes.IDevIDVendor
	if err := json.Unmarshal([]byte(r.stdout), &v); r.code != 0 || err != nil {
		t.Fatalf("show --json: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if v.AllowListSize != 2 || len(v.CRLs) != 1 || v.CRLs[0].Entries != 2 || v.AnchorsPEM != string(pki.AnchorsPEM()) {
		t.Errorf("vendor after refusals: %+v", v)
	}
	if r := vendor("remove", "--name", "acme"); r.code != 0 || !strings.Contains(r.stdout, "vendor default/acme removed") {
		t.Fatalf("remove: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := vendor("list", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"vendors": []`) {
		t.Errorf("list after remove: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Audited, with counts, never the list.
	var audit apitypes.AuditEventList
	g.api(t, "GET", "/api/v1/audit?action=idevid_vendor.allowlist_replace", nil, http.StatusOK, &audit)
	if len(audit.Events) != 1 || audit.Events[0].Detail != "serials=2" {
		t.Errorf("allow-list audit: %+v", audit.Events)
	}
}
