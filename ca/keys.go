package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// File names inside the CA directory.
const (
	RootCertFile         = "root_ca.crt"
	RootKeyFile          = "root_ca.key"
	IntermediateCertFile = "intermediate_ca.crt"
	IntermediateKeyFile  = "intermediate_ca.key"
	// IntermediateCSRFile is the request init writes when an external or
	// offline root is to sign the intermediate (custody.go).
	IntermediateCSRFile = "intermediate_ca.csr"
	// RootOfflineFile marks a CA whose root key was written outside the
	// directory: serve then refuses to run while a root key lies within reach.
	RootOfflineFile = "root-offline"
)

// MinPassphraseLen is the shortest passphrase accepted for the CA keys.
const MinPassphraseLen = 12

// InitConfig describes a new CA hierarchy.
type InitConfig struct {
	// Dir receives the certificates and the encrypted keys.
	Dir string
	// Passphrase encrypts both private keys (PKCS#8, PBES2 with AES-256).
	Passphrase []byte
	// Name prefixes the CAs' common names; default "Gatehouse".
	Name string
	// RootValidity and IntermediateValidity default to 10 and 5 years.
	RootValidity         time.Duration
	IntermediateValidity time.Duration
	// RootKeyOut, when set, receives the root key instead of Dir: the
	// offline root. It must lie outside Dir, and Dir is marked so that
	// serve refuses to run beside a root key (RootOfflineFile).
	RootKeyOut string
	// RootPassphrase encrypts the root key; default Passphrase. An offline
	// root deserves its own: the online passphrase then opens nothing of it.
	RootPassphrase []byte
	// IntermediateFromCSR makes no root: Dir gets the intermediate key and
	// a CSR for an external root to sign (InstallIntermediate finishes).
	IntermediateFromCSR bool
	// KMS, when set, is the PKCS#11 URI under which the intermediate key
	// is generated inside the token (non-extractable); no key file is
	// written. KMSPin is the token's user PIN.
	KMS    string
	KMSPin string
}

func (c *InitConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "Gatehouse"
	}
	if c.RootValidity == 0 {
		c.RootValidity = 10 * 365 * 24 * time.Hour
	}
	if c.IntermediateValidity == 0 {
		c.IntermediateValidity = 5 * 365 * 24 * time.Hour
	}
	if len(c.RootPassphrase) == 0 {
		c.RootPassphrase = c.Passphrase
	}
}

