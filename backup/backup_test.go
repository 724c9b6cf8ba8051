package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/backup"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// sources writes a small data directory and returns what a backup of it holds.
func sources(t testing.TB) []backup.Source {
	t.Helper()
	dir := t.TempDir()
	files := []struct {
		name, body string
		mode       os.FileMode
	}{
		{"gatehouse.db", "SQLite format 3\x00 and more", 0o600},
		{"ca/intermediate_ca.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----", 0o600},
		{"ca/root_ca.crt", "-----BEGIN CERTIFICATE-----", 0o644},
		{"hooks-secret", "abcdef\n", 0o600},
	}
	var out []backup.Source
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		out = append(out, backup.Source{Name: f.name, Path: p})
	}
	return out
}

// pass is the CA passphrase the test archives are authenticated with.
var pass = []byte("correct horse battery staple")

// verify is what a restore with the right passphrase checks.
var verify = backup.Verify{Passphrase: pass}

func archive(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	m := backup.Manifest{CreatedAt: time.Unix(1_800_000_000, 0).UTC(), Version: "test", Database: "sqlite", CRLNumber: 42}
	if err := backup.Write(&buf, m, sources(t), pass); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := backup.Extract(bytes.NewReader(archive(t)), dir, verify)
	if err != nil {
		t.Fatal(err)
	}
	if m.CRLNumber != 42 || m.Database != "sqlite" || len(m.Files) != 4 || m.Format != backup.FormatVersion {
		t.Fatalf("manifest = %+v", m)
	}
	for _, c := range []struct {
		name, body string
		mode       os.FileMode
	}{
		{"ca/intermediate_ca.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----", 0o600},
		{"ca/root_ca.crt", "-----BEGIN CERTIFICATE-----", 0o644},
		{"hooks-secret", "abcdef\n", 0o600},
	} {
		p := filepath.Join(dir, filepath.FromSlash(c.name))
		b, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || string(b) != c.body || st.Mode().Perm() != c.mode {
			t.Errorf("%s: %q %v %v, want %q %v", c.name, b, st.Mode().Perm(), err, c.body, c.mode)
		}
	}
	// Extract never overwrites.
	if _, err := backup.Extract(bytes.NewReader(archive(t)), dir, verify); err == nil {
		t.Fatal("extract over existing files succeeded")
	}
}

// rewrite rebuilds an archive's tar stream through edit, which sees each
// header and body and returns what to write (nil header: drop the entry).
func rewrite(t *testing.T, in []byte, edit func(*tar.Header, []byte) (*tar.Header, []byte)) []byte {
	t.Helper()
	gr, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gr)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(tr)
		if h, b := edit(h, body.Bytes()); h != nil {
			h.Size = int64(len(b))
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write(b)
		}
	}
	_ = tw.Close()
	_ = gw.Close()
	return out.Bytes()
}

