package idevid_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/idevid"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAllowListGolden parses a vendor-style export (header, comments,
// blanks, quoting, duplicates) and compares the serials with a golden file.
func TestAllowListGolden(t *testing.T) {
	f, err := os.Open("testdata/allowlist.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := idevid.ParseAllowList(f, 100)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Serial + "\n")
	}
	const golden = "testdata/allowlist.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestOpenSSLHardwareModule reads hardwareModuleName SANs that openssl
// wrote (testdata/openssl-hwmodule.cnf; `openssl req -x509`), not this
// package's test helper: the parser agrees with an independent encoder.
func TestOpenSSLHardwareModule(t *testing.T) {
	cases := []struct{ file, want string }{
		{"testdata/openssl-hwmodule-binary.pem", "00a1b2c3d4"},
		{"testdata/openssl-hwmodule-text.pem", "HW-0042"},
	}
	for _, c := range cases {
		raw, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := idevid.ParseCertificates(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := idevid.DeriveID(certs[0], idevid.FromHardwareModule, "")
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.file, got, err, c.want)
		}
		if dns, err := idevid.DeriveID(certs[0], idevid.FromSANDNS, ""); err != nil || dns != "dev.example" {
			t.Errorf("%s: DNS SAN %q, %v", c.file, dns, err)
		}
	}
}
