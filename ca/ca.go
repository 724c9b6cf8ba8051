// Package ca is Gatehouse's certificate authority: a root and an issuing
// intermediate, with every leaf signed through the embedded smallstep
// authority. Callers see only crypto/x509 types; nothing from smallstep
// leaves this package.
//
// A leaf's identity is decided here, not by the device: the CSR contributes
// its public key and proof of possession, and nothing else. Subject, SANs,
// key usages and validity all come from the issuance request.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/x509util"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// URIScheme prefixes every device identity: urn:gatehouse:<fleet>:<device>.
const URIScheme = "urn:gatehouse:"

var namePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidName reports whether s may be used as a fleet, profile or label name.
// Device ids have a grammar of their own (package deviceid).
func ValidName(s string) bool { return namePattern.MatchString(s) }

// IdentityURI returns the SAN URI that names a device.
func IdentityURI(fleet, device string) string { return URIScheme + fleet + ":" + device }

// Identity is who a certificate names.
type Identity struct {
	Fleet    string
	DeviceID string
}

// IdentityOf extracts the Gatehouse identity of a leaf certificate: exactly
// one urn:gatehouse URI SAN whose device matches the subject CN.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		s := u.String()
		if !strings.HasPrefix(s, URIScheme) {
			continue
		}
		fleet, dev, ok := strings.Cut(strings.TrimPrefix(s, URIScheme), ":")
		if !ok || !ValidName(fleet) || !deviceid.ValidRef(dev) {
			return Identity{}, fault.New(fault.CertInvalid, "certificate has a malformed identity URI")
		}
		found = append(found, Identity{Fleet: fleet, DeviceID: dev})
	}
	if len(found) != 1 {
		return Identity{}, fault.New(fault.CertInvalid, "certificate must carry exactly one Gatehouse identity URI")
	}
	if cert.Subject.CommonName != found[0].DeviceID {
		return Identity{}, fault.New(fault.CertInvalid, "certificate subject does not match its identity URI")
	}
	return found[0], nil
}

// CertStore is what the CA needs from the database: certificate records and
// revocations live in the Gatehouse store, not in a separate CA database.
type CertStore interface {
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	RevokeCertificate(ctx context.Context, serial string, reason int, at time.Time) error
}

