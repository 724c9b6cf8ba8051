// Package ocsp is Gatehouse's OCSP responder (RFC 6960): it answers "is
// this certificate revoked?" for the leaves of the issuing CA from the
// certificate records in the store, signed by the delegated responder key
// the ca package certifies.
//
// Every answer is read from the store at request time and signed then: a
// revocation committed by any replica is what the next request sees, with
// no cache to invalidate. A signature costs tens of microseconds, so the
// responder still answers thousands of requests per second per core (see
// BenchmarkRespond).
//
// A bad request is an OCSP error response (malformedRequest, unauthorized,
// tryLater), never a Go error: the HTTP layer always has bytes to send.
package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	_ "crypto/sha256" // CertID and signature hashes
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// MaxRequestBytes caps an OCSP request. A plain request for a handful of
// certificates is under 1 KiB; the cap leaves room for a signed request
// carrying its certificate, and no more.
const MaxRequestBytes = 8 << 10

// Status is a certificate's status in a response.
type Status int

// Certificate statuses (RFC 6960 §4.2.1 CertStatus).
const (
	Good Status = iota
	Revoked
	Unknown
)

func (s Status) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// ResponseStatus is the outcome of a whole request (RFC 6960 §4.2.1
// OCSPResponseStatus).
type ResponseStatus int

// Response statuses; 4 is unused by the RFC.
const (
	Successful       ResponseStatus = 0
	MalformedRequest ResponseStatus = 1
	InternalError    ResponseStatus = 2
	TryLater         ResponseStatus = 3
	SigRequired      ResponseStatus = 5
	Unauthorized     ResponseStatus = 6
)

// Certs looks certificate records up by serial (lowercase hex).
type Certs interface {
	GetCertificate(ctx context.Context, serial string) (store.Certificate, error)
	// RestoredRevocation is a revocation a restore learnt from the last
	// published CRL for a serial the restored database never saw.
	RestoredRevocation(ctx context.Context, serial string) (store.RevokedCert, error)
}

var _ Certs = (*store.Store)(nil)

// Signer hands out the current delegated responder credential.
type Signer interface {
	Current(ctx context.Context) (ca.OCSPCredential, error)
}

