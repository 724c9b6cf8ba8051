package est

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/store"
)

type fakeEnroller struct {
	enrolls []enroll.Request
	renews  []enroll.RenewRequest
	idevids []enroll.IDevIDRequest
	leaf    *x509.Certificate
	caKey   crypto.Signer
}

func (f *fakeEnroller) EnrollIDevID(_ context.Context, r enroll.IDevIDRequest) (enroll.Result, error) {
	f.idevids = append(f.idevids, r)
	return enroll.Result{Certificate: f.leaf}, nil
}

// Enroll answers a server-generated key with a certificate for it, signed
// by caKey, and anything else with leaf.
func (f *fakeEnroller) Enroll(_ context.Context, r enroll.Request) (enroll.Result, error) {
	f.enrolls = append(f.enrolls, r)
	if !r.ServerKey {
		return enroll.Result{Certificate: f.leaf}, nil
	}
	csr, err := enroll.ParseCSR(r.CSR)
	if err != nil {
		return enroll.Result{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: csr.Subject, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.leaf, csr.PublicKey, f.caKey)
	if err != nil {
		return enroll.Result{}, err
	}
	c, err := x509.ParseCertificate(der)
	return enroll.Result{Certificate: c}, err
}

func (f *fakeEnroller) Renew(_ context.Context, r enroll.RenewRequest) (enroll.Result, error) {
	f.renews = append(f.renews, r)
	return enroll.Result{Certificate: f.leaf}, nil
}

type fakeCA struct{ chain []*x509.Certificate }

func (f fakeCA) ChainPEM() []byte {
	var out []byte
	for _, c := range f.chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Bootstrap tokens of the rig, well formed (secret.WellFormed): of
// profile line, other, keygen (server_keygen), rsa (server_keygen, RSA
// only), and one of keygen that was used.
var (
	tokLine    = secret.New(enroll.BootstrapPrefix)
	tokOther   = secret.New(enroll.BootstrapPrefix)
	tokKeygen  = secret.New(enroll.BootstrapPrefix)
	tokRSA     = secret.New(enroll.BootstrapPrefix)
	tokUsed    = secret.New(enroll.BootstrapPrefix)
	tokUnknown = secret.New(enroll.BootstrapPrefix)
	tokExpired = secret.New(enroll.BootstrapPrefix)
	tokRevoked = secret.New(enroll.BootstrapPrefix)
)

// fakeStore holds profiles, token hash → profile, serial → device → profile.
type fakeStore struct {
	profiles map[string]store.Profile
	tokens   map[string]string
	certs    map[string]string
	fps      map[string]string // serial → fingerprint
	devices  map[string]string
}

func (f fakeStore) GetProfile(_ context.Context, name string) (store.Profile, error) {
	p, ok := f.profiles[name]
	if !ok {
		return p, fault.New(fault.NotFound, "no profile")
	}
	return p, nil
}

func (f fakeStore) GetEnrollmentToken(_ context.Context, hash string) (store.BootstrapToken, store.Profile, error) {
	p, ok := f.tokens[hash]
	if !ok {
		return store.BootstrapToken{}, store.Profile{}, fault.New(fault.NotFound, "no token")
	}
	tok := store.BootstrapToken{Hash: hash, ExpiresAt: time.Now().Add(time.Hour)}
	switch hash {
	case secret.Hash(tokUsed):
		tok.UsedAt = new(time.Now())
	case secret.Hash(tokExpired):
		tok.ExpiresAt = time.Now().Add(-time.Minute)
	case secret.Hash(tokRevoked):
		tok.BatchRevokedAt = new(time.Now())
	}
	return tok, f.profiles[p], nil
}

func (f fakeStore) GetCertificate(_ context.Context, serial string) (store.Certificate, error) {
	d, ok := f.certs[serial]
	if !ok {
		return store.Certificate{}, fault.New(fault.NotFound, "no certificate")
	}
	return store.Certificate{Serial: serial, DeviceID: d, Fingerprint: f.fps[serial]}, nil
}

func (f fakeStore) GetDevice(_ context.Context, id string) (store.Device, error) {
	p, ok := f.devices[id]
	if !ok {
		return store.Device{}, fault.New(fault.NotFound, "no device")
	}
	return store.Device{ID: id, Profile: p}, nil
}

type rig struct {
	srv  *Server
	enr  *fakeEnroller
	e    *echo.Echo
	leaf *x509.Certificate
	ca   []*x509.Certificate
}

func newRig(t *testing.T) *rig {
	t.Helper()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{enr: &fakeEnroller{caKey: leafKey}, e: echo.New(), leaf: selfSignedKey(t, "leaf", leafKey),
		ca: []*x509.Certificate{selfSigned(t, "issuing"), selfSigned(t, "root")}}
	r.enr.leaf = r.leaf
	st := fakeStore{
		profiles: map[string]store.Profile{"line": {Name: "line", KeyTypes: []string{"P-256"}}, "other": {Name: "other"},
			"keygen": {Name: "keygen", KeyTypes: []string{"Ed25519", "P-384", "P-256"}, ServerKeygen: new(true)},
			"rsa":    {Name: "rsa", KeyTypes: []string{"RSA"}, ServerKeygen: new(true)}},
		tokens: map[string]string{secret.Hash(tokLine): "line", secret.Hash(tokOther): "other",
			secret.Hash(tokKeygen): "keygen", secret.Hash(tokRSA): "rsa", secret.Hash(tokUsed): "keygen",
			secret.Hash(tokExpired): "keygen", secret.Hash(tokRevoked): "keygen"},
		certs:   map[string]string{"7": "cam-1"}, // selfSigned's serial
		fps:     map[string]string{"7": fingerprint(r.leaf)},
		devices: map[string]string{"cam-1": "other"},
	}
	if r.srv, err = New(Config{Enroll: r.enr, CA: fakeCA{r.ca}, Store: st}); err != nil {
		t.Fatal(err)
	}
	return r
}

type call struct {
	method, op, label string
	tls               bool
	peer              *x509.Certificate
	user, pass        string
	ct, body          string
}

func (r *rig) do(c call) (*httptest.ResponseRecorder, error) {
	req := httptest.NewRequest(c.method, "/.well-known/est/"+c.op, strings.NewReader(c.body))
	if c.tls {
		req.TLS = &tls.ConnectionState{}
		if c.peer != nil {
			req.TLS.PeerCertificates = []*x509.Certificate{c.peer}
		}
	}
	if c.pass != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	if c.ct != "" {
		req.Header.Set("Content-Type", c.ct)
	}
	rec := httptest.NewRecorder()
	ctx := r.e.NewContext(req, rec)
	if c.label != "" {
		ctx.SetParamNames("label")
		ctx.SetParamValues(c.label)
	}
	h := map[string]echo.HandlerFunc{"cacerts": r.srv.cacerts, "simpleenroll": r.srv.simpleEnroll,
		"simplereenroll": r.srv.simpleReenroll, "csrattrs": r.srv.csrAttrs, "serverkeygen": r.srv.serverKeygen}[c.op]
	return rec, h(ctx)
}

// certsIn decodes a certs-only answer into its certificates' raw bytes.
func certsIn(t *testing.T, rec *httptest.ResponseRecorder) [][]byte {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/pkcs7-mime; smime-type=certs-only" ||
		rec.Header().Get("Content-Transfer-Encoding") != "base64" || rec.Code != http.StatusOK {
		t.Fatalf("%d %q %q", rec.Code, ct, rec.Header().Get("Content-Transfer-Encoding"))
	}
	der, err := DecodeBase64(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	var sd signedData
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, c := range sd.Certificates {
		out = append(out, c.FullBytes)
	}
	return out
}

func TestRefusals(t *testing.T) {
	r := newRig(t)
	der := newCSR(t)
	csr := base64.StdEncoding.EncodeToString(der)
	der[len(der)-5] ^= 0xff // inside the signature
	badSig := base64.StdEncoding.EncodeToString(der)
	const p10 = "application/pkcs10"
	for _, tc := range []struct {
		name string
		c    call
		want fault.Code
	}{
		{"cacerts over http", call{method: "GET", op: "cacerts"}, TLSRequired},
		{"enroll over http", call{method: "POST", op: "simpleenroll", pass: tokLine, ct: p10, body: csr}, TLSRequired},
		{"reenroll over http", call{method: "POST", op: "simplereenroll", ct: p10, body: csr}, TLSRequired},
		{"csrattrs over http", call{method: "GET", op: "csrattrs", label: "line"}, TLSRequired},
		{"unknown label", call{method: "GET", op: "cacerts", label: "nope", tls: true}, fault.NotFound},
		{"label outside the grammar", call{method: "GET", op: "cacerts", label: "a/b", tls: true}, fault.NotFound},
		{"enroll without credentials", call{method: "POST", op: "simpleenroll", tls: true, ct: p10, body: csr}, fault.Unauthenticated},
		{"enroll with wrong content type", call{method: "POST", op: "simpleenroll", tls: true, pass: tokLine, ct: "application/json", body: csr}, fault.InvalidArgument},
		{"enroll with bad base64", call{method: "POST", op: "simpleenroll", tls: true, pass: tokLine, ct: p10, body: "%%%"}, fault.InvalidArgument},
		{"enroll with a bad signature", call{method: "POST", op: "simpleenroll", tls: true, pass: tokLine, ct: p10, body: badSig}, fault.CSRInvalid},
		// Not a token at all: refused before the CSR is looked at, so a
		// bad body does not change the answer.
		{"malformed token", call{method: "POST", op: "simpleenroll", tls: true, pass: "ghb_x", ct: p10, body: badSig}, fault.TokenInvalid},
		{"admin token as password", call{method: "POST", op: "simpleenroll", tls: true, pass: "gha_" + tokLine[4:], ct: p10, body: csr}, fault.TokenInvalid},
		{"token of another label", call{method: "POST", op: "simpleenroll", label: "line", tls: true, pass: tokOther, ct: p10, body: csr}, fault.PermissionDenied},
		{"unknown token under a label", call{method: "POST", op: "simpleenroll", label: "line", tls: true, pass: tokUnknown, ct: p10, body: csr}, fault.TokenInvalid},
		{"reenroll without client certificate", call{method: "POST", op: "simplereenroll", tls: true, ct: p10, body: csr}, fault.Unauthenticated},
		{"reenroll under another label", call{method: "POST", op: "simplereenroll", label: "line", tls: true, peer: r.leaf, ct: p10, body: csr}, fault.PermissionDenied},
		{"serverkeygen over http", call{method: "POST", op: "serverkeygen", pass: tokKeygen, ct: p10, body: csr}, TLSRequired},
		{"serverkeygen without credentials", call{method: "POST", op: "serverkeygen", tls: true, ct: p10, body: csr}, fault.Unauthenticated},
		{"serverkeygen with a malformed token", call{method: "POST", op: "serverkeygen", tls: true, pass: "ghb_x", ct: p10, body: csr}, fault.TokenInvalid},
		{"serverkeygen with an unknown token", call{method: "POST", op: "serverkeygen", tls: true, pass: tokUnknown, ct: p10, body: csr}, fault.TokenInvalid},
		{"serverkeygen off for the token's profile", call{method: "POST", op: "serverkeygen", tls: true, pass: tokLine, ct: p10, body: csr}, fault.PermissionDenied},
		{"serverkeygen off under its label", call{method: "POST", op: "serverkeygen", label: "line", tls: true, pass: tokLine, ct: p10, body: csr}, fault.PermissionDenied},
		{"serverkeygen token of another label", call{method: "POST", op: "serverkeygen", label: "line", tls: true, pass: tokKeygen, ct: p10, body: csr}, fault.PermissionDenied},
		{"serverkeygen with a used token", call{method: "POST", op: "serverkeygen", tls: true, pass: tokUsed, ct: p10, body: csr}, fault.TokenUsed},
		// Refused before a key is made (the enroller sees nothing).
		{"serverkeygen with an expired token", call{method: "POST", op: "serverkeygen", tls: true, pass: tokExpired, ct: p10, body: csr}, fault.TokenExpired},
		{"serverkeygen with a revoked batch's token", call{method: "POST", op: "serverkeygen", tls: true, pass: tokRevoked, ct: p10, body: csr}, fault.TokenRevoked},
		{"serverkeygen with a bad signature", call{method: "POST", op: "serverkeygen", tls: true, pass: tokKeygen, ct: p10, body: badSig}, fault.CSRInvalid},
		{"serverkeygen with bad base64", call{method: "POST", op: "serverkeygen", tls: true, pass: tokKeygen, ct: p10, body: "%%%"}, fault.InvalidArgument},
		{"serverkeygen with wrong content type", call{method: "POST", op: "serverkeygen", tls: true, pass: tokKeygen, ct: "text/plain", body: csr}, fault.InvalidArgument},
		{"IDevID enroll with bad base64", call{method: "POST", op: "simpleenroll", tls: true, peer: r.leaf, ct: p10, body: "%%%"}, fault.InvalidArgument},
		{"IDevID enroll with wrong content type", call{method: "POST", op: "simpleenroll", tls: true, peer: r.leaf, ct: "text/plain", body: csr}, fault.InvalidArgument},
		{"serverkeygen with an IDevID", call{method: "POST", op: "serverkeygen", tls: true, peer: r.leaf, ct: p10, body: csr}, fault.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.enr.enrolls) + len(r.enr.renews) + len(r.enr.idevids)
			_, err := r.do(tc.c)
			if fault.CodeOf(err) != tc.want {
				t.Fatalf("err %v, want %s", err, tc.want)
			}
			if len(r.enr.enrolls)+len(r.enr.renews)+len(r.enr.idevids) != before {
				t.Fatal("a refused request reached enroll.Service")
			}
		})
	}
}

func TestCACerts(t *testing.T) {
	r := newRig(t)
	for _, label := range []string{"", "line"} {
		rec, err := r.do(call{method: "GET", op: "cacerts", label: label, tls: true})
		if err != nil {
			t.Fatal(err)
		}
		got := certsIn(t, rec)
		if len(got) != 2 || string(got[0]) != string(r.ca[0].Raw) || string(got[1]) != string(r.ca[1].Raw) {
			t.Fatalf("label %q: %d certificates, want the chain", label, len(got))
		}
	}
}

func TestSimpleEnroll(t *testing.T) {
	r := newRig(t)
	der := newCSR(t)
	rec, err := r.do(call{method: "POST", op: "simpleenroll", label: "line", tls: true, user: "estuser", pass: tokLine,
		ct: "application/pkcs10", body: wrap(base64.StdEncoding.EncodeToString(der), 64, "\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	if got := certsIn(t, rec); len(got) != 1 || string(got[0]) != string(r.leaf.Raw) {
		t.Fatalf("answer holds %d certificates, want the leaf", len(got))
	}
	if len(r.enr.enrolls) != 1 {
		t.Fatalf("%d enrollments", len(r.enr.enrolls))
	}
	e := r.enr.enrolls[0]
	block, _ := pem.Decode(e.CSR)
	// The Basic user (libest's fixed "estuser") is not a device id.
	if e.Token != tokLine || e.DeviceID != "" || e.ServerKey || block == nil || string(block.Bytes) != string(der) {
		t.Fatalf("enroll request %+v", e)
	}
}

func TestSimpleReenroll(t *testing.T) {
	r := newRig(t)
	rec, err := r.do(call{method: "POST", op: "simplereenroll", label: "other", tls: true, peer: r.leaf,
		ct: "application/pkcs10", body: base64.StdEncoding.EncodeToString(newCSR(t))})
	if err != nil {
		t.Fatal(err)
	}
	if got := certsIn(t, rec); len(got) != 1 {
		t.Fatalf("%d certificates", len(got))
	}
	if len(r.enr.renews) != 1 || r.enr.renews[0].Current != r.leaf || !r.enr.renews[0].KeyProven {
		t.Fatalf("renew requests %+v", r.enr.renews)
	}
}

// TestSimpleEnrollIDevID: without Basic credentials a TLS client
// certificate is an IDevID enrollment, with the chain and the label handed
// to enroll.Service; with Basic credentials the token decides, whatever
// certificate the client sent.
func TestSimpleEnrollIDevID(t *testing.T) {
	r := newRig(t)
	der := newCSR(t)
	body := base64.StdEncoding.EncodeToString(der)
	rec, err := r.do(call{method: "POST", op: "simpleenroll", label: "line", tls: true, peer: r.ca[0], ct: "application/pkcs10", body: body})
	if err != nil {
		t.Fatal(err)
	}
	if got := certsIn(t, rec); len(got) != 1 || string(got[0]) != string(r.leaf.Raw) {
		t.Fatalf("answer holds %d certificates, want the leaf", len(got))
	}
	if len(r.enr.idevids) != 1 || len(r.enr.enrolls) != 0 {
		t.Fatalf("%d IDevID and %d token enrollments, want 1 and 0", len(r.enr.idevids), len(r.enr.enrolls))
	}
	got := r.enr.idevids[0]
	block, _ := pem.Decode(got.CSR)
	if got.Label != "line" || len(got.Chain) != 1 || got.Chain[0] != r.ca[0] || block == nil || string(block.Bytes) != string(der) {
		t.Fatalf("IDevID request %+v", got)
	}
	if _, err := r.do(call{method: "POST", op: "simpleenroll", tls: true, peer: r.ca[0], pass: tokLine, ct: "application/pkcs10", body: body}); err != nil {
		t.Fatal(err)
	}
	if len(r.enr.idevids) != 1 || len(r.enr.enrolls) != 1 {
		t.Fatalf("with a token: %d IDevID and %d token enrollments, want 1 and 1", len(r.enr.idevids), len(r.enr.enrolls))
	}
}

// TestReenrollForeignSerial: the handshake does not verify client
// certificates, so a foreign certificate may copy a Gatehouse serial; the
// label check does not take it for that certificate (which would tell its
// device's profile) and leaves the refusal to Renew's verification.
func TestReenrollForeignSerial(t *testing.T) {
	r := newRig(t)
	forged := selfSigned(t, "forged") // serial 7 too
	if _, err := r.do(call{method: "POST", op: "simplereenroll", label: "line", tls: true, peer: forged,
		ct: "application/pkcs10", body: base64.StdEncoding.EncodeToString(newCSR(t))}); err != nil {
		t.Fatal(err)
	}
	if len(r.enr.renews) != 1 || r.enr.renews[0].Current != forged {
		t.Fatalf("renew requests %+v, want the forged certificate handed to Renew", r.enr.renews)
	}
}

func fingerprint(c *x509.Certificate) string {
	fp := sha256.Sum256(c.Raw)
	return hex.EncodeToString(fp[:])
}

func TestCSRAttrsHandler(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		label  string
		status int
	}{{"", http.StatusNoContent}, {"other", http.StatusNoContent}, {"line", http.StatusOK}} {
		rec, err := r.do(call{method: "GET", op: "csrattrs", label: tc.label, tls: true})
		if err != nil || rec.Code != tc.status {
			t.Fatalf("label %q: %d %v, want %d", tc.label, rec.Code, err, tc.status)
		}
		if tc.status == http.StatusOK {
			want, _ := CSRAttrs([]string{"P-256"})
			der, err := DecodeBase64(rec.Body.Bytes())
			if err != nil || string(der) != string(want) || rec.Header().Get("Content-Type") != "application/csrattrs" {
				t.Fatalf("csrattrs %q: %v %q", rec.Header().Get("Content-Type"), err, rec.Body)
			}
		}
	}
}

func TestNewRequiresAll(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New with nothing succeeded")
	}
}
