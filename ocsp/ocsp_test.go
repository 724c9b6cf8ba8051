package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

var pass = []byte("correct horse battery staple")

// env is a responder over a real CA and a real store holding one leaf.
type env struct {
	r      *Responder
	st     *store.Store
	ca     *ca.CA
	signer *ca.OCSPSigner
	dir    string // the CA directory
	leaf   *x509.Certificate
	serial string
	clock  *testclock.Clock
}

func dsnFor(t testing.TB, backend string) string {
	if backend == "postgres" {
		return testdb.Postgres(t)
	}
	return testdb.SQLite(t)
}

func newEnv(t testing.TB, dsn string) *env {
	t.Helper()
	ctx := context.Background()
	clk := testclock.New(time.Now().Truncate(time.Second))
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := c.NewOCSPSigner(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Certs: st, Signer: signer, Issuer: c.Intermediate(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{r: r, st: st, ca: c, signer: signer, dir: dir, clock: clk}
	if _, err := st.CreateFleet(ctx, store.Fleet{Name: "f"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateProfile(ctx, store.Profile{Name: "p", KeyTypes: []string{"P-256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	e.leaf, e.serial = e.enroll(t, "dev-1")
	return e
}

// enroll issues a real leaf and records it as the store's enrollment does.
func (e *env) enroll(t testing.TB, id string) (*x509.Certificate, string) {
	t.Helper()
	ctx := context.Background()
	iss, err := e.ca.Issue(ctx, ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))),
		Fleet: "f", DeviceID: id, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateTokenBatch(ctx, store.TokenBatch{ID: "b-" + id, Fleet: "f", Profile: "p",
		ExpiresAt: e.clock.Now().Add(time.Hour)}, []store.NewToken{{Hash: "h-" + id}}, nil); err != nil {
		t.Fatal(err)
	}
	serial := ca.SerialHex(iss.Leaf.SerialNumber)
	if _, err := e.st.CompleteEnrollment(ctx, store.Enrollment{TokenHash: "h-" + id,
		Device: store.Device{ID: id, Fleet: "f", Profile: "p"},
		Cert: store.Certificate{Serial: serial, Fingerprint: "fp-" + serial, DeviceID: id,
			NotBefore: iss.Leaf.NotBefore, NotAfter: iss.Leaf.NotAfter, PEM: string(ca.EncodePEM(iss.Leaf))},
		At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	return iss.Leaf, serial
}

// request builds a DER OCSPRequest for serials of issuer, hashed with h.
func request(t testing.TB, issuer *x509.Certificate, h crypto.Hash, nonce []byte, serials ...*big.Int) []byte {
	t.Helper()
	keyBits, err := publicKeyBits(issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	var oid asn1.ObjectIdentifier
	for _, x := range hashes {
		if x.hash == h {
			oid = x.oid
		}
	}
	var tbs tbsRequest
	for _, s := range serials {
		tbs.RequestList = append(tbs.RequestList, singleRequest{CertID: certID{
			HashAlgorithm:  pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue},
			IssuerNameHash: digest(h, issuer.RawSubject), IssuerKeyHash: digest(h, keyBits), SerialNumber: s}})
	}
	if nonce != nil {
		v, err := asn1.Marshal(nonce)
		if err != nil {
			t.Fatal(err)
		}
		tbs.Extensions = []pkix.Extension{{Id: oidNonce, Value: v}}
	}
	der, err := asn1.Marshal(ocspRequest{TBSRequest: tbs})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// single is one certificate's answer as a client reads it.
type single struct {
	status     Status
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time
	certID     []byte
}

// reply is a response as a strict client reads it: the signature is
// checked against the embedded responder certificate, and that certificate
// against the issuer and its OCSP-signing delegation.
type reply struct {
	status  ResponseStatus
	singles []single
	nonce   []byte
}

func readReply(t testing.TB, der []byte, issuer *x509.Certificate) reply {
	t.Helper()
	var outer struct {
		Status   asn1.Enumerated
		Response responseBytes `asn1:"explicit,tag:0,optional"`
	}
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 {
		t.Fatalf("response is not an OCSPResponse: %v (%x)", err, der)
	}
	out := reply{status: ResponseStatus(outer.Status)}
	if out.status != Successful {
		if outer.Response.ResponseType != nil {
			t.Fatal("error response carries response bytes")
		}
		return out
	}
	if !outer.Response.ResponseType.Equal(oidBasicResponse) {
		t.Fatalf("response type %v", outer.Response.ResponseType)
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		t.Fatal(err)
	}
	if len(basic.Certificates) != 1 {
		t.Fatalf("want the responder certificate in the response, got %d certificates", len(basic.Certificates))
	}
	responder, err := x509.ParseCertificate(basic.Certificates[0].FullBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := responder.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("responder certificate not issued by the issuer: %v", err)
	}
	if len(responder.ExtKeyUsage) != 1 || responder.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || responder.IsCA {
		t.Fatalf("responder certificate EKU %v IsCA %v", responder.ExtKeyUsage, responder.IsCA)
	}
	if err := responder.CheckSignature(x509.ECDSAWithSHA256, basic.TBSResponseData.FullBytes, basic.Signature.Bytes); err != nil {
		t.Fatalf("response signature: %v", err)
	}
	var rd responseData
	if _, err := asn1.Unmarshal(basic.TBSResponseData.FullBytes, &rd); err != nil {
		t.Fatal(err)
	}
	for _, e := range rd.ResponseExtensions {
		if e.Id.Equal(oidNonce) {
			if _, err := asn1.Unmarshal(e.Value, &out.nonce); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, sr := range rd.Responses {
		s := single{thisUpdate: sr.ThisUpdate, nextUpdate: sr.NextUpdate, certID: sr.CertID.FullBytes}
		cs := sr.CertStatus
		if cs.Class != asn1.ClassContextSpecific {
			t.Fatalf("cert status class %d", cs.Class)
		}
		switch cs.Tag {
		case 0:
			s.status = Good
		case 2:
			s.status = Unknown
		case 1:
			s.status = Revoked
			var ri revokedInfo
			if _, err := asn1.UnmarshalWithParams(cs.FullBytes, &ri, "tag:1"); err != nil {
				t.Fatalf("revoked info: %v", err)
			}
			s.revokedAt, s.reason = ri.RevocationTime, int(ri.Reason)
		default:
			t.Fatalf("cert status tag %d", cs.Tag)
		}
		out.singles = append(out.singles, s)
	}
	return out
}

// TestStatuses: good, revoked with time and reason, unknown, several at
// once, each CertID hash, the nonce echoed, and the validity window.
func TestStatuses(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, dsnFor(t, backend))
			other, otherSerial := e.enroll(t, "dev-2")
			inter := e.ca.Intermediate()

			for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
				rep := readReply(t, e.r.Respond(ctx, request(t, inter, h, nil, e.leaf.SerialNumber)).DER, inter)
				if rep.status != Successful || len(rep.singles) != 1 || rep.singles[0].status != Good {
					t.Fatalf("%v: %+v", h, rep)
				}
			}

			nonce := []byte("0123456789abcdef")
			req := request(t, inter, crypto.SHA1, nonce, e.leaf.SerialNumber, other.SerialNumber, big.NewInt(0x7eadbeef))
			a := e.r.Respond(ctx, req)
			rep := readReply(t, a.DER, inter)
			if !bytes.Equal(rep.nonce, nonce) || !a.Nonce || a.MaxAge != 0 {
				t.Errorf("nonce %q answer %+v", rep.nonce, a)
			}
			want := []Status{Good, Good, Unknown}
			for i, s := range rep.singles {
				if s.status != want[i] {
					t.Errorf("cert %d: %v, want %v", i, s.status, want[i])
				}
				now := e.clock.Now().UTC()
				if !s.thisUpdate.Equal(now) || !s.nextUpdate.Equal(now.Add(time.Hour)) {
					t.Errorf("window %v–%v, now %v", s.thisUpdate, s.nextUpdate, now)
				}
			}
			// The CertID comes back exactly as asked.
			var parsedReq ocspRequest
			if _, err := asn1.Unmarshal(req, &parsedReq); err != nil {
				t.Fatal(err)
			}
			for i, s := range rep.singles {
				if !bytes.Equal(s.certID, parsedReq.TBSRequest.RequestList[i].CertID.Raw) {
					t.Errorf("cert %d: CertID not echoed", i)
				}
			}

			revokedAt := e.clock.Now().Add(-time.Minute)
			if err := e.st.RevokeCertificate(ctx, otherSerial, 1, revokedAt); err != nil {
				t.Fatal(err)
			}
			a = e.r.Respond(ctx, request(t, inter, crypto.SHA256, nil, e.leaf.SerialNumber, other.SerialNumber))
			// Holding a "good", the answer must not sit in an HTTP cache:
			// it would stay good there after a revocation.
			if a.Nonce || a.MaxAge != 0 {
				t.Errorf("answer without nonce: %+v", a)
			}
			if a := e.r.Respond(ctx, request(t, inter, crypto.SHA256, nil, other.SerialNumber)); a.MaxAge != time.Minute {
				t.Errorf("all-revoked answer may be cached a minute, got %v", a.MaxAge)
			}
			rep = readReply(t, a.DER, inter)
			if rep.singles[0].status != Good || rep.singles[1].status != Revoked {
				t.Fatalf("after revoking the second: %+v", rep.singles)
			}
			if r := rep.singles[1]; !r.revokedAt.Equal(revokedAt.UTC()) || r.reason != 1 {
				t.Errorf("revoked at %v reason %d, want %v reason 1", r.revokedAt, r.reason, revokedAt)
			}
			// Reason unspecified is left out, as in a CRL.
			if _, err := e.st.RevokeDevice(ctx, "dev-1", 0, revokedAt, nil); err != nil {
				t.Fatal(err)
			}
			rep = readReply(t, e.r.Respond(ctx, request(t, inter, crypto.SHA1, nil, e.leaf.SerialNumber)).DER, inter)
			if s := rep.singles[0]; s.status != Revoked || s.reason != 0 {
				t.Errorf("device revoked: %+v", s)
			}
		})
	}
}

// otherIssuer is a CA certificate that is not Gatehouse's.
func otherIssuer(t testing.TB) *x509.Certificate {
	key := testpki.Key(t, "P-256").(*ecdsa.PrivateKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Someone Else CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBadRequests: every request the responder cannot answer gets an OCSP
// error status, never a signed guess.
func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testdb.SQLite(t))
	inter := e.ca.Intermediate()
	good := request(t, inter, crypto.SHA1, nil, e.leaf.SerialNumber)
	withRequests := func(n int) []byte {
		s := make([]*big.Int, n)
		for i := range s {
			s[i] = big.NewInt(int64(i + 1))
		}
		return request(t, inter, crypto.SHA1, nil, s...)
	}
	wrongKey := func() []byte {
		// Our issuer's name, someone else's key.
		var req ocspRequest
		if _, err := asn1.Unmarshal(good, &req); err != nil {
			t.Fatal(err)
		}
		req.TBSRequest.RequestList[0].CertID.Raw = nil // else Marshal reuses the parsed bytes
		req.TBSRequest.RequestList[0].CertID.IssuerKeyHash = bytes.Repeat([]byte{1}, 20)
		der, err := asn1.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	md5 := func() []byte {
		var req ocspRequest
		if _, err := asn1.Unmarshal(good, &req); err != nil {
			t.Fatal(err)
		}
		req.TBSRequest.RequestList[0].CertID.Raw = nil
		req.TBSRequest.RequestList[0].CertID.HashAlgorithm.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
		der, _ := asn1.Marshal(req)
		return der
	}
	version2 := func() []byte {
		var req ocspRequest
		if _, err := asn1.Unmarshal(good, &req); err != nil {
			t.Fatal(err)
		}
		req.TBSRequest.Version = 1
		der, _ := asn1.Marshal(req)
		return der
	}
	nonce := func(n []byte) []byte { return request(t, inter, crypto.SHA1, n, e.leaf.SerialNumber) }
	for _, tc := range []struct {
		name string
		req  []byte
		want ResponseStatus
	}{
		{"empty", nil, MalformedRequest},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), MalformedRequest},
		{"truncated", good[:len(good)-3], MalformedRequest},
		{"trailing data", append(append([]byte{}, good...), 0x00), MalformedRequest},
		{"huge", append(append([]byte{}, good...), make([]byte, MaxRequestBytes)...), MalformedRequest},
		{"no certificates", withRequests(0), MalformedRequest},
		{"too many certificates", withRequests(9), MalformedRequest},
		{"version 2", version2(), MalformedRequest},
		{"empty nonce", nonce([]byte{}), MalformedRequest},
		{"33-byte nonce", nonce(bytes.Repeat([]byte{7}, 33)), MalformedRequest},
		{"other issuer", request(t, otherIssuer(t), crypto.SHA1, nil, e.leaf.SerialNumber), Unauthorized},
		{"issuer key mismatch", wrongKey(), Unauthorized},
		{"unsupported hash", md5(), Unauthorized},
		{"root instead of issuer", request(t, e.ca.Root(), crypto.SHA256, nil, e.leaf.SerialNumber), Unauthorized},
		{"8 certificates is fine", withRequests(8), Successful},
		{"32-byte nonce is fine", nonce(bytes.Repeat([]byte{7}, 32)), Successful},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.r.Respond(ctx, tc.req)
			if a.Status != tc.want {
				t.Fatalf("status %d, want %d", a.Status, tc.want)
			}
			rep := readReply(t, a.DER, inter)
			if rep.status != tc.want {
				t.Fatalf("encoded status %d, want %d", rep.status, tc.want)
			}
			if tc.want != Successful && (a.MaxAge != 0 || len(a.DER) != 5) {
				t.Fatalf("error answer %+v", a)
			}
		})
	}
}

// failingCerts is a store that cannot answer.
type failingCerts struct{}

func (failingCerts) GetCertificate(context.Context, string) (store.Certificate, error) {
	return store.Certificate{}, errors.New("connection refused")
}

func (failingCerts) RestoredRevocation(context.Context, string) (store.RevokedCert, error) {
	return store.RevokedCert{}, errors.New("connection refused")
}

type notFound struct{}

func (notFound) GetCertificate(_ context.Context, s string) (store.Certificate, error) {
	return store.Certificate{}, fault.New(fault.NotFound, "certificate %s not found", s)
}

func (notFound) RestoredRevocation(_ context.Context, s string) (store.RevokedCert, error) {
	return store.RevokedCert{}, fault.New(fault.NotFound, "no restored revocation of %s", s)
}

// TestStoreDown: a store that cannot answer is tryLater, never "good" and
// never "unknown".
func TestStoreDown(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	inter := e.ca.Intermediate()
	for _, tc := range []struct {
		certs Certs
		want  ResponseStatus
	}{{failingCerts{}, TryLater}, {notFound{}, Successful}} {
		r, err := New(Config{Certs: tc.certs, Signer: e.signer, Issuer: inter})
		if err != nil {
			t.Fatal(err)
		}
		a := r.Respond(context.Background(), request(t, inter, crypto.SHA1, nil, e.leaf.SerialNumber))
		if a.Status != tc.want {
			t.Errorf("%T: status %d, want %d", tc.certs, a.Status, tc.want)
		}
	}
}

// TestResponderRenewal: the responder certificate is renewed once a third
// of its lifetime is left, and responses switch to the new one.
func TestResponderRenewal(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testdb.SQLite(t))
	first, err := e.signer.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := first.Cert.NotAfter.Sub(first.Cert.NotBefore); d < 7*24*time.Hour || d > 7*24*time.Hour+2*time.Minute {
		t.Errorf("responder validity %v", d)
	}
	var noCheck bool
	for _, x := range first.Cert.Extensions {
		noCheck = noCheck || x.Id.Equal(oidOCSPNoCheckTest) && bytes.Equal(x.Value, asn1.NullBytes)
	}
	if !noCheck || len(first.Cert.OCSPServer) != 0 || len(first.Cert.URIs) != 0 ||
		first.Cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("responder certificate: nocheck %v, OCSP %v, URIs %v, KU %v", noCheck, first.Cert.OCSPServer, first.Cert.URIs, first.Cert.KeyUsage)
	}
	e.clock.Add(4 * 24 * time.Hour)
	if c, _ := e.signer.Current(ctx); c.Cert != first.Cert {
		t.Fatal("renewed too early")
	}
	e.clock.Add(24 * time.Hour)
	second, err := e.signer.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Cert == first.Cert || second.Cert.NotAfter.Before(e.clock.Now().Add(6*24*time.Hour)) {
		t.Fatalf("not renewed: %v", second.Cert.NotAfter)
	}
	if publicKeysEqual(second.Signer.Public(), first.Signer.Public()) {
		t.Error("renewal kept the old key")
	}
	a := e.r.Respond(ctx, request(t, e.ca.Intermediate(), crypto.SHA1, nil, e.leaf.SerialNumber))
	var outer ocspResponse
	if _, err := asn1.Unmarshal(a.DER, &outer); err != nil {
		t.Fatal(err)
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(basic.Certificates[0].FullBytes, second.Cert.Raw) {
		t.Error("response still carries the old responder certificate")
	}
}

// fixedSigner hands out one credential and never renews it: a responder
// certificate whose renewal keeps failing, or whose issuing CA ends soon.
type fixedSigner struct{ cred ca.OCSPCredential }

func (f fixedSigner) Current(context.Context) (ca.OCSPCredential, error) { return f.cred, nil }

// TestAnswerNeverOutlivesSigner: nextUpdate (and the HTTP max-age) stop at
// the responder certificate's notAfter; past it the answer is tryLater.
func TestAnswerNeverOutlivesSigner(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, testdb.SQLite(t))
	inter := e.ca.Intermediate()
	cred, err := e.signer.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.RevokeCertificate(ctx, e.serial, 1, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Certs: e.st, Signer: fixedSigner{cred}, Issuer: inter, Now: e.clock.Now, HTTPMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	end := cred.Cert.NotAfter.UTC()
	for _, tc := range []struct {
		left     time.Duration // signer lifetime left at the request
		wantNext time.Time
		want     ResponseStatus
	}{
		{2 * time.Hour, e.clock.Now().UTC().Add(time.Hour), Successful},
		{10 * time.Minute, end, Successful},
		{0, time.Time{}, TryLater},
		{-time.Minute, time.Time{}, TryLater},
	} {
		e.clock.Add(end.Sub(e.clock.Now()) - tc.left)
		if tc.left == 2*time.Hour {
			tc.wantNext = e.clock.Now().UTC().Add(time.Hour)
		}
		a := r.Respond(ctx, request(t, inter, crypto.SHA1, nil, e.leaf.SerialNumber))
		if a.Status != tc.want {
			t.Fatalf("%v left: status %d, want %d", tc.left, a.Status, tc.want)
		}
		if tc.want != Successful {
			continue
		}
		rep := readReply(t, a.DER, inter)
		if got := rep.singles[0].nextUpdate; !got.Equal(tc.wantNext) || a.NextUpdate.After(end) {
			t.Errorf("%v left: nextUpdate %v, want %v (signer ends %v)", tc.left, got, tc.wantNext, end)
		}
		if a.ThisUpdate.Add(a.MaxAge).After(end) {
			t.Errorf("%v left: cacheable %v, past the signer's end", tc.left, a.MaxAge)
		}
	}
}

var oidOCSPNoCheckTest = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	return a.(interface{ Equal(crypto.PublicKey) bool }).Equal(b)
}