// Config configures an issuing CA loaded from disk.
type Config struct {
	// Dir holds the files written by Init.
	Dir string
	// Passphrase decrypts the intermediate key.
	Passphrase []byte
	// KMS, when set, is the PKCS#11 URI of the issuing key (kms.go), used
	// instead of intermediate_ca.key; KMSPin is the token's user PIN.
	KMS    string
	KMSPin string
	// Store backs the authority's certificate and revocation database.
	Store CertStore
	// RoleOIDs maps profile role names to extended key usage OIDs.
	RoleOIDs map[string]string
	// CRLURL and OCSPURL, when set, go into every new leaf.
	CRLURL  string
	OCSPURL string
	// CRLStore, when set, enables CRL generation (GenerateCRL, crl.go).
	// CRLValidity is thisUpdate → nextUpdate (default DefaultCRLValidity).
	CRLStore    CRLStore
	CRLValidity time.Duration
	// Backdate moves NotBefore into the past to absorb device clock skew.
	Backdate time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Backdate == 0 {
		c.Backdate = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CRLValidity <= 0 {
		c.CRLValidity = DefaultCRLValidity
	}
	if c.RoleOIDs == nil {
		c.RoleOIDs = DefaultRoleOIDs()
	}
}

// DefaultRoleOIDs is the built-in role → EKU mapping. It sits under
// 1.3.6.1.4.1.32473, the enterprise number IANA reserves for documentation
// (RFC 5612): good for a first install, and a visible reminder to map roles
// to OIDs under the operator's own arc (config ca.role_oids) in production.
func DefaultRoleOIDs() map[string]string {
	const arc = "1.3.6.1.4.1.32473.1"
	return map[string]string{
		"telemetry": arc + ".1",
		"command":   arc + ".2",
		"firmware":  arc + ".3",
	}
}

// CA issues device certificates.
type CA struct {
	cfg   Config
	auth  *authority.Authority
	root  *x509.Certificate
	inter *x509.Certificate
	// gen is the current intermediate's generation (rotate.go); retired
	// are the earlier ones still valid, newest first.
	gen      int
	retired  []issuer
	crlURL   string
	roots    *x509.CertPool
	inters   *x509.CertPool
	roleOIDs map[string]asn1.ObjectIdentifier
	crl      crlState
	// verified caches the broker-facing verifications (VerifyClientCert).
	verified verifiedCache
	closeKey func() error
}

// New loads the CA from cfg.Dir and starts the embedded authority.
func New(cfg Config) (*CA, error) {
	cfg.setDefaults()
	if cfg.Store == nil {
		return nil, errors.New("ca: Config.Store is required")
	}
	roleOIDs := make(map[string]asn1.ObjectIdentifier, len(cfg.RoleOIDs))
	for role, s := range cfg.RoleOIDs {
		oid, err := parseOID(s)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "role %q: invalid OID %q", role, s)
		}
		roleOIDs[role] = oid
	}
	for _, u := range []string{cfg.CRLURL, cfg.OCSPURL} {
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	root, err := loadCert(filepath.Join(cfg.Dir, RootCertFile))
	if err != nil {
		return nil, err
	}
	if _, err := CheckRootPin(cfg.Dir, root); err != nil {
		return nil, err
	}
	inter, err := loadCert(filepath.Join(cfg.Dir, IntermediateCertFile))
	if err != nil {
		return nil, err
	}
	key, closeKey, err := issuingKey(cfg)
	if err != nil {
		return nil, err
	}
	c, err := newCA(cfg, roleOIDs, root, inter, key)
	if err != nil {
		_ = closeKey()
		return nil, err
	}
	c.closeKey = closeKey
	return c, nil
}

// issuingKey opens the intermediate key: in its token, or decrypted from
// the CA directory.
func issuingKey(cfg Config) (crypto.Signer, func() error, error) {
	if cfg.KMS != "" {
		k, err := openKMSKey(cfg.KMS, cfg.KMSPin)
		return k.signer, k.close, err
	}
	key, err := loadKey(filepath.Join(cfg.Dir, IntermediateKeyFile), cfg.Passphrase)
	return key, func() error { return nil }, err
}

// Close lets go of the issuing key's token, if any.
func (c *CA) Close() error { return c.closeKey() }

func newCA(cfg Config, roleOIDs map[string]asn1.ObjectIdentifier, root, inter *x509.Certificate, key crypto.Signer) (*CA, error) {
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("intermediate is not signed by the root: %w", err)
	}
	if !publicKeysEqual(inter.PublicKey, key.Public()) {
		return nil, errors.New("intermediate key does not match the intermediate certificate")
	}
	auth, err := authority.NewEmbedded(
		authority.WithX509RootCerts(root),
		authority.WithX509Signer(inter, key),
		authority.WithDatabase(&authDB{store: cfg.Store, now: cfg.Now}),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded authority: %w", err)
	}
	// The CRL is signed with the authority's own X.509 signer (the issuing
	// key it was given above), taken back from the authority so that CRLs
	// and certificates come from one signing path. The list itself is
	// encoded here, streamed from the database: the authority's CRL builder
	// needs 36 s and 3 GB for a million entries (see ca/crl.go).
	crlSigner, err := auth.GetX509Signer()
	if err != nil {
		return nil, fmt.Errorf("embedded authority has no X.509 signer: %w", err)
	}
	if !publicKeysEqual(inter.PublicKey, crlSigner.Public()) {
		return nil, errors.New("embedded authority signs with a key other than the intermediate's")
	}
	c := &CA{cfg: cfg, auth: auth, root: root, inter: inter, roleOIDs: roleOIDs,
		roots: x509.NewCertPool(), inters: x509.NewCertPool(), crl: crlState{signer: crlSigner}}
	if err := c.loadGenerations(); err != nil {
		return nil, err
	}
	c.roots.AddCert(root)
	c.inters.AddCert(inter)
	for _, r := range c.retired {
		c.inters.AddCert(r.cert)
	}
	return c, nil
}

