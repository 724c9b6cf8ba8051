package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
)

// The delegated OCSP responder (RFC 6960 §4.2.2.2) signs OCSP answers with
// its own key, certified by the issuing intermediate for id-kp-OCSPSigning
// only. The intermediate key then never signs a response, and a response key
// that leaks is worth at most one responder-certificate lifetime.
//
// The responder key lives only in memory: every start (and every renewal)
// makes a new key and has the intermediate certify it. Nothing new is stored
// on disk, each replica holds its own responder certificate (clients accept
// any responder the issuing CA delegated to), and a copied data directory
// carries no responder key. The certificate carries id-pkix-ocsp-nocheck, as
// RFC 6960 §4.2.2.2.1 suggests for short-lived responder certificates, so
// clients do not ask about the responder's own status; the short validity is
// what bounds a compromise instead.

// DefaultOCSPSignerValidity is the lifetime of a responder certificate.
const DefaultOCSPSignerValidity = 7 * 24 * time.Hour

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// OCSPCredential is a responder key and the certificate the issuing CA gave it.
type OCSPCredential struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// OCSPSigner hands out the current responder credential and renews it once
// a third of its lifetime is left.
type OCSPSigner struct {
	ca *CA
	// retired, when set, is the retired intermediate this responder
	// answers for; its certificates are signed with that key directly,
	// since the embedded authority signs with the current one only.
	retired  *issuer
	validity time.Duration
	cur      atomic.Pointer[OCSPCredential]
	mu       sync.Mutex // serialises renewals
}

// NewOCSPSigner certifies a fresh responder key right away, so a CA that
// cannot delegate fails at start rather than on the first OCSP request.
// validity 0 means DefaultOCSPSignerValidity.
func (c *CA) NewOCSPSigner(ctx context.Context, validity time.Duration) (*OCSPSigner, error) {
	if validity == 0 {
		validity = DefaultOCSPSignerValidity
	}
	if validity < time.Hour {
		return nil, errors.New("ca: OCSP signer validity must be at least an hour")
	}
	return c.newOCSPSigner(ctx, validity, nil)
}

func (c *CA) newOCSPSigner(ctx context.Context, validity time.Duration, retired *issuer) (*OCSPSigner, error) {
	s := &OCSPSigner{ca: c, validity: validity, retired: retired}
	cred, err := s.issue(ctx)
	if err != nil {
		return nil, err
	}
	s.cur.Store(cred)
	return s, nil
}

