package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"time"

	"github.com/smallstep/certificates/db"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// authDB adapts the Gatehouse store to the smallstep authority's database
// interface, so the authority's revocation checks read the one Gatehouse
// database. It deliberately does not implement db.CertificateStorer: the
// enrollment service records each certificate in the same transaction that
// consumes the bootstrap token, which the authority's own store call could
// not join.
type authDB struct {
	store CertStore
	now   func() time.Time
}

var _ db.AuthDB = (*authDB)(nil)

// The authority names serials in decimal; the store keys them in hex.
func decimalToHex(sn string) (string, error) {
	n, ok := new(big.Int).SetString(sn, 10)
	if !ok {
		return "", errors.New("serial is not a decimal number")
	}
	return SerialHex(n), nil
}

func (a *authDB) IsRevoked(sn string) (bool, error) {
	serial, err := decimalToHex(sn)
	if err != nil {
		return false, err
	}
	c, err := a.store.GetCertificate(context.Background(), serial)
	if fault.Is(err, fault.NotFound) {
		// The authority asks about certificates it may not have issued
		// through Gatehouse (none today); unknown is not revoked here, and
		// every Gatehouse authorization checks the store itself.
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return c.RevokedAt != nil, nil
}

func (a *authDB) Revoke(rci *db.RevokedCertificateInfo) error {
	serial, err := decimalToHex(rci.Serial)
	if err != nil {
		return err
	}
	at := rci.RevokedAt
	if at.IsZero() {
		at = a.now()
	}
	return a.store.RevokeCertificate(context.Background(), serial, rci.ReasonCode, at)
}

func (a *authDB) GetCertificate(sn string) (*x509.Certificate, error) {
	serial, err := decimalToHex(sn)
	if err != nil {
		return nil, err
	}
	c, err := a.store.GetCertificate(context.Background(), serial)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(c.PEM))
	if block == nil {
		return nil, errors.New("stored certificate is not PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// UseToken is for the authority's one-time provisioner tokens, which
// Gatehouse does not use: bootstrap tokens are consumed by the enrollment
// transaction. Refusing keeps a stray provisioner token from ever working.
func (a *authDB) UseToken(string, string) (bool, error) { return false, nil }

func (a *authDB) IsSSHRevoked(string) (bool, error)          { return false, db.ErrNotImplemented }
func (a *authDB) RevokeSSH(*db.RevokedCertificateInfo) error { return db.ErrNotImplemented }
func (a *authDB) IsSSHHost(string) (bool, error)             { return false, db.ErrNotImplemented }
func (a *authDB) GetSSHHostPrincipals() ([]string, error)    { return nil, db.ErrNotImplemented }
func (a *authDB) Shutdown() error                            { return nil }