// loadGenerations loads the retired intermediates and gives the current
// one's leaves a CRL URL of their own after a rotation: /crl stays the
// first intermediate's, whose leaves name it.
func (c *CA) loadGenerations() (err error) {
	if c.gen, err = currentGen(c.cfg.Dir); err != nil {
		return err
	}
	if c.retired, err = loadRetired(c.cfg.Dir, c.cfg.Passphrase, c.root, c.cfg.Now()); err != nil {
		return err
	}
	c.crlURL = c.cfg.CRLURL
	if c.gen > 1 && c.crlURL != "" {
		c.crlURL += "/" + strconv.Itoa(c.gen)
	}
	return nil
}

// Generation is the current intermediate's generation: 1 until the first
// rotation.
func (c *CA) Generation() int { return c.gen }

// RetiredGenerations lists the retired intermediates' generations, in the
// order of Issuers()[1:].
func (c *CA) RetiredGenerations() []int {
	out := make([]int, len(c.retired))
	for i, r := range c.retired {
		out[i] = r.gen
	}
	return out
}

// Issuers returns every intermediate whose leaves may still be valid: the
// current one first, then the retired ones, newest first.
func (c *CA) Issuers() []*x509.Certificate {
	out := []*x509.Certificate{c.inter}
	for _, r := range c.retired {
		out = append(out, r.cert)
	}
	return out
}

// Root returns the root certificate.
func (c *CA) Root() *x509.Certificate { return c.root }

// Intermediate returns the issuing certificate.
func (c *CA) Intermediate() *x509.Certificate { return c.inter }

// ChainPEM returns the issuing chain a device or broker needs: the
// current intermediate, the retired ones still valid, then the root. A
// verifier picks the intermediate that issued the leaf.
func (c *CA) ChainPEM() []byte { return EncodePEM(append(c.Issuers(), c.root)...) }

// Chain is what Issue returns with a leaf: the intermediate and the root.
func (c *CA) Chain() []*x509.Certificate { return []*x509.Certificate{c.inter, c.root} }

// RolesOf returns the role names whose OIDs a certificate carries as
// extended key usages, in the CA's role order.
func (c *CA) RolesOf(cert *x509.Certificate) []string {
	var out []string
	for _, role := range c.Roles() {
		for _, oid := range cert.UnknownExtKeyUsage {
			if oid.Equal(c.roleOIDs[role]) {
				out = append(out, role)
				break
			}
		}
	}
	return out
}

// RootPEM returns the root certificate as PEM.
func (c *CA) RootPEM() []byte { return EncodePEM(c.root) }

