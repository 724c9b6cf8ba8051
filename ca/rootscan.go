package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/pemutil"
)

// Root-key scan: serve with ca.root_offline refuses to start while the
// root's private key sits anywhere under the data directory.

// MaxKeyScan is how much of each file FindRootKey reads: PEM keys are
// found at any offset within it, DER keys when the file is no larger. The
// database beside the keys is large; a key hidden beyond its first 16 MiB
// is not found.
const MaxKeyScan = 16 << 20

// maxScanDepth bounds the directories FindRootKey descends through, and
// maxScanFiles the files it looks at: a link to a large tree (say /) must
// not keep serve from starting for hours; beyond them the scan fails, and
// serve with it.
const (
	maxScanDepth = 64
	maxScanFiles = 100_000
)

// FindRootKey looks through dir (recursively, following symbolic links to
// files and to directories, each directory once) for the root's private
// key: a file named like the root key, or any private key, plain or
// encrypted under pass, PEM at any offset in the first MaxKeyScan bytes or
// DER (PKCS#8, SEC 1, PKCS#1), whose public key is the root's. It returns
// the first path found, or "". serve runs it when the root is meant to be
// offline.
func FindRootKey(dir string, root *x509.Certificate, pass []byte) (string, error) {
	s := rootScan{root: root, pass: pass, seen: map[string]bool{}}
	if err := s.dir(dir, 0); err != nil {
		return "", fmt.Errorf("look for the root key in %s: %w", dir, err)
	}
	return s.found, nil
}

// errFound stops the walk at the first key found.
var errFound = errors.New("found")

type rootScan struct {
	root  *x509.Certificate
	pass  []byte
	seen  map[string]bool // resolved directories walked: the loop guard
	files int
	found string
}

func (s *rootScan) dir(dir string, depth int) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil // a dangling link holds nothing
	}
	if s.seen[real] {
		return nil
	}
	s.seen[real] = true
	if depth > maxScanDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", dir, maxScanDepth)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		// Stat follows links: a link to the key, or to a directory holding
		// it, puts it within reach as much as a copy.
		st, err := os.Stat(path)
		switch {
		case err != nil:
			continue
		case st.IsDir():
			if err := s.dir(path, depth+1); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			if s.files++; s.files > maxScanFiles {
				return fmt.Errorf("more than %d files to look through", maxScanFiles)
			}
			if s.holdsRootKey(path) {
				s.found = path
			}
		}
		if s.found != "" {
			return nil
		}
	}
	return nil
}

func (s *rootScan) holdsRootKey(path string) bool {
	if filepath.Base(path) == RootKeyFile || filepath.Base(mustEval(path)) == RootKeyFile {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyScan+1))
	if err != nil {
		return false
	}
	if len(data) <= MaxKeyScan && s.derKeyIsRoot(data) {
		return true
	}
	return s.pemKeyIsRoot(data[:min(len(data), MaxKeyScan)])
}

// mustEval resolves path's symlinks, or returns it as it is.
func mustEval(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

func (s *rootScan) pemKeyIsRoot(data []byte) bool {
	for rest := data; ; {
		i := bytes.Index(rest, []byte("-----BEGIN"))
		if i < 0 {
			return false
		}
		b, after := pem.Decode(rest[i:])
		if b == nil {
			rest = rest[i+len("-----BEGIN"):]
			continue
		}
		rest = after
		if !strings.Contains(b.Type, "PRIVATE KEY") {
			continue
		}
		k, err := pemutil.ParseKey(pem.EncodeToMemory(b), pemutil.WithPassword(s.pass))
		if err == nil && s.isRoot(k) {
			return true
		}
	}
}

func (s *rootScan) derKeyIsRoot(der []byte) bool {
	if len(der) == 0 || der[0] != 0x30 { // a DER key is a SEQUENCE
		return false
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil && s.isRoot(k) {
		return true
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil && s.isRoot(k) {
		return true
	}
	k, err := x509.ParsePKCS1PrivateKey(der)
	return err == nil && s.isRoot(k)
}

func (s *rootScan) isRoot(k any) bool {
	signer, ok := k.(crypto.Signer)
	return ok && publicKeysEqual(s.root.PublicKey, signer.Public())
}