func TestExtractRefuses(t *testing.T) {
	good := archive(t)
	cases := []struct {
		name string
		edit func(*tar.Header, []byte) (*tar.Header, []byte)
		want fault.Code
	}{
		{"tampered file", editEntry("ca/root_ca.crt", func(b []byte) []byte { return append([]byte("X"), b[1:]...) }), backup.Tampered},
		{"missing file", dropEntry("hooks-secret"), backup.Tampered},
		{"no manifest", dropEntry(backup.ManifestName), backup.Tampered},
		{"path traversal", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Name = "../escaped"
			}
			return h, b
		}, fault.InvalidArgument},
		{"nested dir", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Name = "ca/sub/x"
			}
			return h, b
		}, fault.InvalidArgument},
		{"symlink", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Typeflag, h.Linkname = tar.TypeSymlink, "/etc/passwd"
				return h, nil
			}
			return h, b
		}, fault.InvalidArgument},
		{"future format", editEntry(backup.ManifestName, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"format": 2`), []byte(`"format": 3`), 1)
		}), fault.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := backup.Extract(bytes.NewReader(rewrite(t, good, tc.edit)), dir, verify)
			if !fault.Is(err, tc.want) {
				t.Fatalf("Extract = %v, want %s", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escaped")); err == nil {
				t.Fatal("a file was written outside the target directory")
			}
		})
	}
}

// editEntry changes the body of the entry named name.
func editEntry(name string, fn func([]byte) []byte) func(*tar.Header, []byte) (*tar.Header, []byte) {
	return func(h *tar.Header, b []byte) (*tar.Header, []byte) {
		if h.Name == name {
			return h, fn(bytes.Clone(b))
		}
		return h, b
	}
}

// dropEntry leaves the entry named name out.
func dropEntry(name string) func(*tar.Header, []byte) (*tar.Header, []byte) {
	return func(h *tar.Header, b []byte) (*tar.Header, []byte) {
		if h.Name == name {
			return nil, nil
		}
		return h, b
	}
}

// flip flips one bit of the byte at i (from the end when negative).
func flip(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x01
		return b
	}
}

// TestExtractAuthenticates: whoever can write an archive but does not hold
// the CA passphrase cannot change what a restore puts back: one bit
// flipped in any file, the manifest or its MAC, a file's permissions, the
// MAC dropped, a downgrade to the unauthenticated format, a truncation, or
// the wrong passphrase: each is refused as backup_tampered.
func TestExtractAuthenticates(t *testing.T) {
	good := archive(t)
	type edit = func(*tar.Header, []byte) (*tar.Header, []byte)
	cases := []struct {
		name string
		edit edit
		v    backup.Verify
		want fault.Code
	}{
		{"MAC dropped", dropEntry(backup.MACName), verify, backup.Tampered},
		{"MAC bit flipped", editEntry(backup.MACName, flip(0)), verify, backup.Tampered},
		{"MAC not hex", editEntry(backup.MACName, func([]byte) []byte { return []byte("zz") }), verify, backup.Tampered},
		{"manifest CRL number", editEntry(backup.ManifestName, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"crl_number": 42`), []byte(`"crl_number": 43`), 1)
		}), verify, backup.Tampered},
		{"manifest last byte", editEntry(backup.ManifestName, flip(-1)), verify, backup.Tampered},
		{"manifest first byte", editEntry(backup.ManifestName, flip(0)), verify, backup.Tampered},
		{"manifest and file changed together", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			// An attacker who rewrites a file and its hash in the manifest
			// still cannot make the MAC.
			if h.Name == "hooks-secret" {
				return h, []byte("attacker\n")
			}
			if h.Name == backup.ManifestName {
				return h, bytes.Replace(b, []byte(hexSHA256("abcdef\n")), []byte(hexSHA256("attacker\n")), 1)
			}
			return h, b
		}, verify, backup.Tampered},
		{"key made world-readable", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "ca/intermediate_ca.key" {
				h.Mode = 0o644
			}
			return h, b
		}, verify, backup.Tampered},
		{"downgraded to format 1 with its MAC dropped", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == backup.MACName {
				return nil, nil
			}
			if h.Name == backup.ManifestName {
				return h, bytes.Replace(b, []byte(`"format": 2`), []byte(`"format": 1`), 1)
			}
			return h, b
		}, backup.Verify{Passphrase: pass, AcceptUnauthenticated: true}, backup.Tampered},
		{"wrong passphrase", func(h *tar.Header, b []byte) (*tar.Header, []byte) { return h, b },
			backup.Verify{Passphrase: []byte("not the passphrase at all")}, backup.Tampered},
		{"no passphrase", func(h *tar.Header, b []byte) (*tar.Header, []byte) { return h, b },
			backup.Verify{}, fault.InvalidArgument},
		{"entry after the MAC", func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == backup.MACName {
				h.Name = "hooks-secret"
			}
			return h, b
		}, verify, fault.InvalidArgument},
	}
	for _, name := range []string{"gatehouse.db", "ca/intermediate_ca.key", "ca/root_ca.crt", "hooks-secret"} {
		for _, at := range []int{0, -1} {
			cases = append(cases, struct {
				name string
				edit edit
				v    backup.Verify
				want fault.Code
			}{fmt.Sprintf("%s byte %d flipped", name, at), editEntry(name, flip(at)), verify, backup.Tampered})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := backup.Extract(bytes.NewReader(rewrite(t, good, tc.edit)), t.TempDir(), tc.v)
			if !fault.Is(err, tc.want) {
				t.Fatalf("Extract = %v, want %s", err, tc.want)
			}
		})
	}
	for _, n := range []int{len(good) / 4, len(good) / 3, len(good) / 2, len(good) - 40, 12} {
		if _, err := backup.Extract(bytes.NewReader(good[:n]), t.TempDir(), verify); !fault.Is(err, backup.Tampered) {
			t.Errorf("archive truncated to %d of %d bytes: %v, want %s", n, len(good), err, backup.Tampered)
		}
	}
}

