package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Key custody: the root operations that run away from the server. The
// root key signs only intermediates, so it can live on an offline machine;
// serve needs the root's certificate, never its key.

// CheckOutside refuses a path inside dir (after resolving symlinks of
// their existing parts): an "offline" key written into the directory the
// server reads would be online.
func CheckOutside(path, dir string) error {
	p, err1 := resolve(path)
	d, err2 := resolve(dir)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("resolve %s: %w", path, err)
	}
	rel, err := filepath.Rel(d, p)
	if err != nil || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))) {
		return fault.New(fault.InvalidArgument, "%s lies inside %s: an offline root key must be kept elsewhere", path, dir)
	}
	return nil
}

// resolve makes path absolute and resolves the symlinks of its longest
// existing prefix (the file itself usually does not exist yet).
func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var tail []string
	for cur := abs; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, tail...)...), nil
		}
		if cur == filepath.Dir(cur) {
			return abs, nil
		}
		tail = append([]string{filepath.Base(cur)}, tail...)
	}
}

// writePending writes the intermediate key and the CSR an external root
// signs; InstallIntermediate completes the CA.
func writePending(cfg InitConfig, key crypto.Signer) error {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: intermediateSubject(cfg.Name)}, key)
	if err != nil {
		return fmt.Errorf("create intermediate CSR: %w", err)
	}
	if err := writeKey(filepath.Join(cfg.Dir, IntermediateKeyFile), key, cfg.Passphrase); err != nil {
		return err
	}
	return writeExclusive(filepath.Join(cfg.Dir, IntermediateCSRFile),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

// Pending reports whether dir holds an intermediate key and CSR still
// waiting for its certificate.
func Pending(dir string) bool {
	_, errCSR := os.Stat(filepath.Join(dir, IntermediateCSRFile))
	_, errCert := os.Stat(filepath.Join(dir, IntermediateCertFile))
	return errCSR == nil && errors.Is(errCert, fs.ErrNotExist)
}

// RootOffline reports whether init wrote dir's root key elsewhere.
func RootOffline(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, RootOfflineFile))
	return err == nil
}

// RootMismatch: the root certificate in the CA directory is not the one
// the offline-root marker pins (CheckRootPin).
const RootMismatch fault.Code = "root_mismatch"

// rootPinPrefix starts the marker's line with the SHA-256 of the root
// certificate's SubjectPublicKeyInfo.
const rootPinPrefix = "root-spki-sha256: "

// rootMarker is the offline-root marker's content. It pins the root's key:
// the key scan (FindRootKey) looks for the key of the root certificate on
// disk, so a root certificate replaced under it would have the scan look
// for another key, and the server trust another root.
func rootMarker(root *x509.Certificate) []byte {
	pin := sha256.Sum256(root.RawSubjectPublicKeyInfo)
	return []byte("the root key is kept offline; serve refuses to run beside it\n" + rootPinPrefix + hex.EncodeToString(pin[:]) + "\n")
}

// CheckRootPin compares root (the root certificate in dir) with the key
// the offline-root marker pins: a mismatch, or a pin that does not parse,
// is RootMismatch. pinned is false when dir has no marker, or one written
// before markers carried the pin (nothing to compare with).
func CheckRootPin(dir string, root *x509.Certificate) (pinned bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, RootOfflineFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", RootOfflineFile, err)
	}
	var pins []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), rootPinPrefix); ok {
			pins = append(pins, v)
		}
	}
	if len(pins) == 0 {
		return false, nil
	}
	want, err := hex.DecodeString(pins[0])
	if len(pins) != 1 || err != nil || len(want) != sha256.Size {
		return true, fault.New(RootMismatch, "%s: the root pin is malformed", filepath.Join(dir, RootOfflineFile))
	}
	got := sha256.Sum256(root.RawSubjectPublicKeyInfo)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return true, fault.New(RootMismatch, "%s is not the root %s pins (its key's SHA-256 is %x, the pin %x): "+
			"the root certificate was replaced; put the original back", filepath.Join(dir, RootCertFile), RootOfflineFile, got, want)
	}
	return true, nil
}

// SignRequest is one root operation: certify an intermediate CSR.
type SignRequest struct {
	Root     *x509.Certificate
	RootKey  crypto.Signer
	CSR      *x509.CertificateRequest
	Validity time.Duration // default 5 years, never past the root's expiry
	Now      func() time.Time
}