// Config wires a Responder.
type Config struct {
	Certs  Certs
	Signer Signer
	// Issuer is the CA whose leaves are answered for; requests naming any
	// other issuer get "unauthorized".
	Issuer *x509.Certificate
	// Validity is how far nextUpdate lies after thisUpdate: how long a
	// client may rely on an answer. Default one hour.
	Validity time.Duration
	// MaxCerts caps the certificates asked about in one request; default 8.
	MaxCerts int
	// HTTPMaxAge is how long an HTTP cache may keep a GET answer (one
	// without a nonce) in which every certificate is revoked: a revoked
	// certificate never becomes good again, so such an answer cannot go
	// stale. Capped at Validity; default one minute.
	HTTPMaxAge time.Duration
	// GoodHTTPMaxAge is the same for answers holding a good (or unknown)
	// status. Default 0: they are sent no-store, because a cached "good"
	// would keep answering good for that long after a revocation, and the
	// point of revoking is to lose access now. Answers are read from the
	// store and signed per request (thousands per second per core), so a
	// cache is not needed for load; an operator who puts a CDN in front may
	// raise it, accepting that delay for clients behind the CDN. Clients
	// that cache answers themselves are bounded by Validity (nextUpdate)
	// whatever this says.
	GoodHTTPMaxAge time.Duration
	// Now is the clock; Log receives malfunctions (default discards).
	Now func() time.Time
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Validity == 0 {
		c.Validity = time.Hour
	}
	if c.MaxCerts == 0 {
		c.MaxCerts = 8
	}
	if c.HTTPMaxAge == 0 {
		c.HTTPMaxAge = time.Minute
	}
	c.HTTPMaxAge = min(c.HTTPMaxAge, c.Validity)
	c.GoodHTTPMaxAge = max(min(c.GoodHTTPMaxAge, c.Validity), 0)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Responder answers OCSP requests.
type Responder struct {
	cfg Config
	// issuerHashes maps a CertID hash algorithm to the issuer's name and key
	// hashes under it.
	issuerHashes map[crypto.Hash][2][]byte
	// signing caches what depends only on the current credential.
	signing atomic.Pointer[signingState]
}

type signingState struct {
	cert        *x509.Certificate
	signer      crypto.Signer
	responderID asn1.RawValue
	sigAlg      pkix.AlgorithmIdentifier
	hash        crypto.Hash
	certs       []asn1.RawValue
}

// New returns a Responder.
func New(cfg Config) (*Responder, error) {
	cfg.setDefaults()
	if cfg.Certs == nil || cfg.Signer == nil || cfg.Issuer == nil {
		return nil, errors.New("ocsp: Certs, Signer and Issuer are required")
	}
	if cfg.Validity < time.Minute || cfg.MaxCerts < 1 {
		return nil, errors.New("ocsp: Validity must be at least a minute and MaxCerts positive")
	}
	keyBits, err := publicKeyBits(cfg.Issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("ocsp: issuer key: %w", err)
	}
	r := &Responder{cfg: cfg, issuerHashes: map[crypto.Hash][2][]byte{}}
	for _, h := range hashes {
		r.issuerHashes[h.hash] = [2][]byte{digest(h.hash, cfg.Issuer.RawSubject), digest(h.hash, keyBits)}
	}
	return r, nil
}

// Answer is a DER OCSPResponse with what an HTTP cache needs to know.
type Answer struct {
	DER    []byte
	Status ResponseStatus
	// Nonce reports that the response echoes a client nonce: it is unique
	// to this request and must not be cached.
	Nonce bool
	// ThisUpdate and NextUpdate bound a successful answer's validity.
	ThisUpdate, NextUpdate time.Time
	// MaxAge is how long an HTTP cache may keep the answer; 0 for answers
	// that must not be cached (errors, nonces).
	MaxAge time.Duration
	// CertStatus is the status of a successful answer, the worst of the
	// certificates it names: Revoked over Unknown over Good.
	CertStatus Status
}

// Outcome names the answer for metrics: "good", "revoked" or "unknown"
// (CertStatus) when successful; "malformed" for a request refused as the
// client's fault (malformed, unauthorized, signature required); "error"
// when the responder could not answer (internal error, try later).
func (a Answer) Outcome() string {
	switch a.Status {
	case Successful:
		return a.CertStatus.String()
	case MalformedRequest, Unauthorized, SigRequired:
		return "malformed"
	}
	return "error"
}

// Respond answers one DER-encoded OCSP request. It never fails: a request
// it cannot answer gets an OCSP error status.
func (r *Responder) Respond(ctx context.Context, der []byte) Answer {
	a, err := r.respond(ctx, der)
	if err != nil {
		var re *responseError
		if !errors.As(err, &re) {
			re = &responseError{status: InternalError}
		}
		if re.status == InternalError || re.status == TryLater {
			r.cfg.Log.Error("ocsp: cannot answer", "err", err)
		}
		return Answer{DER: errorResponse(re.status), Status: re.status}
	}
	return a
}

type responseError struct {
	status ResponseStatus
	msg    string
	err    error
}

func (e *responseError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *responseError) Unwrap() error { return e.err }

func fail(s ResponseStatus, msg string, err error) error {
	return &responseError{status: s, msg: msg, err: err}
}

// parsed is a request after every check that needs no store.
type parsed struct {
	certIDs []certID
	nonce   *pkix.Extension
}

// parse decodes and checks a request: strict DER shape, bounded sizes, a
// CertID hash the responder knows, and the issuer being ours.
func (r *Responder) parse(der []byte) (parsed, error) {
	if len(der) == 0 || len(der) > MaxRequestBytes {
		return parsed{}, fail(MalformedRequest, "request is empty or too large", nil)
	}
	var req ocspRequest
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return parsed{}, fail(MalformedRequest, "request is not an OCSPRequest", err)
	}
	if len(rest) != 0 {
		return parsed{}, fail(MalformedRequest, "trailing data after the request", nil)
	}
	tbs := req.TBSRequest
	if tbs.Version != 0 {
		return parsed{}, fail(MalformedRequest, "unsupported request version", nil)
	}
	if n := len(tbs.RequestList); n == 0 || n > r.cfg.MaxCerts {
		return parsed{}, fail(MalformedRequest, fmt.Sprintf("a request must name 1 to %d certificates", r.cfg.MaxCerts), nil)
	}
	var p parsed
	for i := range tbs.Extensions {
		e := &tbs.Extensions[i]
		if !e.Id.Equal(oidNonce) {
			continue // unknown extensions are ignored (RFC 6960 §4.4)
		}
		if p.nonce != nil || !validNonce(e.Value) {
			return parsed{}, fail(MalformedRequest, "bad nonce", nil)
		}
		p.nonce = &pkix.Extension{Id: oidNonce, Value: e.Value}
	}
	for _, sr := range tbs.RequestList {
		id := sr.CertID
		h, ok := hashOf(id.HashAlgorithm)
		if !ok {
			return parsed{}, fail(Unauthorized, "unsupported CertID hash", nil)
		}
		want := r.issuerHashes[h]
		if !bytes.Equal(id.IssuerNameHash, want[0]) || !bytes.Equal(id.IssuerKeyHash, want[1]) {
			return parsed{}, fail(Unauthorized, "certificate from another issuer", nil)
		}
		if id.SerialNumber == nil {
			return parsed{}, fail(MalformedRequest, "no serial number", nil)
		}
		p.certIDs = append(p.certIDs, id)
	}
	return p, nil
}

