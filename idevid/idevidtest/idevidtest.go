// Package idevidtest makes vendor PKIs for tests: a vendor root, an
// intermediate that issues IDevIDs, device certificates with the subject and
// SAN forms idevid derives ids from, vendor CRLs, and PEM files that curl and
// openssl read. ECDSA P-256 throughout; tests only (keys are not protected).
package idevidtest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// OIDHardwareModuleName is id-on-hardwareModuleName (RFC 4108).
var OIDHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}

// VendorPKI is a vendor's root and the intermediate that issues its IDevIDs.
type VendorPKI struct {
	Name            string
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer

	crlNumber atomic.Int64
}

// NewVendor makes a vendor PKI named name: root "<name> Root CA" and
// intermediate "<name> IDevID CA", valid from an hour ago for 20 years.
func NewVendor(t testing.TB, name string) *VendorPKI {
	t.Helper()
	v := &VendorPKI{Name: name, RootKey: newKey(t), IntermediateKey: newKey(t)}
	now := time.Now()
	v.Root = create(t, &x509.Certificate{
		SerialNumber:          randSerial(t),
		Subject:               pkix.Name{CommonName: name + " Root CA", Organization: []string{name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, v.RootKey.Public(), v.RootKey)
	v.Intermediate = v.NewIntermediate(t, name+" IDevID CA", v.IntermediateKey, now.Add(-time.Hour), now.AddDate(20, 0, 0))
	return v
}

// NewIntermediate issues another intermediate under the root (e.g. an
// expired one: pass its validity).
func (v *VendorPKI) NewIntermediate(t testing.TB, cn string, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return create(t, &x509.Certificate{
		SerialNumber:          randSerial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{v.Name}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, v.Root, key.Public(), v.RootKey)
}

// HWModule is an RFC 4108 hardwareModuleName SAN.
type HWModule struct {
	Type   asn1.ObjectIdentifier // default 1.3.6.1.4.1.99999.1
	Serial []byte
}

// DeviceOptions shape an IDevID. Zero values give a device valid from an
// hour ago for 10 years with a random certificate serial, CN "device".
type DeviceOptions struct {
	Serial       *big.Int // certificate serial
	SerialNumber string   // subject serialNumber (802.1AR's device serial)
	CN           string
	DNSNames     []string
	URIs         []string
	HWModule     *HWModule
	// RawSAN replaces the whole subjectAltName extension value (hostile
	// tests); DNSNames, URIs and HWModule are then ignored.
	RawSAN []byte
	// CriticalSAN marks the subjectAltName critical (RFC 5280 asks for it
	// when the subject is empty) with HWModule or RawSAN.
	CriticalSAN bool
	// EmptySubject leaves the subject empty (then set CriticalSAN).
	EmptySubject bool
	NotBefore    time.Time
	NotAfter     time.Time
	Key          crypto.Signer // default: a new P-256 key
	// Issuer and IssuerKey sign instead of v.Intermediate (e.g. an expired
	// intermediate from NewIntermediate, or v.Root directly).
	Issuer    *x509.Certificate
	IssuerKey crypto.Signer
	// CRLDistributionPoints are the leaf's CRL distribution point URIs
	// (a partitioned vendor CRL covers the leaves naming its point).
	CRLDistributionPoints []string
}

// Device issues an IDevID and returns it, its key, and the chain a device
// presents in TLS: the leaf, then its issuer unless that is the root.
func (v *VendorPKI) Device(t testing.TB, o DeviceOptions) (*x509.Certificate, crypto.Signer, []*x509.Certificate) {
	t.Helper()
	key := o.Key
	if key == nil {
		key = newKey(t)
	}
	issuer, issuerKey := v.Intermediate, v.IntermediateKey
	if o.Issuer != nil {
		issuer, issuerKey = o.Issuer, o.IssuerKey
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: o.Serial,
		Subject:      pkix.Name{CommonName: o.CN, SerialNumber: o.SerialNumber, Organization: []string{v.Name}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,

		CRLDistributionPoints: o.CRLDistributionPoints,
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = randSerial(t)
	}
	if tmpl.Subject.CommonName == "" {
		tmpl.Subject.CommonName = "device"
	}
	if o.EmptySubject {
		tmpl.Subject = pkix.Name{}
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.AddDate(10, 0, 0)
	}
	switch {
	case o.RawSAN != nil:
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: o.CriticalSAN, Value: o.RawSAN}}
	case o.HWModule != nil:
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: o.CriticalSAN, Value: SAN(t, o.DNSNames, o.URIs, o.HWModule)}}
	default:
		tmpl.DNSNames = o.DNSNames
		for _, s := range o.URIs {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	leaf := create(t, tmpl, issuer, key.Public(), issuerKey)
	chain := []*x509.Certificate{leaf}
	if issuer != v.Root {
		chain = append(chain, issuer)
	}
	return leaf, key, chain
}

// SAN encodes a subjectAltName extension value with DNS names, URIs and a
// hardwareModuleName otherName (crypto/x509 cannot write otherNames).
func SAN(t testing.TB, dns, uris []string, hw *HWModule) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, d := range dns {
			b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
		}
		for _, u := range uris {
			b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
		}
		if hw != nil {
			typ := hw.Type
			if typ == nil {
				typ = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
			}
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDHardwareModuleName)
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(typ)
						b.AddASN1OctetString(hw.Serial)
					})
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Vendor is the idevid.Vendor an operator registering this PKI (root as
// anchor, intermediate as intermediate) would get.
func (v *VendorPKI) Vendor(fleet, profile string, from idevid.IDFrom) idevid.Vendor {
	return idevid.Vendor{
		Name:          v.Name,
		Fleet:         fleet,
		Profile:       profile,
		Anchors:       []*x509.Certificate{v.Root},
		Intermediates: []*x509.Certificate{v.Intermediate},
		IDFrom:        from,
	}
}

// RootCRL is a DER CRL signed by the root revoking serials. CRL numbers
// increase per VendorPKI, so a later CRL is always "newer".
func (v *VendorPKI) RootCRL(t testing.TB, revoked []*big.Int, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	return v.CRL(t, v.Root, v.RootKey, revoked, thisUpdate, nextUpdate)
}

// RevokeIntermediateCRL is a root CRL revoking the vendor intermediate.
func (v *VendorPKI) RevokeIntermediateCRL(t testing.TB, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	return v.RootCRL(t, []*big.Int{v.Intermediate.SerialNumber}, thisUpdate, nextUpdate)
}

// LeafCRL is a DER CRL signed by the intermediate revoking device serials.
func (v *VendorPKI) LeafCRL(t testing.TB, revoked []*big.Int, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	return v.CRL(t, v.Intermediate, v.IntermediateKey, revoked, thisUpdate, nextUpdate)
}

// CRL is a DER CRL by any issuer (e.g. a stranger's, to be refused).
func (v *VendorPKI) CRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, revoked []*big.Int, thisUpdate, nextUpdate time.Time) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(v.crlNumber.Add(1)),
		ThisUpdate: thisUpdate,
		NextUpdate: nextUpdate,
	}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: s, RevocationTime: thisUpdate.Add(-time.Minute),
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ParseCRL parses a DER CRL made here.
func ParseCRL(t testing.TB, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// AnchorsPEM is the root as PEM (what an operator registers as anchors).
func (v *VendorPKI) AnchorsPEM() []byte { return CertPEM(v.Root) }

// IntermediatesPEM is the intermediate as PEM.
func (v *VendorPKI) IntermediatesPEM() []byte { return CertPEM(v.Intermediate) }

// CertPEM encodes certificates as concatenated PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ChainPEM is a chain as one PEM file, leaf first (curl --cert).
func ChainPEM(chain []*x509.Certificate) []byte { return CertPEM(chain...) }

// CRLPEM encodes a DER CRL as PEM "X509 CRL".
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// KeyPEM is testpki.KeyPEM: the key as PKCS#8 PEM.
func KeyPEM(t testing.TB, key crypto.Signer) []byte { return testpki.KeyPEM(t, key) }

func newKey(t testing.TB) crypto.Signer { return testpki.Key(t, "P-256") }

func randSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatal(err)
	}
	return s.Add(s, big.NewInt(1))
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
