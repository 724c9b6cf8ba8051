// Package backup writes and reads Gatehouse backup archives: a gzip'd tar
// of the data directory's files (the database snapshot, the CA's
// certificates and keys exactly as they lie at rest, the hook secret, the
// config file) followed by a manifest with every file's size and SHA-256.
//
// The manifest comes last so that a backup is written in one pass; Extract
// checks every name against a fixed set before writing it, and the whole
// archive against the manifest before it reports success. A caller removes
// the directory when Extract fails.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// ManifestName is the archive's last entry.
const ManifestName = "MANIFEST.json"

// maxManifest bounds the manifest read into memory.
const maxManifest = 1 << 20

// maxFiles bounds the entries of an archive.
const maxFiles = 256

// DatabaseName is the SQLite snapshot's name in a backup.
const DatabaseName = "gatehouse.db"

// Extraction bounds, so that a small hostile (or damaged) archive cannot
// fill the disk: each file is refused beyond its bound from its header,
// before anything is written, and the whole archive once it has
// decompressed to more than MaxRatio times the compressed bytes read plus
// ratioSlack (deflate reaches about 1000:1 on zeros; a SQLite snapshot,
// keys and certificates stay far below 100:1).
const (
	// MaxFileSize bounds every file but the database: certificates, keys,
	// the hook secret, the config file.
	MaxFileSize = 4 << 20
	// MaxDatabaseSize bounds the SQLite snapshot (DatabaseName).
	MaxDatabaseSize = 256 << 30
	// MaxTotalSize bounds the archive's files together.
	MaxTotalSize = MaxDatabaseSize + maxFiles*MaxFileSize
	// MaxRatio bounds the bytes written per compressed byte read.
	MaxRatio   = 100
	ratioSlack = 16 << 20
)

// namePattern is every name a backup may hold: files directly in the data
// directory, in its ca/ directory, or the config file under config/.
var namePattern = regexp.MustCompile(`^((ca|config)/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether name may appear in a backup.
func ValidName(name string) bool { return namePattern.MatchString(name) && name != ManifestName }

// Manifest describes a backup.
type Manifest struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	Version   string    `json:"version"`
	// Database is "sqlite" (the snapshot is gatehouse.db) or "postgresql"
	// (not in the archive: pg_dump's).
	Database string `json:"database"`
	// CRLNumber is the stored CRL's number when the snapshot was taken.
	CRLNumber int64  `json:"crl_number"`
	Files     []File `json:"files"`
}

// File is one archived file.
type File struct {
	Name   string      `json:"name"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
}

// Source is a file to archive under Name.
type Source struct {
	Name string
	Path string
}

// Write archives the sources into w and appends the manifest m, whose
// Files it fills in. A source that changes size while it is read fails the
// backup.
func Write(w io.Writer, m Manifest, sources []Source) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	m.Format, m.Files = FormatVersion, nil
	for _, s := range sources {
		if !ValidName(s.Name) {
			return fmt.Errorf("backup: %q is not a valid archive name", s.Name)
		}
		f, err := writeFile(tw, s)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, f)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(data)), ModTime: m.CreatedAt}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	return errors.Join(tw.Close(), gz.Close())
}

func writeFile(tw *tar.Writer, s Source) (File, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, err
	}
	if err := checkSize(s.Name, st.Size()); err != nil {
		return File{}, err
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("backup: %s is not a regular file", s.Path)
	}
	mode := st.Mode().Perm()
	if err := tw.WriteHeader(&tar.Header{Name: s.Name, Mode: int64(mode), Size: st.Size(), ModTime: st.ModTime()}); err != nil {
		return File{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, st.Size()))
	if err != nil {
		return File{}, fmt.Errorf("backup %s: %w", s.Path, err)
	}
	if n != st.Size() {
		return File{}, fmt.Errorf("backup: %s changed size while it was read", s.Path)
	}
	return File{Name: s.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode}, nil
}