// SignIntermediate certifies a CSR as an issuing CA under the root. Only
// the CSR's subject and public key are used: the certificate is always a
// path-length-0 CA for certificate and CRL signing.
func SignIntermediate(req SignRequest) (*x509.Certificate, error) {
	if req.Root == nil || req.RootKey == nil || req.CSR == nil {
		return nil, fault.New(fault.InvalidArgument, "root certificate, root key and CSR are required")
	}
	if !publicKeysEqual(req.Root.PublicKey, req.RootKey.Public()) {
		return nil, fault.New(fault.InvalidArgument, "the root key does not match the root certificate")
	}
	if !req.Root.IsCA || req.Root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fault.New(fault.InvalidArgument, "the root certificate is not a CA that may sign certificates")
	}
	if err := req.CSR.CheckSignature(); err != nil {
		return nil, fault.Wrap(err, fault.CSRInvalid, "intermediate CSR signature does not verify")
	}
	if !strongCAKey(req.CSR.PublicKey) {
		return nil, fault.New(fault.KeyTypeNotAllowed, "intermediate key type %q is not allowed (P-256, P-384, Ed25519, RSA ≥ 2048)", KeyType(req.CSR.PublicKey))
	}
	if req.CSR.Subject.CommonName == "" {
		return nil, fault.New(fault.CSRInvalid, "intermediate CSR has no common name")
	}
	if req.Validity <= 0 {
		req.Validity = 5 * 365 * 24 * time.Hour
	}
	if req.Now == nil {
		req.Now = time.Now
	}
	now := req.Now().Add(-time.Minute).Truncate(time.Second)
	if !now.Before(req.Root.NotAfter) {
		return nil, fault.New(fault.InvalidArgument, "the root certificate has expired")
	}
	return signIntermediate(req.Root, req.RootKey, req.CSR.PublicKey, req.CSR.Subject, now, req.Validity)
}

func strongCAKey(pub crypto.PublicKey) bool {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return k.N.BitLen() >= 2048
	}
	return KeyType(pub) != ""
}

// InstallIntermediate completes a pending CA (Pending): cert must certify
// the key init made and be signed by root, a self-signed CA certificate.
// certPEM may carry root after the intermediate; rootPEM may then be empty.
func InstallIntermediate(dir string, pass, certPEM, rootPEM []byte, now time.Time) error {
	if !Pending(dir) {
		return fault.New(fault.Conflict, "%s holds no intermediate waiting for its certificate", dir)
	}
	certs, err := ParseCertsPEM(append(append([]byte{}, certPEM...), rootPEM...))
	if err != nil {
		return err
	}
	inter, root := certs[0], certs[len(certs)-1]
	if len(certs) != 2 {
		return fault.New(fault.InvalidArgument, "want the intermediate and its root (2 certificates), got %d: the root must sign Gatehouse's intermediate directly", len(certs))
	}
	key, err := loadKey(filepath.Join(dir, IntermediateKeyFile), pass)
	if err != nil {
		return err
	}
	if err := checkInstall(inter, root, key.Public(), now); err != nil {
		return err
	}
	if err := writeCert(filepath.Join(dir, RootCertFile), root); err != nil {
		return err
	}
	if err := writeCert(filepath.Join(dir, IntermediateCertFile), inter); err != nil {
		return err
	}
	// The CSR has served; Pending is false from here on either way.
	return os.Remove(filepath.Join(dir, IntermediateCSRFile))
}

func checkInstall(inter, root *x509.Certificate, pub crypto.PublicKey, now time.Time) error {
	switch {
	case !publicKeysEqual(inter.PublicKey, pub):
		return fault.New(fault.InvalidArgument, "the certificate is not for this CA's intermediate key")
	case !inter.IsCA || inter.KeyUsage&x509.KeyUsageCertSign == 0 || inter.KeyUsage&x509.KeyUsageCRLSign == 0:
		return fault.New(fault.InvalidArgument, "the intermediate certificate must be a CA allowed to sign certificates and CRLs")
	case !root.IsCA || root.CheckSignatureFrom(root) != nil:
		return fault.New(fault.InvalidArgument, "the root certificate is not a self-signed CA")
	case now.Before(inter.NotBefore) || now.After(inter.NotAfter):
		return fault.New(fault.InvalidArgument, "the intermediate certificate is not valid now")
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return fault.Wrap(err, fault.InvalidArgument, "the intermediate is not signed by the root: %v", err)
	}
	return nil
}

// ParseCertsPEM parses every CERTIFICATE block; other blocks are refused.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := bytes.TrimSpace(data); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fault.New(fault.InvalidArgument, "not a PEM certificate")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "bad certificate: %v", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fault.New(fault.InvalidArgument, "no PEM certificate")
	}
	return out, nil
}

// ParseCSRPEM parses one PEM certificate request.
func ParseCSRPEM(data []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fault.New(fault.CSRInvalid, "not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fault.Wrap(err, fault.CSRInvalid, "bad certificate request: %v", err)
	}
	return csr, nil
}

// LoadKey decrypts a CA key file written by Init.
func LoadKey(path string, pass []byte) (crypto.Signer, error) { return loadKey(path, pass) }