// Roles returns the role names the CA can put into a certificate.
func (c *CA) Roles() []string {
	out := make([]string, 0, len(c.roleOIDs))
	for r := range c.roleOIDs {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// LeafRequest asks for one device certificate.
type LeafRequest struct {
	CSR      *x509.CertificateRequest
	Fleet    string
	DeviceID string
	Validity time.Duration
	Roles    []string
}

// Issued is a signed leaf with its issuing chain (intermediate, root).
type Issued struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
}

// leafTemplate is the only shape a Gatehouse leaf can take, in the JSON
// form of a step-ca certificate template. It is rendered with encoding/json
// rather than text/template: values can never break out of their fields, and
// a sign skips parsing a template and building its function map (a third of
// the authority's sign time).
type leafTemplate struct {
	Subject               leafSubject `json:"subject"`
	URIs                  []string    `json:"uris"`
	KeyUsage              []string    `json:"keyUsage"`
	ExtKeyUsage           []string    `json:"extKeyUsage"`
	UnknownExtKeyUsage    []string    `json:"unknownExtKeyUsage,omitempty"`
	CRLDistributionPoints []string    `json:"crlDistributionPoints,omitempty"`
	OCSPServer            []string    `json:"ocspServer,omitempty"`
	NotBefore             time.Time   `json:"notBefore"`
	NotAfter              time.Time   `json:"notAfter"`
}

type leafSubject struct {
	CommonName string `json:"commonName"`
}

// leafOptions feeds the Gatehouse leaf to the authority's sign path.
type leafOptions struct{ json []byte }

func (o leafOptions) Options(provisioner.SignOptions) []x509util.Option {
	return []x509util.Option{func(_ *x509.CertificateRequest, opts *x509util.Options) error {
		opts.CertBuffer = bytes.NewBuffer(o.json)
		return nil
	}}
}

// Issue signs a leaf for the given identity. The CSR's signature must verify;
// its subject, SANs and extensions are ignored.
func (c *CA) Issue(ctx context.Context, req LeafRequest) (Issued, error) {
	if req.CSR == nil {
		return Issued{}, fault.New(fault.CSRInvalid, "no certificate request")
	}
	if !ValidName(req.Fleet) {
		return Issued{}, fault.New(fault.InvalidArgument, "fleet must match [A-Za-z0-9._-]{1,64}")
	}
	// Enrollment admits only valid ids; a device named under the older
	// grammar may still renew.
	if err := deviceid.CheckRef("device id", req.DeviceID); err != nil {
		return Issued{}, err
	}
	if req.Validity <= 0 {
		return Issued{}, fault.New(fault.InvalidArgument, "validity must be positive")
	}
	if err := req.CSR.CheckSignature(); err != nil {
		return Issued{}, fault.Wrap(err, fault.CSRInvalid, "certificate request signature does not verify")
	}
	oids := make([]string, 0, len(req.Roles))
	for _, r := range req.Roles {
		oid, ok := c.roleOIDs[r]
		if !ok {
			return Issued{}, fault.New(fault.InvalidArgument, "role %q has no OID configured", r)
		}
		oids = append(oids, oid.String())
	}
	now := c.cfg.Now().Truncate(time.Second)
	notBefore := now.Add(-c.cfg.Backdate)
	notAfter := now.Add(req.Validity)
	if notAfter.After(c.inter.NotAfter) {
		notAfter = c.inter.NotAfter
	}
	lt := leafTemplate{
		Subject:            leafSubject{CommonName: req.DeviceID},
		URIs:               []string{IdentityURI(req.Fleet, req.DeviceID)},
		KeyUsage:           []string{"digitalSignature"},
		ExtKeyUsage:        []string{"clientAuth"},
		UnknownExtKeyUsage: oids,
		NotBefore:          notBefore.UTC(),
		NotAfter:           notAfter.UTC(),
	}
	if c.crlURL != "" {
		lt.CRLDistributionPoints = []string{c.crlURL}
	}
	if c.cfg.OCSPURL != "" {
		lt.OCSPServer = []string{c.cfg.OCSPURL}
	}
	tmpl, err := json.Marshal(lt)
	if err != nil {
		return Issued{}, fmt.Errorf("render leaf template: %w", err)
	}
	chain, err := c.auth.SignWithContext(ctx, req.CSR, provisioner.SignOptions{},
		leafOptions{json: tmpl}, provisioner.CertificateEnforcerFunc(enforceLeaf))
	if err != nil {
		return Issued{}, fmt.Errorf("sign certificate: %w", err)
	}
	return Issued{Leaf: chain[0], Chain: append(chain[1:len(chain):len(chain)], c.root)}, nil
}

// enforceLeaf is the last word before signing: whatever a template or a
// future option did, a Gatehouse leaf is a client certificate and nothing more.
func enforceLeaf(cert *x509.Certificate) error {
	cert.IsCA = false
	cert.BasicConstraintsValid = true
	cert.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cert.KeyUsage = x509.KeyUsageDigitalSignature
	cert.DNSNames, cert.EmailAddresses, cert.IPAddresses = nil, nil, nil
	if len(cert.URIs) != 1 {
		return errors.New("leaf must carry exactly one identity URI")
	}
	return nil
}

// VerifyLeaf checks that cert chains to this CA's root for client auth and
// is within its validity at the CA's current time, and returns its identity.
func (c *CA) VerifyLeaf(cert *x509.Certificate) (Identity, error) {
	id, _, err := c.verifyLeaf(cert)
	return id, err
}

// VerifyExpiredLeaf checks an expired cert as VerifyLeaf would have at
// the last instant of its validity, and returns its identity. It is for a
// sleepy device's renewal only: the caller must still prove possession of
// the key, check the certificate's record (never revoked, never replaced)
// and bound how long ago it expired. A certificate that has not expired is
// certificate_invalid here: it goes through VerifyLeaf.
func (c *CA) VerifyExpiredLeaf(cert *x509.Certificate) (Identity, error) {
	if !c.cfg.Now().After(cert.NotAfter) {
		return Identity{}, fault.New(fault.CertInvalid, "certificate has not expired")
	}
	id, _, err := c.verifyLeafAt(cert, cert.NotAfter)
	return id, err
}

func (c *CA) verifyLeaf(cert *x509.Certificate) (Identity, [][]*x509.Certificate, error) {
	return c.verifyLeafAt(cert, c.cfg.Now())
}

func (c *CA) verifyLeafAt(cert *x509.Certificate, at time.Time) (Identity, [][]*x509.Certificate, error) {
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         c.roots,
		Intermediates: c.inters,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return Identity{}, nil, fault.Wrap(err, fault.CertInvalid, "certificate has expired")
		}
		return Identity{}, nil, fault.Wrap(err, fault.CertInvalid, "certificate was not issued by this Gatehouse CA")
	}
	id, err := IdentityOf(cert)
	return id, chains, err
}