// validNonce accepts the nonce extension's value: per RFC 8954 an OCTET
// STRING of 1 to 32 bytes; older clients send the raw bytes, held to the
// same length.
func validNonce(v []byte) bool {
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 {
		return len(inner) >= 1 && len(inner) <= 32
	}
	return len(v) >= 1 && len(v) <= 32
}

func hashOf(alg pkix.AlgorithmIdentifier) (crypto.Hash, bool) {
	// Parameters are absent or NULL for every hash listed.
	if len(alg.Parameters.FullBytes) != 0 && !bytes.Equal(alg.Parameters.FullBytes, asn1.NullBytes) {
		return 0, false
	}
	for _, h := range hashes {
		if alg.Algorithm.Equal(h.oid) {
			return h.hash, true
		}
	}
	return 0, false
}

func (r *Responder) respond(ctx context.Context, der []byte) (Answer, error) {
	p, err := r.parse(der)
	if err != nil {
		return Answer{}, err
	}
	ss, err := r.signingState(ctx)
	if err != nil {
		return Answer{}, err
	}
	now := r.cfg.Now().UTC().Truncate(time.Second)
	next := now.Add(r.cfg.Validity)
	// An answer must not outlive the certificate that signs it: past the
	// signer's notAfter a client can no longer check it, and a client that
	// does not check validity would trust a key whose delegation ended.
	// The signer is renewed long before (ca.OCSPSigner), but not when the
	// issuing CA itself expires sooner or a renewal keeps failing.
	if end := ss.cert.NotAfter.UTC().Truncate(time.Second); next.After(end) {
		next = end
	}
	if !next.After(now) {
		return Answer{}, fail(TryLater, "responder certificate expired", nil)
	}
	resps := make([]singleResponse, len(p.certIDs))
	allRevoked := true
	worst := Good
	for i, id := range p.certIDs {
		st, at, reason, err := r.lookup(ctx, id.SerialNumber)
		if err != nil {
			return Answer{}, err
		}
		allRevoked = allRevoked && st == Revoked
		worst = worse(worst, st)
		cs, err := certStatus(st, at, reason)
		if err != nil {
			return Answer{}, fail(InternalError, "encode status", err)
		}
		resps[i] = singleResponse{CertID: asn1.RawValue{FullBytes: id.Raw}, CertStatus: cs, ThisUpdate: now, NextUpdate: next}
	}
	rd := responseData{ResponderID: ss.responderID, ProducedAt: now, Responses: resps}
	if p.nonce != nil {
		rd.ResponseExtensions = []pkix.Extension{*p.nonce}
	}
	tbs, err := asn1.Marshal(rd)
	if err != nil {
		return Answer{}, fail(InternalError, "encode response data", err)
	}
	sig, err := sign(ss, tbs)
	if err != nil {
		return Answer{}, fail(InternalError, "sign response", err)
	}
	basic, err := asn1.Marshal(basicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: ss.sigAlg,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		Certificates:       ss.certs,
	})
	if err != nil {
		return Answer{}, fail(InternalError, "encode basic response", err)
	}
	out, err := asn1.Marshal(ocspResponse{Status: asn1.Enumerated(Successful),
		Response: responseBytes{ResponseType: oidBasicResponse, Response: basic}})
	if err != nil {
		return Answer{}, fail(InternalError, "encode response", err)
	}
	a := Answer{DER: out, Status: Successful, Nonce: p.nonce != nil, ThisUpdate: now, NextUpdate: next, CertStatus: worst}
	if !a.Nonce {
		a.MaxAge = r.cfg.GoodHTTPMaxAge
		if allRevoked {
			a.MaxAge = r.cfg.HTTPMaxAge
		}
		a.MaxAge = min(a.MaxAge, next.Sub(now))
	}
	return a, nil
}