// Initialized reports whether dir already holds a CA (or one waiting for
// its intermediate certificate).
func Initialized(dir string) bool {
	for _, f := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, IntermediateCSRFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Init creates a root CA and an issuing intermediate (ECDSA P-256, path
// length 0) in cfg.Dir. It refuses to touch a directory that holds any CA
// file. With RootKeyOut the root key goes there instead; with
// IntermediateFromCSR only the intermediate key and its CSR are made.
func Init(cfg InitConfig) error {
	// An offline root under the online passphrase is offline in name only:
	// whoever holds the server's passphrase opens any copy of it.
	if cfg.RootKeyOut != "" && (len(cfg.RootPassphrase) == 0 || bytes.Equal(cfg.RootPassphrase, cfg.Passphrase)) {
		return fault.New(fault.InvalidArgument, "an offline root key needs a passphrase of its own, not the CA passphrase (init --root-passphrase-file)")
	}
	cfg.setDefaults()
	if len(cfg.Passphrase) < MinPassphraseLen || len(cfg.RootPassphrase) < MinPassphraseLen {
		return fault.New(fault.InvalidArgument, "CA passphrase must be at least %d bytes", MinPassphraseLen)
	}
	if cfg.KMS != "" && cfg.IntermediateFromCSR {
		return fault.New(fault.InvalidArgument, "an intermediate in a PKCS#11 token cannot be signed by an external root yet")
	}
	if cfg.RootKeyOut != "" && cfg.IntermediateFromCSR {
		return fault.New(fault.InvalidArgument, "an external root (intermediate from CSR) has no root key to write")
	}
	if cfg.RootKeyOut != "" {
		if err := CheckOutside(cfg.RootKeyOut, cfg.Dir); err != nil {
			return err
		}
	}
	if Initialized(cfg.Dir) {
		return fault.New(fault.AlreadyExists, "%s already holds a CA; refusing to overwrite it", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("create CA dir: %w", err)
	}
	interKey, closeKey, err := newIssuingKey(cfg)
	if err != nil {
		return err
	}
	defer closeKey()
	if cfg.IntermediateFromCSR {
		return writePending(cfg, interKey)
	}
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	rootKey, root, err := newRoot(cfg, now)
	if err != nil {
		return err
	}
	inter, err := signIntermediate(root, rootKey, interKey.Public(), intermediateSubject(cfg.Name), now, cfg.IntermediateValidity)
	if err != nil {
		return err
	}
	return writeHierarchy(cfg, rootKey, root, interKey, inter)
}

// newIssuingKey generates the intermediate key: in the token (KMS), or in
// memory, to be written encrypted.
func newIssuingKey(cfg InitConfig) (crypto.Signer, func() error, error) {
	if cfg.KMS != "" {
		k, err := createKMSKey(cfg.KMS, cfg.KMSPin)
		return k.signer, k.close, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k, func() error { return nil }, err
}

func intermediateSubject(name string) pkix.Name {
	return pkix.Name{CommonName: name + " Issuing CA", Organization: []string{name}}
}

func newRoot(cfg InitConfig, now time.Time) (crypto.Signer, *x509.Certificate, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cfg.Name + " Root CA", Organization: []string{cfg.Name}},
		NotBefore:             now,
		NotAfter:              now.Add(cfg.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	root, err := x509util.CreateCertificate(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create root CA: %w", err)
	}
	return rootKey, root, nil
}

// signIntermediate certifies pub as an issuing CA (path length 0) under
// root, never past the root's own expiry.
func signIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, subject pkix.Name,
	notBefore time.Time, validity time.Duration) (*x509.Certificate, error) {
	notAfter := notBefore.Add(validity)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	interTmpl := &x509.Certificate{
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	inter, err := x509util.CreateCertificate(interTmpl, root, pub, rootKey)
	if err != nil {
		return nil, fmt.Errorf("create intermediate CA: %w", err)
	}
	return inter, nil
}

// writeHierarchy writes keys first: a crash part-way leaves no certificate
// without its key.
func writeHierarchy(cfg InitConfig, rootKey crypto.Signer, root *x509.Certificate, interKey crypto.Signer, inter *x509.Certificate) error {
	rootKeyPath := filepath.Join(cfg.Dir, RootKeyFile)
	if cfg.RootKeyOut != "" {
		rootKeyPath = cfg.RootKeyOut
		// The marker comes before the key leaves: a crash in between must
		// not leave an offline-root CA that serve would not guard.
		if err := writeExclusive(filepath.Join(cfg.Dir, RootOfflineFile), rootMarker(root), 0o644); err != nil {
			return err
		}
	}
	if err := writeKey(rootKeyPath, rootKey, cfg.RootPassphrase); err != nil {
		return err
	}
	if cfg.KMS == "" {
		if err := writeKey(filepath.Join(cfg.Dir, IntermediateKeyFile), interKey, cfg.Passphrase); err != nil {
			return err
		}
	}
	if err := writeCert(filepath.Join(cfg.Dir, RootCertFile), root); err != nil {
		return err
	}
	return writeCert(filepath.Join(cfg.Dir, IntermediateCertFile), inter)
}

func writeKey(path string, key crypto.Signer, pass []byte) error {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true), pemutil.WithPassword(pass))
	if err != nil {
		return fmt.Errorf("encrypt key: %w", err)
	}
	return writeExclusive(path, pem.EncodeToMemory(block), 0o600)
}

func writeCert(path string, c *x509.Certificate) error {
	return writeExclusive(path, EncodePEM(c), 0o644)
}

func writeExclusive(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// EncodePEM encodes certificates as concatenated PEM blocks.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func loadCert(path string) (*x509.Certificate, error) {
	c, err := pemutil.ReadCertificate(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return c, nil
}

func loadKey(path string, pass []byte) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	k, err := pemutil.ParseKey(b, pemutil.WithPassword(pass))
	if err != nil {
		// Wrong passphrase and corrupt file look the same to PBES2; say both.
		return nil, fault.Wrap(err, fault.InvalidArgument, "cannot decrypt %s: wrong CA passphrase or damaged key", filepath.Base(path))
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// SerialHex formats a certificate serial as Gatehouse stores and shows it:
// lowercase hex, no separators.
func SerialHex(n *big.Int) string { return n.Text(16) }

// Fingerprint is cert's SHA-256 over its DER in lower-case hex, as the
// store keeps it (store.Certificate.Fingerprint).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseSerialHex parses a serial written by SerialHex.
func ParseSerialHex(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, errors.New("serial is not a positive hex number")
	}
	return n, nil
}