func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// oldFormat turns an archive into one as written before the MAC (format
// 1): no MAC entry, no salt.
func oldFormat(t *testing.T, good []byte) []byte {
	t.Helper()
	return rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
		switch h.Name {
		case backup.MACName:
			return nil, nil
		case backup.ManifestName:
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["format"] = backup.FormatUnauthenticated
			delete(m, "mac_salt")
			out, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			return h, out
		}
		return h, b
	})
}

// TestExtractUnauthenticated: an archive written before the MAC is
// refused unless the caller accepts it, and then its files are still
// checked against its manifest.
func TestExtractUnauthenticated(t *testing.T) {
	old := oldFormat(t, archive(t))
	if _, err := backup.Extract(bytes.NewReader(old), t.TempDir(), verify); !fault.Is(err, backup.Unauthenticated) {
		t.Fatalf("old archive without the flag: %v, want %s", err, backup.Unauthenticated)
	}
	accept := backup.Verify{Passphrase: pass, AcceptUnauthenticated: true}
	m, err := backup.Extract(bytes.NewReader(old), t.TempDir(), accept)
	if err != nil || m.Format != backup.FormatUnauthenticated || m.CRLNumber != 42 {
		t.Fatalf("old archive with the flag: %+v, %v", m, err)
	}
	bad := rewrite(t, old, editEntry("hooks-secret", flip(0)))
	if _, err := backup.Extract(bytes.NewReader(bad), t.TempDir(), accept); !fault.Is(err, backup.Tampered) {
		t.Fatalf("old archive with a damaged file: %v, want %s", err, backup.Tampered)
	}
}

// FuzzExtract: no input panics Extract or writes outside its directory.
func FuzzExtract(f *testing.F) {
	f.Add(archive(f))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, _ = backup.Extract(bytes.NewReader(data), dir, verify)
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Fatalf("Extract wrote outside its directory: %v", entries)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// bomb is a gzip'd tar holding one entry of size zeros.
func bomb(t *testing.T, name string, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExtractBounds: a small archive that decompresses far beyond its
// size is refused before it fills the disk, and so is a file larger than
// its bound, before anything of it is written.
func TestExtractBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		entry    string
		size     int64
		maxWrite int64
	}{
		{"database decompression bomb", backup.DatabaseName, 256 << 20, 32 << 20},
		{"key file beyond MaxFileSize", "ca/intermediate_ca.key", backup.MaxFileSize + 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			arch := bomb(t, tc.entry, tc.size)
			_, err := backup.Extract(bytes.NewReader(arch), dir, verify)
			if !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("Extract of a %d-byte archive = %v, want invalid_argument", len(arch), err)
			}
			st, serr := os.Stat(filepath.Join(dir, filepath.FromSlash(tc.entry)))
			if serr == nil && (tc.maxWrite == 0 || st.Size() > tc.maxWrite) {
				t.Fatalf("a %d-byte archive wrote %d bytes of %s before it was refused (%v)", len(arch), st.Size(), tc.entry, err)
			}
		})
	}
}
