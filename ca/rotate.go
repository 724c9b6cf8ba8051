package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Intermediate rotation. The issuing intermediate in intermediate_ca.crt
// and .key is always the current one: every new leaf comes from it. A
// rotation retires it to intermediate_ca.<n>.crt and .key (n is its
// generation: the first intermediate is 1) and puts a new key, certified by the same root, in its place. A
// retired intermediate keeps signing its own CRL and OCSP answers while it
// is valid: its leaves never outlive it (Issue caps them), so that covers
// every leaf it issued. Retired files whose certificate has expired are
// ignored at load and may be deleted.

var retiredPattern = regexp.MustCompile(`^intermediate_ca\.([1-9][0-9]{0,5})\.crt$`)

// RetiredCertFile and RetiredKeyFile name generation n's retired files.
func RetiredCertFile(n int) string { return fmt.Sprintf("intermediate_ca.%d.crt", n) }

// RetiredKeyFile names generation n's retired key.
func RetiredKeyFile(n int) string { return fmt.Sprintf("intermediate_ca.%d.key", n) }

// issuer is an intermediate with its key: the current one, or a retired one.
type issuer struct {
	gen  int // 1 for the first intermediate; a rotation's new one is max+1
	cert *x509.Certificate
	key  crypto.Signer
}

// retiredGens lists the generations of retired intermediates in dir, in
// ascending order.
func retiredGens(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []int
	for _, e := range entries {
		if m := retiredPattern.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			gens = append(gens, n)
		}
	}
	sort.Ints(gens)
	return gens, nil
}

// loadRetired loads the retired intermediates still valid at now, newest
// first; each must be signed by root and match its key.
func loadRetired(dir string, pass []byte, root *x509.Certificate, now time.Time) ([]issuer, error) {
	gens, err := retiredGens(dir)
	if err != nil {
		return nil, err
	}
	var out []issuer
	for i := len(gens) - 1; i >= 0; i-- {
		cert, err := loadCert(filepath.Join(dir, RetiredCertFile(gens[i])))
		if err != nil {
			return nil, err
		}
		if !now.Before(cert.NotAfter) {
			continue // no leaf of it is valid any more
		}
		key, err := loadKey(filepath.Join(dir, RetiredKeyFile(gens[i])), pass)
		if err != nil {
			return nil, err
		}
		if err := cert.CheckSignatureFrom(root); err != nil || !publicKeysEqual(cert.PublicKey, key.Public()) {
			return nil, fmt.Errorf("retired intermediate %d: not signed by the root, or not its key", gens[i])
		}
		out = append(out, issuer{gen: gens[i], cert: cert, key: key})
	}
	return out, nil
}

// currentGen is the current intermediate's generation: one above the
// newest retired one, 1 before any rotation.
func currentGen(dir string) (int, error) {
	gens, err := retiredGens(dir)
	if err != nil || len(gens) == 0 {
		return 1, err
	}
	return gens[len(gens)-1] + 1, nil
}

// RotateRequest asks for a new issuing intermediate.
type RotateRequest struct {
	Dir        string
	Passphrase []byte
	// RootKey signs the new intermediate: the root key from the CA dir, or
	// from offline storage.
	RootKey  crypto.Signer
	Validity time.Duration // default 5 years, never past the root
	Now      func() time.Time
	// KMS is the configured PKCS#11 URI of the issuing key (ca.kms), if
	// any: rotation with a token key is refused.
	KMS string
}

// errRotateKMS refuses a rotation of an issuing key held in a token: the
// new key would have to be made in the token and the old one kept there
// for its CRL and OCSP, which Rotate does not do yet.
var errRotateKMS = fault.New(fault.InvalidArgument,
	"ca rotate does not support an issuing key in a PKCS#11 token (ca.kms) yet: the intermediate would not rotate")