// RetiredOCSPSigners returns a responder signer for each retired
// intermediate (Issuers()[1:], in that order): each answers for its own
// leaves until it expires.
func (c *CA) RetiredOCSPSigners(ctx context.Context, validity time.Duration) ([]*OCSPSigner, error) {
	if validity == 0 {
		validity = DefaultOCSPSignerValidity
	}
	out := make([]*OCSPSigner, 0, len(c.retired))
	for i := range c.retired {
		s, err := c.newOCSPSigner(ctx, validity, &c.retired[i])
		if err != nil {
			return nil, fmt.Errorf("retired intermediate %d: %w", c.retired[i].gen, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Issuer is the certificate whose leaves the responder answers for.
func (s *OCSPSigner) Issuer() *x509.Certificate {
	if s.retired != nil {
		return s.retired.cert
	}
	return s.ca.inter
}

// Current returns the credential to sign with. When the current certificate
// nears its end, one caller renews it while the others keep using the
// still-valid one; only an expired credential makes callers wait.
func (s *OCSPSigner) Current(ctx context.Context) (OCSPCredential, error) {
	cred := s.cur.Load()
	now := s.ca.cfg.Now()
	renewAt := cred.Cert.NotAfter.Add(-s.validity / 3)
	// A certificate already cut to the intermediate's end cannot be
	// outlasted: renewing it would certify a new key on every call.
	if now.Before(renewAt) || !cred.Cert.NotAfter.Before(s.Issuer().NotAfter) {
		return *cred, nil
	}
	expired := !now.Before(cred.Cert.NotAfter)
	if expired {
		s.mu.Lock()
	} else if !s.mu.TryLock() {
		return *cred, nil // someone else is renewing
	}
	defer s.mu.Unlock()
	if fresh := s.cur.Load(); fresh != cred {
		return *fresh, nil
	}
	next, err := s.issue(ctx)
	if err != nil {
		if expired {
			return OCSPCredential{}, fmt.Errorf("renew OCSP responder certificate: %w", err)
		}
		return *cred, nil // still valid; the next call tries again
	}
	s.cur.Store(next)
	return *next, nil
}

// ocspTemplate is the only shape a responder certificate can take, in the
// JSON form of a step-ca certificate template (see leafTemplate).
type ocspTemplate struct {
	Subject     ocspSubject    `json:"subject"`
	KeyUsage    []string       `json:"keyUsage"`
	ExtKeyUsage []string       `json:"extKeyUsage"`
	Extensions  []ocspTmplExt  `json:"extensions"`
	NotBefore   time.Time      `json:"notBefore"`
	NotAfter    time.Time      `json:"notAfter"`
	Basic       ocspBasicConst `json:"basicConstraints"`
}

type ocspSubject struct {
	CommonName   string   `json:"commonName"`
	Organization []string `json:"organization,omitempty"`
}

type ocspTmplExt struct {
	ID       string `json:"id"`
	Critical bool   `json:"critical"`
	Value    []byte `json:"value"`
}

type ocspBasicConst struct {
	IsCA bool `json:"isCA"`
}

// issue makes a P-256 key and has the embedded authority certify it with
// the intermediate, like a leaf, through the same sign path.
func (s *OCSPSigner) issue(ctx context.Context) (*OCSPCredential, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "OCSP responder"}}, key)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	c, inter := s.ca, s.Issuer()
	now := c.cfg.Now().Truncate(time.Second)
	notAfter := now.Add(s.validity)
	if notAfter.After(inter.NotAfter) {
		notAfter = inter.NotAfter
	}
	if s.retired != nil {
		return s.issueRetired(key, now.Add(-c.cfg.Backdate), notAfter)
	}
	tmpl, err := json.Marshal(ocspTemplate{
		Subject:     ocspSubject{CommonName: inter.Subject.CommonName + " OCSP Responder", Organization: inter.Subject.Organization},
		KeyUsage:    []string{"digitalSignature"},
		ExtKeyUsage: []string{"ocspSigning"},
		// The extension's value is an ASN.1 NULL.
		Extensions: []ocspTmplExt{{ID: "1.3.6.1.5.5.7.48.1.5", Value: []byte{0x05, 0x00}}},
		NotBefore:  now.Add(-c.cfg.Backdate).UTC(),
		NotAfter:   notAfter.UTC(),
	})
	if err != nil {
		return nil, err
	}
	chain, err := c.auth.SignWithContext(ctx, csr, provisioner.SignOptions{},
		leafOptions{json: tmpl}, provisioner.CertificateEnforcerFunc(enforceOCSPSigner))
	if err != nil {
		return nil, fmt.Errorf("sign OCSP responder certificate: %w", err)
	}
	return &OCSPCredential{Cert: chain[0], Signer: key}, nil
}

// issueRetired certifies a responder key with a retired intermediate's key,
// in the shape enforceOCSPSigner pins.
func (s *OCSPSigner) issueRetired(key *ecdsa.PrivateKey, notBefore, notAfter time.Time) (*OCSPCredential, error) {
	inter := s.retired.cert
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: inter.Subject.CommonName + " OCSP Responder", Organization: inter.Subject.Organization},
		NotBefore:    notBefore.UTC(), NotAfter: notAfter.UTC(),
		ExtraExtensions: []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
	if err := enforceOCSPSigner(tmpl); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, key.Public(), s.retired.key)
	if err != nil {
		return nil, fmt.Errorf("sign OCSP responder certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &OCSPCredential{Cert: cert, Signer: key}, nil
}

// enforceOCSPSigner pins the responder certificate to OCSP signing only:
// whatever the template said, it can never act as a CA, a TLS peer or a
// device.
func enforceOCSPSigner(cert *x509.Certificate) error {
	cert.IsCA = false
	cert.BasicConstraintsValid = true
	cert.KeyUsage = x509.KeyUsageDigitalSignature
	cert.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	cert.UnknownExtKeyUsage = nil
	cert.DNSNames, cert.EmailAddresses, cert.IPAddresses, cert.URIs = nil, nil, nil, nil
	cert.OCSPServer, cert.CRLDistributionPoints = nil, nil
	for _, e := range cert.ExtraExtensions {
		if e.Id.Equal(oidOCSPNoCheck) {
			return nil
		}
	}
	return errors.New("OCSP responder certificate lacks id-pkix-ocsp-nocheck")
}