// FuzzRespond: no input makes the responder panic or answer with anything
// but a well-formed OCSPResponse; anything that is not a request for our
// issuer is an error status.
func FuzzRespond(f *testing.F) {
	e := newEnv(f, testdb.SQLite(f))
	inter := e.ca.Intermediate()
	f.Add(request(f, inter, crypto.SHA1, []byte("nonce-nonce"), e.leaf.SerialNumber))
	f.Add(request(f, inter, crypto.SHA256, nil, e.leaf.SerialNumber, big.NewInt(5)))
	f.Add(request(f, otherIssuer(f), crypto.SHA1, nil, big.NewInt(1)))
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		a := e.r.Respond(context.Background(), der)
		var outer struct {
			Status   asn1.Enumerated
			Response responseBytes `asn1:"explicit,tag:0,optional"`
		}
		if rest, err := asn1.Unmarshal(a.DER, &outer); err != nil || len(rest) != 0 {
			t.Fatalf("answer is not an OCSPResponse: %v", err)
		}
		if ResponseStatus(outer.Status) != a.Status {
			t.Fatalf("status %d encoded as %d", a.Status, outer.Status)
		}
		switch a.Status {
		case Successful:
			readReply(t, a.DER, inter)
		case MalformedRequest, Unauthorized:
		default:
			t.Fatalf("status %d for input %x", a.Status, der)
		}
	})
}

// BenchmarkRespond measures a signed answer from the real store, one
// goroutine and all cores, against the bare signature it contains.
func BenchmarkRespond(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, testdb.SQLite(b))
	req := request(b, e.ca.Intermediate(), crypto.SHA1, []byte("0123456789abcdef"), e.leaf.SerialNumber)
	if a := e.r.Respond(ctx, req); a.Status != Successful {
		b.Fatal(a.Status)
	}
	b.Run("respond", func(b *testing.B) {
		for b.Loop() {
			e.r.Respond(ctx, req)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resp/s")
	})
	b.Run("respond-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e.r.Respond(ctx, req)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resp/s")
	})
	b.Run("baseline-sign-only", func(b *testing.B) {
		cred, _ := e.signer.Current(ctx)
		d := digest(crypto.SHA256, req)
		for b.Loop() {
			if _, err := cred.Signer.Sign(rand.Reader, d, crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
	})
	b.Run("baseline-store-lookup", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.st.GetCertificate(ctx, e.serial); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookup/s")
	})
}