// worse is the worse of two statuses: Revoked over Unknown over Good.
func worse(a, b Status) Status {
	if a == Revoked || b == Revoked {
		return Revoked
	}
	return max(a, b)
}

// lookup reads a certificate's status from the store. A serial the store
// does not hold is unknown, unless a restore recorded it revoked; a store
// that cannot answer is tryLater, never a guess.
//
// A serial another of our intermediates issued is unknown too: a CertID is
// the pair (issuer, serial), and this issuer never issued that serial, so
// no such certificate exists, exactly as for a serial nobody issued. It is
// not "unauthorized" (RFC 6960 §2.3), which is for an issuer the responder
// does not serve, and which would let Multi try the next responder, which
// refuses the request as naming another issuer anyway; "unknown" answers
// every certificate of a request on its own, and tells a client nothing a
// request naming the right issuer would not.
func (r *Responder) lookup(ctx context.Context, serial *big.Int) (Status, time.Time, int, error) {
	if serial.Sign() <= 0 {
		return Unknown, time.Time{}, 0, nil
	}
	sn := ca.SerialHex(serial)
	c, err := r.cfg.Certs.GetCertificate(ctx, sn)
	if fault.Is(err, fault.NotFound) {
		return r.restored(ctx, sn)
	}
	if err != nil {
		return 0, time.Time{}, 0, fail(TryLater, "read certificate status", err)
	}
	revoked := c.Status == store.CertRevoked || c.RevokedAt != nil
	switch r.issuedBy(c.PEM) {
	case issuedElsewhere:
		return Unknown, time.Time{}, 0, nil
	case issuerUnreadable:
		// No certificate to tell its issuer by: never "good" on a guess,
		// but a revocation stands whoever issued it.
		if !revoked {
			r.cfg.Log.Error("ocsp: stored certificate does not parse; answered unknown", "serial", sn)
			return Unknown, time.Time{}, 0, nil
		}
	}
	if revoked {
		at := c.CreatedAt
		if c.RevokedAt != nil {
			at = *c.RevokedAt
		}
		return Revoked, at, c.RevocationReason, nil
	}
	return Good, time.Time{}, 0, nil
}

