// Package backup writes and reads Gatehouse backup archives: a gzip'd tar
// of the data directory's files (the database snapshot, the CA's
// certificates and keys exactly as they lie at rest, the hook secret, the
// config file) followed by a manifest with every file's size and SHA-256,
// and an HMAC-SHA256 of the manifest (MACName) keyed from the CA
// passphrase (auth.go).
//
// The manifest comes last so that a backup is written in one pass; Extract
// checks every name against a fixed set before writing it, and the whole
// archive against the authenticated manifest before it reports success:
// whoever can write the archive but does not know the passphrase cannot
// change what a restore puts back (a revocation removed, a device active
// again). A caller removes the directory when Extract fails.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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

// FormatVersion is the archive format this package writes: format 2
// archives end with MACName and are refused without it.
const FormatVersion = 2

// FormatUnauthenticated is the format of archives written before the MAC:
// Extract reads them only with Verify.AcceptUnauthenticated.
const FormatUnauthenticated = 1

// ManifestName is the manifest's entry, followed by MACName (format 2).
const ManifestName = "MANIFEST.json"

// MACName is the archive's last entry: the hex HMAC-SHA256 of the
// manifest entry's bytes exactly as archived.
const MACName = "MANIFEST.mac"

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
func ValidName(name string) bool {
	return namePattern.MatchString(name) && name != ManifestName && name != MACName
}

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
	// MACSalt is the salt of the MAC key's derivation (macKey); absent in
	// format 1.
	MACSalt []byte `json:"mac_salt,omitempty"`
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
// Files it fills in, and the manifest's MAC under a key derived from
// passphrase (the CA passphrase: a restore needs it anyway). A source that
// changes size while it is read fails the backup.
func Write(w io.Writer, m Manifest, sources []Source, passphrase []byte) error {
	if len(passphrase) == 0 {
		return errors.New("backup: a passphrase is required to authenticate the archive")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	key, err := macKey(passphrase, salt)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	m.Format, m.Files, m.MACSalt = FormatVersion, nil, salt
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
	mac := []byte(hex.EncodeToString(manifestMAC(key, data)))
	if err := tw.WriteHeader(&tar.Header{Name: MACName, Mode: 0o600, Size: int64(len(mac)), ModTime: m.CreatedAt}); err != nil {
		return err
	}
	if _, err := tw.Write(mac); err != nil {
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
// manifest once the manifest's MAC verified under v and every file matched
// the manifest. Files are created exclusively with their archived
// permissions, never wider than 0644 (keys stay 0600). Integrity failures
// carry the code Tampered, a format 1 archive without
// v.AcceptUnauthenticated Unauthenticated.
func Extract(r io.Reader, dir string, v Verify) (Manifest, error) {
	in := &countingReader{r: r}
	gz, err := gzip.NewReader(in)
	if err != nil {
		return Manifest{}, bad("not a gzip stream: %v", err)
	}
	bud := &budget{in: in}
	tr := tar.NewReader(gz)
	got := map[string]File{}
	var raw, mac []byte // the manifest as archived; its MAC entry
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fault.New(Tampered, "backup archive: damaged or truncated: %v", err)
		}
		if i > maxFiles+1 || mac != nil {
			return Manifest{}, bad("entries after the manifest's MAC, or more than %d", maxFiles)
		}
		if hdr.Typeflag != tar.TypeReg {
			return Manifest{}, bad("entry %q is not a regular file", hdr.Name)
		}
		switch {
		case hdr.Name == ManifestName && raw == nil:
			raw, err = readEntry(tr, hdr.Size, maxManifest)
		case hdr.Name == MACName && raw != nil:
			mac, err = readEntry(tr, hdr.Size, 2*macLen+1)
		case hdr.Name == MACName:
			err = tampered("the manifest's MAC without the manifest: the archive was altered")
		case raw != nil:
			err = bad("entry %q after the manifest", hdr.Name)
		default:
			var f File
			if f, err = extractFile(tr, hdr, dir, bud); err == nil {
				if _, dup := got[f.Name]; dup {
					err = bad("entry %q appears twice", f.Name)
				}
				got[f.Name] = f
			}
		}
		if err != nil {
			return Manifest{}, err
		}
	}
	if raw == nil {
		return Manifest{}, fault.New(Tampered, "backup archive: no manifest: the archive is truncated")
	}
	m, err := parseManifest(raw)
	if err != nil {
		return Manifest{}, err
	}
	if err := authenticate(m, raw, mac, v); err != nil {
		return Manifest{}, err
	}
	return m, check(m, got)
}

// readEntry reads an entry of at most limit bytes.
func readEntry(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, bad("%s is larger than %d bytes", ManifestName+" or "+MACName, limit)
	}
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil || int64(len(b)) != size {
		return nil, fault.New(Tampered, "backup archive: damaged or truncated manifest: %v", err)
	}
	return b, nil
}

// parseManifest decodes the manifest; its MAC is checked after, with the
// salt it names, and nothing in it is used before.
func parseManifest(raw []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, tampered("the manifest does not parse (the archive was altered or damaged): %v", err)
	}
	if m.Format != FormatVersion && m.Format != FormatUnauthenticated {
		return Manifest{}, bad("archive format %d, this gatehouse reads %d and %d", m.Format, FormatUnauthenticated, FormatVersion)
	}
	return m, nil
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
	n, err := io.Copy(io.MultiWriter(bud, out, h), damaged{io.LimitReader(r, hdr.Size)})
	if err == nil && n != hdr.Size {
		err = tampered("%s is shorter than its header says", hdr.Name)
	}
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

// damaged gives a read error within a file (a truncated or corrupt
// stream) the code Tampered; write errors (the disk, budget) keep theirs.
type damaged struct{ r io.Reader }

func (d damaged) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fault.Wrap(err, Tampered, "backup archive: damaged or truncated: %v", err)
	}
	return n, err
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

// check compares what was extracted with what the manifest promises:
// every file, its size, SHA-256 and permissions (a key made readable by
// all is as much a change as a key replaced).
func check(m Manifest, got map[string]File) error {
	if len(m.Files) != len(got) {
		return tampered("the manifest lists %d files, the archive holds %d", len(m.Files), len(got))
	}
	for _, want := range m.Files {
		f, ok := got[want.Name]
		if !ok {
			return tampered("%s is missing from the archive", want.Name)
		}
		if f.Size != want.Size || subtle.ConstantTimeCompare([]byte(f.SHA256), []byte(want.SHA256)) != 1 {
			return tampered("%s does not match its SHA-256 in the manifest: the archive was altered or damaged", want.Name)
		}
		if f.Mode != want.Mode.Perm()&0o644 {
			return tampered("%s has permissions %v, the manifest says %v: the archive was altered", want.Name, f.Mode, want.Mode.Perm()&0o644)
		}
	}
	return nil
}

func tampered(format string, args ...any) error {
	return fault.New(Tampered, "backup archive: "+format, args...)
}

func bad(format string, args ...any) error {
	return fault.New(fault.InvalidArgument, "backup archive: "+format, args...)
}
