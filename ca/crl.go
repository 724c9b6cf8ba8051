package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// CRLStore is what CRL generation needs from the database: the revoked
// certificates, and the one stored list with its number.
type CRLStore interface {
	EachRevokedCertificate(ctx context.Context, notAfterSince time.Time, fn func(store.RevokedCert) error) error
	CRLNumber(ctx context.Context) (int64, error)
	GetCRL(ctx context.Context) (store.CRL, error)
	StoreCRL(ctx context.Context, c store.CRL) error
}

// CRLRetention is how long a revoked certificate stays on the list after it
// expires: verifiers whose clocks run behind still find it. It is the
// smallstep authority's cut-off (config.DefaultCRLExpiredDuration).
const CRLRetention = time.Hour

// DefaultCRLValidity is the distance from a CRL's thisUpdate to its nextUpdate.
const DefaultCRLValidity = 24 * time.Hour

// crlRetries bounds how often a generation that lost the race for the next
// CRL number to another replica starts again.
const crlRetries = 10

// crlState is the CA's CRL signing state.
type crlState struct {
	// mu makes one generation at a time in this process; replicas race
	// through the store's conditional StoreCRL.
	mu     sync.Mutex
	signer crypto.Signer
}

// ErrCRLDisabled is returned when the CA was configured without a CRLStore.
var ErrCRLDisabled = fault.New(fault.NotFound, "certificate revocation lists are not enabled")

// GenerateCRL signs a new CRL with the issuing (intermediate) key, numbered
// one above the stored one, listing every certificate revoked in the store
// when it reads them (and expired less than CRLRetention ago), and stores
// it. If another replica stores a list with that number first, it starts
// again from the new number: the stored number only ever rises, and the
// list returned was read from the store after the call began.
//
// The list is encoded here rather than by the embedded smallstep authority
// (GenerateCertificateRevocationList), which the rest of the CA signs
// through: the authority loads every entry as a decimal-serial record, then
// as an x509.RevocationListEntry, and marshals them with reflection; for a
// million entries that took 36 s and 3 GB. Here each row is encoded into
// DER as it streams from the database (see BenchmarkGenerateCRL).
func (c *CA) GenerateCRL(ctx context.Context) (store.CRL, error) { return c.GenerateCRLAbove(ctx, 0) }

// GenerateCRLAbove is GenerateCRL with a floor: the new list is numbered
// above floor even when the stored number is lower. A restored CA uses it,
// since lists published after its backup was taken carry numbers the
// restored database never saw, and a CRL number must never go back.
func (c *CA) GenerateCRLAbove(ctx context.Context, floor int64) (store.CRL, error) {
	crls := c.cfg.CRLStore
	if crls == nil {
		return store.CRL{}, ErrCRLDisabled
	}
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	var err error
	for attempt := range crlRetries {
		if attempt > 0 {
			// Back off a random while, so two replicas that keep colliding
			// drift apart instead of colliding again.
			select {
			case <-ctx.Done():
				return store.CRL{}, fmt.Errorf("generate CRL: %w", ctx.Err())
			case <-time.After(time.Duration(mrand.Int64N(int64(attempt) * int64(20*time.Millisecond)))):
			}
		}
		var n int64
		if n, err = crls.CRLNumber(ctx); err != nil {
			break
		}
		n = max(n, floor)
		var out store.CRL
		if out, err = c.signCRL(ctx, n+1); err != nil {
			break
		}
		if err = crls.StoreCRL(ctx, out); err == nil {
			return out, nil
		}
		if !fault.Is(err, fault.Conflict) || ctx.Err() != nil {
			break
		}
	}
	return store.CRL{}, fmt.Errorf("generate CRL: %w", err)
}

// CurrentCRL returns the stored CRL, whichever replica generated it;
// fault.NotFound before the first generation.
func (c *CA) CurrentCRL(ctx context.Context) (store.CRL, error) {
	if c.cfg.CRLStore == nil {
		return store.CRL{}, ErrCRLDisabled
	}
	return c.cfg.CRLStore.GetCRL(ctx)
}

var (
	oidExtAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
)