// VerifyClientCert verifies a client certificate (see VerifyLeaf) and
// returns the device id it names. A certificate verified before is
// recognised by its bytes until its chain's earliest expiry
// (verifycache.go): brokers show the same certificate at every reconnect.
func (c *CA) VerifyClientCert(cert *x509.Certificate) (string, error) {
	if e, ok := c.verified.get(cert.Raw, c.cfg.Now()); ok {
		return e.id.DeviceID, nil
	}
	id, _, err := c.verifyAndRemember(cert)
	return id, err
}

// VerifyClientDER is VerifyClientCert for a certificate's DER bytes, and
// also returns its serial (SerialHex). A certificate verified before is
// recognised by the hash of its bytes before any parse.
func (c *CA) VerifyClientDER(der []byte) (deviceID, serial string, err error) {
	if e, ok := c.verified.get(der, c.cfg.Now()); ok {
		return e.id.DeviceID, e.serial, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", fault.Wrap(err, fault.CertInvalid, "certificate does not parse")
	}
	return c.verifyAndRemember(cert)
}

func (c *CA) verifyAndRemember(cert *x509.Certificate) (deviceID, serial string, err error) {
	id, chains, err := c.verifyLeaf(cert)
	if err != nil {
		return "", "", err
	}
	serial = SerialHex(cert.SerialNumber)
	c.verified.put(cert.Raw, id, serial, chains)
	return id.DeviceID, serial, nil
}

// KeyType names a public key the way profiles list allowed key types:
// "P-256", "P-384", "Ed25519", "RSA-<bits>"; "" for anything else.
func KeyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "P-256"
		case elliptic.P384():
			return "P-384"
		}
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return ""
}

// GenerateKey makes a key of the type KeyType would name it: "P-256",
// "P-384", "Ed25519" or "RSA-2048", "RSA-3072", "RSA-4096" (InvalidArgument
// for anything else). The device CLI and serverkeygen both make keys here.
func GenerateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "P-256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P-384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "Ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "RSA-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "RSA-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "RSA-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fault.New(fault.InvalidArgument, "unknown key type %q", keyType)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errors.New("an OID has at least two arcs")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || strconv.Itoa(v) != p {
			return nil, fmt.Errorf("arc %q is not a non-negative integer", p)
		}
		oid[i] = v
	}
	return oid, nil
}

// checkURL makes a misconfigured CRL or OCSP URL fail at start, not in every leaf.
func checkURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fault.New(fault.InvalidArgument, "%q is not an http(s) URL", s)
	}
	return nil
}
