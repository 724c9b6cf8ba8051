package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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
}

// Initialized reports whether dir already holds a CA.
func Initialized(dir string) bool {
	for _, f := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Init creates a root CA and an issuing intermediate (ECDSA P-256, path
// length 0) in cfg.Dir. It refuses to touch a directory that holds any CA file.
func Init(cfg InitConfig) error {
	cfg.setDefaults()
	if len(cfg.Passphrase) < MinPassphraseLen {
		return fault.New(fault.InvalidArgument, "CA passphrase must be at least %d bytes", MinPassphraseLen)
	}
	if Initialized(cfg.Dir) {
		return fault.New(fault.AlreadyExists, "%s already holds a CA; refusing to overwrite it", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("create CA dir: %w", err)
	}
	now := time.Now().Add(-time.Minute).Truncate(time.Second)

	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
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
		return fmt.Errorf("create root CA: %w", err)
	}

	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	interTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cfg.Name + " Issuing CA", Organization: []string{cfg.Name}},
		NotBefore:             now,
		NotAfter:              now.Add(cfg.IntermediateValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	inter, err := x509util.CreateCertificate(interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("create intermediate CA: %w", err)
	}

	// Keys first: a crash part-way leaves no certificate without its key.
	if err := writeKey(filepath.Join(cfg.Dir, RootKeyFile), rootKey, cfg.Passphrase); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(cfg.Dir, IntermediateKeyFile), interKey, cfg.Passphrase); err != nil {
		return err
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

// ParseSerialHex parses a serial written by SerialHex.
func ParseSerialHex(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, errors.New("serial is not a positive hex number")
	}
	return n, nil
}