// restored answers a serial the certificate records do not hold: revoked
// with the recorded time and reason when a restore learnt its revocation
// from the last published CRL (the certificate was issued after the
// backup), unknown otherwise. The record does not say which intermediate
// issued it; every generation's CRL lists it, and "revoked" grants nothing,
// so every issuer answers it so.
func (r *Responder) restored(ctx context.Context, serial string) (Status, time.Time, int, error) {
	rv, err := r.cfg.Certs.RestoredRevocation(ctx, serial)
	if fault.Is(err, fault.NotFound) {
		return Unknown, time.Time{}, 0, nil
	}
	if err != nil {
		return 0, time.Time{}, 0, fail(TryLater, "read restored revocation", err)
	}
	return Revoked, rv.RevokedAt, rv.Reason, nil
}

// issuerMatch is what a stored certificate says about its issuer.
type issuerMatch int

const (
	issuedHere issuerMatch = iota
	issuedElsewhere
	issuerUnreadable
)

// issuedBy tells whether the stored certificate (PEM) was issued by this
// responder's issuer: by its name and, when both carry them, its key
// identifier, else its signature. The records are the CA's own, so the
// name and key identifier tell the intermediates apart (a rotation gives
// each generation its own name and key) without a signature check per
// request.
func (r *Responder) issuedBy(certPEM string) issuerMatch {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil || b.Type != "CERTIFICATE" {
		return issuerUnreadable
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return issuerUnreadable
	}
	is := r.cfg.Issuer
	switch {
	case !bytes.Equal(c.RawIssuer, is.RawSubject):
		return issuedElsewhere
	case len(c.AuthorityKeyId) > 0 && len(is.SubjectKeyId) > 0:
		if !bytes.Equal(c.AuthorityKeyId, is.SubjectKeyId) {
			return issuedElsewhere
		}
	case c.CheckSignatureFrom(is) != nil:
		return issuedElsewhere
	}
	return issuedHere
}

// signingState returns the per-credential parts of a response, rebuilt only
// when the ca package renews the responder certificate.
func (r *Responder) signingState(ctx context.Context) (*signingState, error) {
	cred, err := r.cfg.Signer.Current(ctx)
	if err != nil {
		return nil, fail(TryLater, "responder credential", err)
	}
	if ss := r.signing.Load(); ss != nil && ss.cert == cred.Cert && ss.signer == cred.Signer {
		return ss, nil
	}
	keyBits, err := publicKeyBits(cred.Cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fail(InternalError, "responder key", err)
	}
	kh := sha1.Sum(keyBits)
	inner, err := asn1.Marshal(kh[:])
	if err != nil {
		return nil, fail(InternalError, "responder id", err)
	}
	ss := &signingState{cert: cred.Cert, signer: cred.Signer,
		// ResponderID byKey: [2] EXPLICIT KeyHash.
		responderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: inner},
		certs:       []asn1.RawValue{{FullBytes: cred.Cert.Raw}},
	}
	switch k := cred.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		ss.sigAlg, ss.hash = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}, crypto.SHA256
		if k.Curve == elliptic.P384() || k.Curve == elliptic.P521() {
			ss.sigAlg, ss.hash = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}, crypto.SHA384
		}
	case *rsa.PublicKey:
		ss.sigAlg = pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}
		ss.hash = crypto.SHA256
	case ed25519.PublicKey:
		ss.sigAlg = pkix.AlgorithmIdentifier{Algorithm: oidEd25519}
	default:
		return nil, fail(InternalError, "unsupported responder key type", nil)
	}
	r.signing.Store(ss)
	return ss, nil
}

func sign(ss *signingState, tbs []byte) ([]byte, error) {
	if ss.hash == 0 {
		return ss.signer.Sign(rand.Reader, tbs, crypto.Hash(0))
	}
	return ss.signer.Sign(rand.Reader, digest(ss.hash, tbs), ss.hash)
}

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}

// publicKeyBits returns the subjectPublicKey BIT STRING contents of a
// SubjectPublicKeyInfo: what CertID's issuerKeyHash and ResponderID's byKey
// hash (RFC 6960 §4.1.1, §4.2.1).
func publicKeyBits(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, err
	}
	return info.PublicKey.RightAlign(), nil
}