// signCRL builds and signs CRL number n (RFC 5280 §5): version 2, the
// intermediate as issuer, its key id as authority key identifier, and no
// issuing distribution point, so the list covers every certificate of the
// issuer whatever CRL URL it carries (OpenSSL refuses a list whose
// distribution point differs from the certificate's, and the URL follows
// api.public_url, which may change).
func (c *CA) signCRL(ctx context.Context, n int64) (store.CRL, error) {
	now := c.cfg.Now().UTC().Truncate(time.Second)
	list, count, err := c.crlEntries(ctx, now)
	if err != nil {
		return store.CRL{}, err
	}
	cur := issuer{gen: c.gen, cert: c.inter, key: c.crl.signer}
	der, thisUpdate, nextUpdate, err := c.signCRLFor(cur, n, now, list, count)
	if err != nil {
		return store.CRL{}, err
	}
	out := store.CRL{Number: n, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: count, DER: der}
	// Each retired intermediate signs its own list with the same number and
	// entries: every revoked Gatehouse serial, whichever intermediate issued
	// it. Serials are 128 random bits, so no other issuer's certificate
	// shares one, and the entries are encoded once for all lists.
	//
	// A retired intermediate that has expired (serve loads them only at
	// start) signs nothing: every leaf it issued has expired with it, and
	// its list, capped at its expiry, would be expired on arrival and make
	// replicas refuse the whole set. The set's nextUpdate is the current
	// list's alone: a retired list ends at its issuer's expiry at the
	// latest, and capping the set there would regenerate it on every poll
	// through the last refresh window before that expiry.
	for _, r := range c.retired {
		if !r.cert.NotAfter.After(now) {
			continue
		}
		der, _, _, err := c.signCRLFor(r, n, now, list, count)
		if err != nil {
			return store.CRL{}, fmt.Errorf("retired intermediate %d: %w", r.gen, err)
		}
		out.Others = append(out.Others, store.IssuerCRL{Generation: r.gen, DER: der})
	}
	return out, nil
}

// signCRLFor signs CRL number n for one intermediate.
func (c *CA) signCRLFor(is issuer, n int64, now time.Time, list []byte, count int) (der []byte, thisUpdate, nextUpdate time.Time, err error) {
	alg, hash, err := signatureAlgorithm(is.key.Public())
	if err != nil {
		return nil, thisUpdate, nextUpdate, err
	}
	thisUpdate, nextUpdate = c.crlWindow(now, is.cert)
	tbsDER, err := crlTBS(is.cert, n, alg, thisUpdate, nextUpdate, list, count)
	if err != nil {
		return nil, thisUpdate, nextUpdate, fmt.Errorf("encode CRL: %w", err)
	}
	der, err = signCRLTBS(is.key, tbsDER, alg, hash)
	return der, thisUpdate, nextUpdate, err
}

// crlWindow returns the thisUpdate and nextUpdate of a list made at now.
func (c *CA) crlWindow(now time.Time, inter *x509.Certificate) (thisUpdate, nextUpdate time.Time) {
	// thisUpdate is backdated as certificates' notBefore is: a broker whose
	// clock runs a little behind would otherwise find every fresh list "not
	// yet valid", and OpenSSL then refuses every client, not just the
	// revoked ones. nextUpdate counts from now, so the validity is kept.
	thisUpdate = now.Add(-c.cfg.Backdate)
	nextUpdate = now.Add(c.cfg.CRLValidity)
	if nextUpdate.After(inter.NotAfter) {
		// A list must not outlive its issuer: verifiers reject it then.
		nextUpdate = inter.NotAfter
	}
	return thisUpdate, nextUpdate
}