// Rotate retires the current intermediate and makes a new one (new P-256
// key, same root, subject with the generation appended). Servers pick it
// up when they start. It returns the new certificate.
func Rotate(req RotateRequest) (*x509.Certificate, error) {
	if req.Now == nil {
		req.Now = time.Now
	}
	dir := req.Dir
	if req.KMS != "" {
		return nil, errRotateKMS
	}
	if _, err := os.Stat(filepath.Join(dir, IntermediateKeyFile)); errors.Is(err, fs.ErrNotExist) && !Pending(dir) {
		// No key file beside the certificate: init --kms put it in a token,
		// whatever the config says now.
		return nil, errRotateKMS
	}
	if Pending(dir) || RootOffline(dir) && req.RootKey == nil {
		return nil, fault.New(fault.Conflict, "%s has no intermediate to rotate, or its root key was not given", dir)
	}
	root, err := loadCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	cur, err := loadCert(filepath.Join(dir, IntermediateCertFile))
	if err != nil {
		return nil, err
	}
	gen, err := currentGen(dir)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if req.RootKey == nil {
		if req.RootKey, err = loadKey(filepath.Join(dir, RootKeyFile), req.Passphrase); err != nil {
			return nil, err
		}
	}
	if !publicKeysEqual(root.PublicKey, req.RootKey.Public()) {
		return nil, fault.New(fault.InvalidArgument, "the root key does not match the root certificate")
	}
	if req.Validity <= 0 {
		req.Validity = 5 * 365 * 24 * time.Hour
	}
	subject := cur.Subject
	subject.CommonName = fmt.Sprintf("%s G%d", baseName(cur.Subject.CommonName, gen), gen+1)
	inter, err := signIntermediate(root, req.RootKey, key.Public(), subject, req.Now().Add(-time.Minute).Truncate(time.Second), req.Validity)
	if err != nil {
		return nil, err
	}
	return inter, installRotated(dir, gen, key, inter, req.Passphrase)
}

// baseName strips the " G<gen>" a previous rotation appended.
func baseName(cn string, gen int) string {
	suffix := fmt.Sprintf(" G%d", gen)
	if gen > 1 && len(cn) > len(suffix) && cn[len(cn)-len(suffix):] == suffix {
		return cn[:len(cn)-len(suffix)]
	}
	return cn
}

// installRotated copies the current files (generation gen) to their
// retired names (exclusively: a rotation never overwrites a retired
// issuer), then renames the new key and certificate over the current ones.
// The key goes first: a crash between the renames leaves a mismatch that
// New refuses, with the old intermediate safe under its retired name.
func installRotated(dir string, gen int, key crypto.Signer, inter *x509.Certificate, pass []byte) (err error) {
	var copies []string
	keyRenamed := false
	defer func() {
		// Failed before the renames: the current intermediate is unchanged,
		// and a copy of it under a retired name would count as a rotation.
		// Once the new key has replaced the current one, the retired copy
		// is the old key's only copy: it stays whatever failed after.
		if err != nil && !keyRenamed {
			for _, c := range copies {
				_ = os.Remove(c)
			}
		}
	}()
	for src, dst := range map[string]string{IntermediateKeyFile: RetiredKeyFile(gen), IntermediateCertFile: RetiredCertFile(gen)} {
		b, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		if src == IntermediateKeyFile {
			perm = 0o600
		}
		if err := writeExclusive(filepath.Join(dir, dst), b, perm); err != nil {
			return err
		}
		copies = append(copies, filepath.Join(dir, dst))
	}
	tmpKey, tmpCert := filepath.Join(dir, ".next.key"), filepath.Join(dir, ".next.crt")
	_ = os.Remove(tmpKey)
	_ = os.Remove(tmpCert)
	if err := writeKey(tmpKey, key, pass); err != nil {
		return err
	}
	if err := writeCert(tmpCert, inter); err != nil {
		return err
	}
	if err := renameFile(tmpKey, filepath.Join(dir, IntermediateKeyFile)); err != nil {
		return err
	}
	keyRenamed = true
	if err := renameFile(tmpCert, filepath.Join(dir, IntermediateCertFile)); err != nil {
		return fmt.Errorf("the new intermediate key is in place but not its certificate (rename %s to %s to finish; the old intermediate is kept as generation %d): %w",
			tmpCert, IntermediateCertFile, gen, err)
	}
	return nil
}

// renameFile is os.Rename; tests make it fail.
var renameFile = os.Rename
