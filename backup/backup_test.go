package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
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

func archive(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	m := backup.Manifest{CreatedAt: time.Unix(1_800_000_000, 0).UTC(), Version: "test", Database: "sqlite", CRLNumber: 42}
	if err := backup.Write(&buf, m, sources(t)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := backup.Extract(bytes.NewReader(archive(t)), dir)
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
	if _, err := backup.Extract(bytes.NewReader(archive(t)), dir); err == nil {
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
	cases := map[string]func(*tar.Header, []byte) (*tar.Header, []byte){
		"tampered file": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "ca/root_ca.crt" {
				return h, append([]byte("X"), b[1:]...)
			}
			return h, b
		},
		"missing file": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				return nil, nil
			}
			return h, b
		},
		"no manifest": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == backup.ManifestName {
				return nil, nil
			}
			return h, b
		},
		"path traversal": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Name = "../escaped"
			}
			return h, b
		},
		"nested dir": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Name = "ca/sub/x"
			}
			return h, b
		},
		"symlink": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "hooks-secret" {
				h.Typeflag, h.Linkname = tar.TypeSymlink, "/etc/passwd"
				return h, nil
			}
			return h, b
		},
		"future format": func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == backup.ManifestName {
				return h, bytes.Replace(b, []byte(`"format": 1`), []byte(`"format": 2`), 1)
			}
			return h, b
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := backup.Extract(bytes.NewReader(rewrite(t, good, edit)), dir)
			if !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("Extract = %v, want invalid_argument", err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escaped")); err == nil {
				t.Fatal("a file was written outside the target directory")
			}
		})
	}
	if _, err := backup.Extract(bytes.NewReader(good[:len(good)/2]), t.TempDir()); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("truncated archive: %v", err)
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
		_, _ = backup.Extract(bytes.NewReader(data), dir)
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
			_, err := backup.Extract(bytes.NewReader(arch), dir)
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
