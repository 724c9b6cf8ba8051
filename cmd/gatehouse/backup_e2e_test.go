package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestBackupRestore: a backup taken while serve runs is restored into a
// new data directory; the restored server recognises the old device and
// its certificate verifies against the restored root, token state is as
// it was (a used token stays used, an unused one enrolls), and the CRL
// number goes above every list the old server published, also those
// after the backup. On PostgreSQL the database is pg_dump's: the backup
// holds keys and config, and the restore runs against the same database.
func TestBackupRestore(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			var env []string
			if backend == "postgres" {
				env = append(env, "GATEHOUSE_DATABASE_DSN="+testdb.Postgres(t))
			}
			backupRestore(t, env)
		})
	}
}

func backupRestore(t *testing.T, env []string) {
	g := newGatehouse(t, env...)
	g.serve(t)
	toks := g.tokens(t, "default", 4)
	old := g.enroll(t, toks[0], "before-backup")
	revoked := g.enroll(t, toks[1], "to-revoke")

	file := filepath.Join(t.TempDir(), "gatehouse.backup")
	r := g.run(t, nil, "backup", "--data-dir", g.data, "--out", file)
	if r.code != 0 {
		t.Fatalf("backup: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	names := archiveNames(t, file)
	for _, secret := range []string{"ca-passphrase", "ca/root_ca.key"} {
		if strings.Contains(names, secret) != (secret == "ca/root_ca.key") {
			t.Errorf("backup holds %s: %v (names %s)", secret, strings.Contains(names, secret), names)
		}
	}
	if pg := len(env) > 0; strings.Contains(names, "gatehouse.db") == pg || strings.Contains(r.stdout, "pg_dump") != pg {
		t.Errorf("database in the backup (postgres %v): names %s\n%s", pg, names, r.stdout)
	}
	// After the backup the live server publishes more lists, revoking a
	// device the backup holds and one enrolled (with a token unused in the
	// backup) after it.
	later := g.enroll(t, toks[3], "after-backup")
	for _, id := range []string{"to-revoke", "after-backup"} {
		if rv := g.adminCLI(t, "revoke", "device", id, "--server", g.server); rv.code != 0 {
			t.Fatalf("revoke: %d\n%s", rv.code, rv.stderr)
		}
	}
	lastCRL := filepath.Join(t.TempDir(), "last.crl")
	lastNumber := fetchCRL(t, g, lastCRL)
	g.stop()

	restored := filepath.Join(t.TempDir(), "restored")
	pass := []string{"--ca-passphrase-file", filepath.Join(g.data, "ca-passphrase")}
	if r := g.run(t, nil, append([]string{"restore", "--in", file, "--data-dir", g.data, "--accept-data-loss"}, pass...)...); r.code == 0 ||
		!strings.Contains(r.stderr, "already_exists") {
		t.Fatalf("restore over a data dir in use: %d\n%s", r.code, r.stderr)
	}
	if r := g.run(t, nil, append([]string{"restore", "--in", file, "--data-dir", restored}, pass...)...); r.code == 0 ||
		!strings.Contains(r.stderr, "--accept-data-loss") {
		t.Fatalf("restore without --last-crl: %d\n%s", r.code, r.stderr)
	}
	refuseForged(t, g, file, restored, append([]string{"--last-crl", lastCRL}, pass...))
	r = g.run(t, nil, append([]string{"restore", "--in", file, "--data-dir", restored, "--last-crl", lastCRL}, pass...)...)
	// On PostgreSQL the restore runs against the live database (the test
	// restores no pg_dump): it knows the later device and token already.
	want := []string{"1 certificates of the backup marked revoked, 1 issued after it", "2 unused bootstrap tokens marked used"}
	if len(env) > 0 {
		want = []string{"2 certificates of the backup marked revoked, 0 issued after it", "1 unused bootstrap tokens marked used"}
	}
	if r.code != 0 || !strings.Contains(r.stdout, want[0]) || !strings.Contains(r.stdout, want[1]) {
		t.Fatalf("restore: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	h := g.restoredInto(t, restored)
	h.serve(t, "GATEHOUSE_CA_PASSPHRASE_FILE="+filepath.Join(g.data, "ca-passphrase"))
	newCRL := filepath.Join(t.TempDir(), "new.crl")
	if n := fetchCRL(t, h, newCRL); n <= lastNumber {
		t.Fatalf("the restored CRL number %d is not above the last published %d", n, lastNumber)
	}
	listed := crlSerials(t, newCRL)
	for _, d := range []testDevice{revoked, later} {
		if s := readCert(t, d.cert).SerialNumber.Text(16); !listed[s] {
			t.Errorf("the restored CRL does not list %s (%s), revoked after the backup", d.id, s)
		}
	}
	if s := readCert(t, old.cert).SerialNumber.Text(16); listed[s] {
		t.Errorf("the restored CRL lists %s, never revoked", old.id)
	}
	// OCSP agrees with the CRL, also for the certificate the restored
	// database never saw (on SQLite only in restored_revocations).
	inter := readCert(t, filepath.Join(restored, "ca", "intermediate_ca.crt"))
	restoredRoot := filepath.Join(restored, "ca", "root_ca.crt")
	ocspCheck(t, h, later, inter, restoredRoot, ": revoked")
	ocspCheck(t, h, revoked, inter, restoredRoot, ": revoked")
	ocspCheck(t, h, old, inter, restoredRoot, ": good")
	verifyDevice(t, old, filepath.Join(restored, "ca", "root_ca.crt"))
	var dev struct {
		Status string `json:"status"`
	}
	h.api(t, "GET", "/api/v1/devices/"+old.id, nil, http.StatusOK, &dev)
	if dev.Status != "active" {
		t.Fatalf("restored device %s is %q", old.id, dev.Status)
	}
	used := h.run(t, nil, "enroll", "--server", h.server, "--token", toks[0], "--out", t.TempDir(), "--json")
	if used.code != 1 || !strings.Contains(used.stdout, `"code": "token_used"`) {
		t.Fatalf("a token used before the backup: %d\n%s", used.code, used.stdout)
	}
	// A token unused in the backup may have been spent since: refused.
	for _, tok := range toks[2:] {
		spent := h.run(t, nil, "enroll", "--server", h.server, "--token", tok, "--out", t.TempDir(), "--json")
		if spent.code != 1 || !strings.Contains(spent.stdout, `"code": "token_used"`) {
			t.Fatalf("a token unused in the backup: %d\n%s", spent.code, spent.stdout)
		}
	}
	h.enroll(t, h.tokens(t, "default", 1)[0], "after-restore")
	// An archive from before the MAC restores with the flag, and says so.
	old1 := filepath.Join(t.TempDir(), "old.backup")
	rewriteArchive(t, file, old1, toFormat1(t))
	r = g.run(t, nil, append([]string{"restore", "--in", old1, "--data-dir", filepath.Join(t.TempDir(), "r1"),
		"--accept-data-loss", "--accept-unauthenticated"}, pass...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "WARNING: "+old1+" has no MAC") {
		t.Fatalf("restore of a format 1 archive with --accept-unauthenticated: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// refuseForged: restore refuses, with a stable code and nothing left in
// the target directory, an archive changed by someone without the CA
// passphrase (a file, the manifest, the MAC, a truncation), the right
// archive under the wrong passphrase, and an archive from before the MAC
// without --accept-unauthenticated.
func refuseForged(t *testing.T, g *gatehouse, file, dir string, args []string) {
	t.Helper()
	names, _ := readArchive(t, file)
	member := names[len(names)-3] // the last file before the manifest and its MAC
	wrongPass := filepath.Join(t.TempDir(), "wrong-passphrase")
	if err := os.WriteFile(wrongPass, []byte("not-the-ca-passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flipFirst := func(name string) func(string, []byte) ([]byte, bool) {
		return func(n string, b []byte) ([]byte, bool) {
			if n == name {
				b = append([]byte{b[0] ^ 1}, b[1:]...)
			}
			return b, true
		}
	}
	for _, tc := range []struct {
		name string
		edit func(string, []byte) ([]byte, bool)
		pass string
		want string
	}{
		{"file " + member + " changed", flipFirst(member), "", "backup_tampered"},
		{"manifest changed", flipFirst("MANIFEST.json"), "", "backup_tampered"},
		{"MAC changed", flipFirst("MANIFEST.mac"), "", "backup_tampered"},
		{"MAC dropped", func(n string, b []byte) ([]byte, bool) { return b, n != "MANIFEST.mac" }, "", "backup_tampered"},
		{"wrong passphrase", nil, wrongPass, "backup_tampered"},
		{"format 1 without --accept-unauthenticated", toFormat1(t), "", "backup_unauthenticated"},
	} {
		in := file
		if tc.edit != nil {
			in = filepath.Join(t.TempDir(), "forged.backup")
			rewriteArchive(t, file, in, tc.edit)
		}
		a := append([]string{"restore", "--in", in, "--data-dir", dir}, args...)
		if tc.pass != "" {
			a = append(a, "--ca-passphrase-file", tc.pass) // the last one counts
		}
		r := g.run(t, nil, a...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("%s: restore = %d, want %s\n%s%s", tc.name, r.code, tc.want, r.stdout, r.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s: the refused restore left %d entries in %s", tc.name, len(entries), dir)
		}
	}
	// Truncated: the manifest and its MAC are gone.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short.backup")
	if err := os.WriteFile(short, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if r := g.run(t, nil, append([]string{"restore", "--in", short, "--data-dir", dir}, args...)...); r.code == 0 ||
		!strings.Contains(r.stderr, "backup_tampered") {
		t.Fatalf("truncated archive: restore = %d\n%s", r.code, r.stderr)
	}
}

// toFormat1 makes an archive look as written before the MAC: no MAC
// entry, a format 1 manifest without the salt.
func toFormat1(t *testing.T) func(string, []byte) ([]byte, bool) {
	return func(name string, b []byte) ([]byte, bool) {
		switch name {
		case "MANIFEST.mac":
			return nil, false
		case "MANIFEST.json":
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["format"] = 1
			delete(m, "mac_salt")
			out, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return out, true
		}
		return b, true
	}
}

// rewriteArchive copies a backup archive through edit, which returns an
// entry's new body and whether to keep it; headers are kept.
func rewriteArchive(t *testing.T, in, out string, edit func(name string, body []byte) ([]byte, bool)) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gw)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		b, keep := edit(h.Name, b)
		if !keep {
			continue
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), gw.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// crlSerials reads a DER CRL and returns its serials in hex.
func crlSerials(t *testing.T, path string) map[string]bool {
	t.Helper()
	der, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range l.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// restoredInto is a gatehouse for another data directory with the same
// credentials, on fresh ports.
func (g *gatehouse) restoredInto(t *testing.T, data string) *gatehouse {
	h := *g
	h.data, h.dir = data, t.TempDir()
	h.apiAddr, h.hooksAddr, h.diagAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	h.logs, h.stop = &logBuffer{}, func() {}
	return &h
}

// fetchCRL saves the server's CRL to path and returns its number.
func fetchCRL(t *testing.T, g *gatehouse, path string) int64 {
	t.Helper()
	resp, err := g.client.Get(g.server + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /crl: %d %v", resp.StatusCode, err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
	return l.Number.Int64()
}

func archiveNames(t *testing.T, file string) string {
	names, _ := readArchive(t, file)
	return strings.Join(names, " ")
}

// readArchive returns the names in a backup archive, in order, and their
// contents.
func readArchive(t *testing.T, file string) ([]string, map[string]string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names, files[h.Name] = append(names, h.Name), string(b)
	}
	return names, files
}

// TestSecondRestoreKeepsCRLNumberRising: restoring the same backup a second
// time (the first restored server gone, no --last-crl) numbers the CRL
// above the lists the first restored server published.
func TestSecondRestoreKeepsCRLNumberRising(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t)
	file := filepath.Join(t.TempDir(), "gatehouse.backup")
	if r := g.run(t, nil, "backup", "--data-dir", g.data, "--out", file); r.code != 0 {
		t.Fatalf("backup: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.stop()
	pass := filepath.Join(g.data, "ca-passphrase")
	restore := func() *gatehouse {
		dir := filepath.Join(t.TempDir(), "restored")
		r := g.run(t, nil, "restore", "--in", file, "--data-dir", dir, "--ca-passphrase-file", pass, "--accept-data-loss")
		if r.code != 0 || !strings.Contains(r.stdout, "WARNING: restored without --last-crl") {
			t.Fatalf("restore: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		h := g.restoredInto(t, dir)
		h.serve(t, "GATEHOUSE_CA_PASSPHRASE_FILE="+pass)
		return h
	}
	h := restore()
	for i, tok := range h.tokens(t, "default", 2) {
		id := string(rune('a' + i))
		h.enroll(t, tok, id)
		if rv := h.adminCLI(t, "revoke", "device", id, "--server", h.server); rv.code != 0 {
			t.Fatalf("revoke: %d\n%s", rv.code, rv.stderr)
		}
	}
	high := fetchCRL(t, h, filepath.Join(t.TempDir(), "high.crl"))
	h.stop()
	k := restore()
	if n := fetchCRL(t, k, filepath.Join(t.TempDir(), "low.crl")); n <= high {
		t.Errorf("the second restore publishes CRL %d, not above the %d the first one published", n, high)
	}
}

// TestBackupRedactsConfigSecrets: with the CA passphrase in the config
// file, the backup's copy of the file holds everything else but not it,
// and the command says what it removed.
func TestBackupRedactsConfigSecrets(t *testing.T) {
	g := newGatehouse(t)
	pass, err := os.ReadFile(filepath.Join(g.data, "ca-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(pass))
	cfg := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte("log:\n  level: debug\nca:\n  passphrase: "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.tgz")
	r := g.run(t, nil, "backup", "--config", cfg, "--data-dir", g.data, "--out", file)
	if r.code != 0 || !strings.Contains(r.stdout, "removed from the config file's copy (set them again after a restore): ca.passphrase") {
		t.Fatalf("backup: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, files := readArchive(t, file)
	copied := files["config/gatehouse.yaml"]
	if strings.Contains(copied, secret) || !strings.Contains(copied, "debug") {
		t.Errorf("the backup's config copy:\n%s", copied)
	}
}

// TestBackupCADirOddities: a key left by a rotation that did not finish is
// skipped with a warning instead of failing every backup; a symlink in the
// CA directory is refused by name instead of silently left out.
func TestBackupCADirOddities(t *testing.T) {
	g := newGatehouse(t)
	caDir := filepath.Join(g.data, "ca")
	if err := os.WriteFile(filepath.Join(caDir, ".next.key"), []byte("half a rotation"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.tgz")
	r := g.run(t, nil, "backup", "--data-dir", g.data, "--out", file)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: not backed up: "+filepath.Join(caDir, ".next.key")) {
		t.Fatalf("backup beside a leftover .next.key: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if names := archiveNames(t, file); strings.Contains(names, ".next") || !strings.Contains(names, "ca/intermediate_ca.key") {
		t.Fatalf("backup holds %s", names)
	}
	link := filepath.Join(caDir, "extra.crt")
	if err := os.Symlink(filepath.Join(caDir, "root_ca.crt"), link); err != nil {
		t.Fatal(err)
	}
	r = g.run(t, nil, "backup", "--data-dir", g.data, "--out", filepath.Join(t.TempDir(), "c.tgz"))
	if r.code == 0 || !strings.Contains(r.stderr, link) || !strings.Contains(r.stderr, "not a regular file") {
		t.Fatalf("backup with a symlink in ca/: %d\n%s", r.code, r.stderr)
	}
}

// TestBackupNeedsTheKeysPassphrase: the archive's MAC is keyed from the CA
// passphrase, so a backup under one that does not open the CA keys (which
// the restore could not check) is refused, and writes no file.
func TestBackupNeedsTheKeysPassphrase(t *testing.T) {
	g := newGatehouse(t)
	wrong := filepath.Join(t.TempDir(), "wrong-passphrase")
	if err := os.WriteFile(wrong, []byte("not-the-ca-passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "b.tgz")
	r := g.run(t, nil, "backup", "--data-dir", g.data, "--out", file, "--ca-passphrase-file", wrong)
	if r.code == 0 || !strings.Contains(r.stderr, "wrong CA passphrase") {
		t.Fatalf("backup under a wrong passphrase: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the refused backup left %s: %v", file, err)
	}
}