// Extract unpacks an archive into dir, which must exist, and returns its
// manifest once every file matched it. Files are created exclusively with
// their archived permissions, never wider than 0644 (keys stay 0600).
func Extract(r io.Reader, dir string) (Manifest, error) {
	in := &countingReader{r: r}
	gz, err := gzip.NewReader(in)
	if err != nil {
		return Manifest{}, bad("not a gzip stream: %v", err)
	}
	bud := &budget{in: in}
	tr := tar.NewReader(gz)
	got := map[string]File{}
	var m *Manifest
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, bad("damaged archive: %v", err)
		}
		if i > maxFiles || m != nil {
			return Manifest{}, bad("entries after the manifest, or more than %d", maxFiles)
		}
		if hdr.Typeflag != tar.TypeReg {
			return Manifest{}, bad("entry %q is not a regular file", hdr.Name)
		}
		if hdr.Name == ManifestName {
			if m, err = readManifest(tr, hdr.Size); err != nil {
				return Manifest{}, err
			}
			continue
		}
		f, err := extractFile(tr, hdr, dir, bud)
		if err != nil {
			return Manifest{}, err
		}
		if _, dup := got[f.Name]; dup {
			return Manifest{}, bad("entry %q appears twice", f.Name)
		}
		got[f.Name] = f
	}
	if m == nil {
		return Manifest{}, bad("no manifest: the archive is truncated")
	}
	return *m, check(*m, got)
}

func readManifest(r io.Reader, size int64) (*Manifest, error) {
	if size > maxManifest {
		return nil, bad("manifest larger than %d bytes", maxManifest)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(r, maxManifest)).Decode(&m); err != nil {
		return nil, bad("manifest: %v", err)
	}
	if m.Format != FormatVersion {
		return nil, bad("archive format %d, this gatehouse reads %d", m.Format, FormatVersion)
	}
	return &m, nil
}

func extractFile(r io.Reader, hdr *tar.Header, dir string, bud *budget) (File, error) {
	if !ValidName(hdr.Name) || hdr.Size < 0 {
		return File{}, bad("entry %q is not a name a backup holds", hdr.Name)
	}
	if err := checkSize(hdr.Name, hdr.Size); err != nil {
		return File{}, err
	}
	mode := fs.FileMode(hdr.Mode).Perm() & 0o644
	path := filepath.Join(dir, filepath.FromSlash(hdr.Name))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return File{}, err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return File{}, fmt.Errorf("restore %s: %w", hdr.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(bud, out, h), io.LimitReader(r, hdr.Size))
	if err = errors.Join(err, out.Sync(), out.Close()); err != nil {
		return File{}, fmt.Errorf("restore %s: %w", hdr.Name, err)
	}
	return File{Name: hdr.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode}, nil
}

// checkSize refuses a file beyond its bound (MaxFileSize, or
// MaxDatabaseSize for the database): Write does not make an archive that
// Extract would refuse.
func checkSize(name string, size int64) error {
	limit := int64(MaxFileSize)
	if name == DatabaseName {
		limit = MaxDatabaseSize
	}
	if size > limit {
		return bad("%s is larger (%d bytes) than a backup holds (%d)", name, size, limit)
	}
	return nil
}

// countingReader counts the compressed bytes read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// budget is an io.Writer placed first in each file's MultiWriter: it
// fails the write that would take the archive beyond MaxTotalSize or
// MaxRatio, before the file receives it.
type budget struct {
	in      *countingReader
	written int64
}

func (b *budget) Write(p []byte) (int, error) {
	b.written += int64(len(p))
	if b.written > MaxTotalSize {
		return 0, bad("the files add up to more than %d bytes", int64(MaxTotalSize))
	}
	if b.written > MaxRatio*b.in.n+ratioSlack {
		return 0, bad("decompresses to more than %d times its size: refused as a decompression bomb", MaxRatio)
	}
	return len(p), nil
}

// check compares what was extracted with what the manifest promises.
func check(m Manifest, got map[string]File) error {
	if len(m.Files) != len(got) {
		return bad("the manifest lists %d files, the archive holds %d", len(m.Files), len(got))
	}
	for _, want := range m.Files {
		f, ok := got[want.Name]
		if !ok {
			return bad("%s is missing from the archive", want.Name)
		}
		if f.Size != want.Size || f.SHA256 != want.SHA256 {
			return bad("%s does not match its checksum: the archive is damaged", want.Name)
		}
	}
	return nil
}

func bad(format string, args ...any) error {
	return fault.New(fault.InvalidArgument, "backup archive: "+format, args...)
}