// crlEntries encodes the revokedCertificates entries of every certificate
// revoked within CRLRetention of now, and returns them with their count.
func (c *CA) crlEntries(ctx context.Context, now time.Time) ([]byte, int, error) {
	// The entries are encoded as they stream, without the enclosing
	// SEQUENCE, whose length is known only at the end.
	entries := cryptobyte.NewBuilder(make([]byte, 0, 1<<16))
	count := 0
	var serial []byte
	err := c.cfg.CRLStore.EachRevokedCertificate(ctx, now.Add(-CRLRetention), func(r store.RevokedCert) error {
		var err error
		serial, err = serialBytes(serial[:0], r.Serial)
		if err != nil {
			return err
		}
		entries.AddASN1(cbasn1.SEQUENCE, func(e *cryptobyte.Builder) {
			e.AddASN1(cbasn1.INTEGER, func(i *cryptobyte.Builder) { i.AddBytes(serial) })
			addTime(e, r.RevokedAt)
			// RFC 5280 §5.3.1: unspecified (0) is expressed by leaving the
			// extension out.
			if r.Reason > 0 && r.Reason <= 10 {
				e.AddASN1(cbasn1.SEQUENCE, func(exts *cryptobyte.Builder) {
					exts.AddASN1(cbasn1.SEQUENCE, func(ext *cryptobyte.Builder) {
						ext.AddASN1ObjectIdentifier(oidExtReasonCode)
						ext.AddASN1(cbasn1.OCTET_STRING, func(v *cryptobyte.Builder) {
							v.AddASN1Enum(int64(r.Reason))
						})
					})
				})
			}
		})
		count++
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	list, err := entries.Bytes()
	if err != nil {
		return nil, 0, fmt.Errorf("encode CRL entries: %w", err)
	}
	return list, count, nil
}

// crlTBS encodes the TBSCertList of CRL number n around the encoded
// entries list (count of them; none leaves the field out).
func crlTBS(inter *x509.Certificate, n int64, alg []byte, thisUpdate, nextUpdate time.Time, list []byte, count int) ([]byte, error) {
	tbs := cryptobyte.NewBuilder(make([]byte, 0, len(list)+1024))
	tbs.AddASN1(cbasn1.SEQUENCE, func(t *cryptobyte.Builder) {
		t.AddASN1Int64(1) // v2
		t.AddBytes(alg)
		t.AddBytes(inter.RawSubject)
		addTime(t, thisUpdate)
		addTime(t, nextUpdate)
		if count > 0 {
			t.AddASN1(cbasn1.SEQUENCE, func(s *cryptobyte.Builder) { s.AddBytes(list) })
		}
		t.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(x *cryptobyte.Builder) {
			x.AddASN1(cbasn1.SEQUENCE, func(exts *cryptobyte.Builder) {
				if len(inter.SubjectKeyId) > 0 {
					exts.AddASN1(cbasn1.SEQUENCE, func(ext *cryptobyte.Builder) {
						ext.AddASN1ObjectIdentifier(oidExtAuthorityKeyID)
						ext.AddASN1(cbasn1.OCTET_STRING, func(v *cryptobyte.Builder) {
							v.AddASN1(cbasn1.SEQUENCE, func(aki *cryptobyte.Builder) {
								aki.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(id *cryptobyte.Builder) {
									id.AddBytes(inter.SubjectKeyId)
								})
							})
						})
					})
				}
				exts.AddASN1(cbasn1.SEQUENCE, func(ext *cryptobyte.Builder) {
					ext.AddASN1ObjectIdentifier(oidExtCRLNumber)
					ext.AddASN1(cbasn1.OCTET_STRING, func(v *cryptobyte.Builder) { v.AddASN1Int64(n) })
				})
			})
		})
	})
	return tbs.Bytes()
}

// signCRLTBS signs tbsDER with the CRL signer and returns the
// CertificateList.
func signCRLTBS(signer crypto.Signer, tbsDER, alg []byte, hash crypto.Hash) ([]byte, error) {
	digest := tbsDER
	if hash != 0 {
		h := hash.New()
		h.Write(tbsDER)
		digest = h.Sum(nil)
	}
	sig, err := signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbsDER)+len(sig)+64))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	der, err := out.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode CRL: %w", err)
	}
	return der, nil
}

// addTime writes t as RFC 5280 requires: UTCTime through 2049,
// GeneralizedTime after.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
		return
	}
	b.AddASN1GeneralizedTime(t)
}

// serialBytes appends the DER INTEGER content of a positive serial stored
// as hex: big-endian, without leading zero bytes, with one zero byte added
// when the top bit is set (a serial is never negative).
func serialBytes(dst []byte, s string) ([]byte, error) {
	if s == "" || len(s) > 64 {
		return nil, fmt.Errorf("stored serial %q is not a certificate serial", s)
	}
	var buf [33]byte
	src := s
	if len(src)%2 == 1 {
		src = "0" + src
	}
	raw := buf[:len(src)/2]
	if _, err := hex.Decode(raw, []byte(src)); err != nil {
		return nil, fmt.Errorf("stored serial %q is not hex", s)
	}
	for len(raw) > 1 && raw[0] == 0 {
		raw = raw[1:]
	}
	if len(raw) == 1 && raw[0] == 0 {
		return nil, fmt.Errorf("stored serial %q is zero", s)
	}
	if raw[0]&0x80 != 0 {
		dst = append(dst, 0)
	}
	return append(dst, raw...), nil
}

// signatureAlgorithm returns the DER AlgorithmIdentifier and hash for the
// issuing key, the choices crypto/x509 makes for the same key.
func signatureAlgorithm(pub crypto.PublicKey) ([]byte, crypto.Hash, error) {
	var (
		oid    asn1.ObjectIdentifier
		hash   crypto.Hash
		params bool // RSA PKCS#1 v1.5 carries an explicit NULL
	)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			oid, hash = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256
		case elliptic.P384():
			oid, hash = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384
		case elliptic.P521():
			oid, hash = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512
		default:
			return nil, 0, errors.New("unsupported ECDSA curve for CRL signing")
		}
	case *rsa.PublicKey:
		oid, hash, params = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, true
	case ed25519.PublicKey:
		oid, hash = asn1.ObjectIdentifier{1, 3, 101, 112}, 0
	default:
		return nil, 0, fmt.Errorf("unsupported key type %T for CRL signing", pub)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(s *cryptobyte.Builder) {
		s.AddASN1ObjectIdentifier(oid)
		if params {
			s.AddASN1NULL()
		}
	})
	der, err := b.Bytes()
	return der, hash, err
}
