package enroll_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/store"
)

// countingIssuer is the real CA, counting what it signs: the proof of what
// left the CA, whatever the store says. before, when set, runs before each
// signature: the race tests slow signing there, so that racers that got
// past the checks overlap on any backend (without it SQLite's serialised
// reads often let the first finish before the next one checks).
type countingIssuer struct {
	enroll.Issuer
	before func()
	mu     sync.Mutex
	signed []string
}

func (c *countingIssuer) Issue(ctx context.Context, req ca.LeafRequest) (ca.Issued, error) {
	if c.before != nil {
		c.before()
	}
	iss, err := c.Issuer.Issue(ctx, req)
	if err == nil {
		c.mu.Lock()
		c.signed = append(c.signed, ca.SerialHex(iss.Leaf.SerialNumber))
		c.mu.Unlock()
	}
	return iss, err
}

func slowSign() { time.Sleep(50 * time.Millisecond) }

func (c *countingIssuer) serials() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.signed...)
}

// countingCRL counts republications.
type countingCRL struct{ n atomic.Int32 }

func (c *countingCRL) Publish(context.Context) error { c.n.Add(1); return nil }

// claimEnv is failingEnv with a counting issuer, a CRL that counts its
// publications, and the service's clock in now (nil: time.Now).
type claimEnv struct {
	db   *teststore.Store
	svc  *enroll.Service
	iss  *countingIssuer
	ca   *ca.CA
	crl  *countingCRL
	logs *testlog.Buffer
}

func newClaimEnv(t *testing.T, backend, caDir string, now func() time.Time) *claimEnv {
	t.Helper()
	ctx := context.Background()
	db := teststore.Open(t, backend)
	theCA, err := ca.New(ca.Config{Dir: caDir, Passphrase: caPass, Store: db.Real(), CRLStore: db.Real()})
	if err != nil {
		t.Fatal(err)
	}
	e := &claimEnv{db: db, iss: &countingIssuer{Issuer: theCA}, ca: theCA, crl: &countingCRL{}, logs: &testlog.Buffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	e.svc, err = enroll.New(enroll.Config{Catalog: db, Tokens: db, Records: db, Claims: db, Audit: audit.New(db, log),
		Issuer: e.iss, CRL: e.crl, Log: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Real().CreateFleet(ctx, store.Fleet{Name: "default"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Real().CreateProfile(ctx, store.Profile{Name: "eager", KeyTypes: []string{"P-256"}, Validity: time.Hour,
		RenewWindow: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

// enrolled enrolls one device on "eager" and returns it with its key.
func (e *claimEnv) enrolled(t *testing.T) (enroll.Result, crypto.Signer) {
	t.Helper()
	_, tok := oneToken(t, e.svc)
	k := testpki.Key(t, "P-256")
	res, err := e.svc.Enroll(context.Background(), enroll.Request{Token: tok, CSR: []byte(testpki.CSRPEM(t, k))})
	if err != nil {
		t.Fatal(err)
	}
	return res, k
}

// checkSigned asserts that the CA signed exactly one certificate since
// before (the count of serials then), that it is want, and that it is the
// store's active certificate.
func (e *claimEnv) checkOneSigned(t *testing.T, before int, want string) {
	t.Helper()
	got := e.iss.serials()[before:]
	if len(got) != 1 || got[0] != want {
		t.Fatalf("the CA signed %v, want only the winner's %s", got, want)
	}
	if c, err := e.db.Real().GetCertificate(context.Background(), want); err != nil || c.Status != store.CertActive {
		t.Fatalf("winner's certificate: %s %v, want active", c.Status, err)
	}
}

// onCRL generates the CA's CRL and returns its serials.
func (e *claimEnv) onCRL(t *testing.T) map[string]bool {
	t.Helper()
	l, err := e.ca.GenerateCRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	list, err := x509.ParseRevocationList(l.DER)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range list.RevokedCertificateEntries {
		out[ca.SerialHex(r.SerialNumber)] = true
	}
	return out
}

type raceResult struct {
	res enroll.Result
	err error
}

// race runs n calls of fn at once, released together, and returns the one
// success and every refusal's code; it fails unless exactly one succeeded.
func race(t *testing.T, n int, fn func(i int) (enroll.Result, error)) (enroll.Result, map[fault.Code]int) {
	t.Helper()
	out := make([]raceResult, n)
	testrace.Run(n, func(i int) {
		r, err := fn(i)
		out[i] = raceResult{r, err}
	})
	var won []enroll.Result
	codes := map[fault.Code]int{}
	for _, o := range out {
		if o.err == nil {
			won = append(won, o.res)
			continue
		}
		codes[fault.CodeOf(o.err)]++
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d succeeded (refusals %v), want exactly one", len(won), n, codes)
	}
	return won[0], codes
}

func wantOnly(t *testing.T, codes map[fault.Code]int, allowed ...fault.Code) {
	t.Helper()
	for c, n := range codes {
		ok := false
		for _, a := range allowed {
			ok = ok || c == a
		}
		if !ok {
			t.Fatalf("%d refusals with %q, want only %v (all: %v)", n, c, allowed, codes)
		}
	}
}

const racers = 32

// TestRenewChallengeRaceSignsOnce: 32 renewals at once with one challenge
// renew once, and the CA signs once. On main each racer that passed the
// challenge read got a certificate signed; all but one were never recorded,
// so valid, unknown to the store and on no CRL.
func TestRenewChallengeRaceSignsOnce(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newClaimEnv(t, backend, caDir, nil)
			res, key := e.enrolled(t)
			req := renewRequest(t, e.svc, key, res.Certificate)
			before := len(e.iss.serials())
			e.iss.before = slowSign
			won, codes := race(t, racers, func(int) (enroll.Result, error) { return e.svc.Renew(context.Background(), req) })
			wantOnly(t, codes, fault.ChallengeInvalid, fault.CertInvalid)
			e.checkOneSigned(t, before, won.Serial)
		})
	}
}

// TestRenewKeyProvenRaceSignsOnce: 32 mutual-TLS renewals of one
// certificate at once, each with a new key, renew once and sign once.
func TestRenewKeyProvenRaceSignsOnce(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newClaimEnv(t, backend, caDir, nil)
			res, _ := e.enrolled(t)
			csrs := make([][]byte, racers)
			for i := range csrs {
				csrs[i] = []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))
			}
			before := len(e.iss.serials())
			e.iss.before = slowSign
			won, codes := race(t, racers, func(i int) (enroll.Result, error) {
				return e.svc.Renew(context.Background(), enroll.RenewRequest{Current: res.Certificate, CSR: csrs[i], KeyProven: true})
			})
			wantOnly(t, codes, fault.CertInvalid)
			e.checkOneSigned(t, before, won.Serial)
		})
	}
}

// TestEnrollTokenRaceSignsOnce: 32 enrollments at once with one token, each
// with its own key, enroll once and sign once; the others are token_used.
func TestEnrollTokenRaceSignsOnce(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newClaimEnv(t, backend, caDir, nil)
			b, tok := oneToken(t, e.svc)
			csrs := make([][]byte, racers)
			for i := range csrs {
				csrs[i] = []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))
			}
			e.iss.before = slowSign
			won, codes := race(t, racers, func(i int) (enroll.Result, error) {
				return e.svc.Enroll(context.Background(), enroll.Request{Token: tok, CSR: csrs[i]})
			})
			wantOnly(t, codes, fault.TokenUsed)
			if codes[fault.TokenUsed] != racers-1 {
				t.Fatalf("refusals %v, want %d token_used", codes, racers-1)
			}
			e.checkOneSigned(t, 0, won.Serial)
			if bt, err := e.db.Real().GetTokenBatch(context.Background(), b.ID); err != nil || bt.Used != 1 {
				t.Fatalf("batch: used %d (%v), want 1", bt.Used, err)
			}
		})
	}
}

// TestRecordFailureDiscards: when the store refuses the commit after the CA
// signed, the signed certificate is recorded as revoked (GetCertificate
// says so, and it is on the CRL, which is republished), nothing else
// changed, and the same request then succeeds.
func TestRecordFailureDiscards(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("renewal", func(t *testing.T) {
				ctx := context.Background()
				e := newClaimEnv(t, backend, caDir, nil)
				res, key := e.enrolled(t)
				req := renewRequest(t, e.svc, key, res.Certificate)
				before := len(e.iss.serials())
				e.db.FailNth("RecordRenewal", 1, errDown)
				if _, err := e.svc.Renew(ctx, req); !fault.Is(err, fault.Unavailable) {
					t.Fatalf("Renew: %v, want unavailable", err)
				}
				e.checkDiscarded(t, before, res.Device.ID)
				if c, err := e.db.Real().GetCertificate(ctx, res.Serial); err != nil || c.Status != store.CertActive {
					t.Fatalf("old certificate: %s %v, want still active", c.Status, err)
				}
				if ren, err := e.svc.Renew(ctx, req); err != nil || ren.Serial == res.Serial {
					t.Fatalf("same renewal again: %v %v", ren.Serial, err)
				}
			})
			t.Run("enrollment", func(t *testing.T) {
				ctx := context.Background()
				e := newClaimEnv(t, backend, caDir, nil)
				b, tok := oneToken(t, e.svc)
				req := enroll.Request{Token: tok, DeviceID: "cam-1", CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))}
				e.db.FailNth("CompleteEnrollment", 1, errDown)
				if _, err := e.svc.Enroll(ctx, req); !fault.Is(err, fault.Unavailable) {
					t.Fatalf("Enroll: %v, want unavailable", err)
				}
				e.checkDiscarded(t, 0, "cam-1")
				if bt, err := e.db.Real().GetTokenBatch(ctx, b.ID); err != nil || bt.Used != 0 {
					t.Fatalf("batch: used %d (%v), want 0", bt.Used, err)
				}
				if res, err := e.svc.Enroll(ctx, req); err != nil || res.Repeated || res.Device.ID != "cam-1" {
					t.Fatalf("same enrollment again: %+v %v", res.Device, err)
				}
			})
			t.Run("discard fails too", func(t *testing.T) {
				ctx := context.Background()
				e := newClaimEnv(t, backend, caDir, nil)
				res, key := e.enrolled(t)
				req := renewRequest(t, e.svc, key, res.Certificate)
				e.db.FailNth("RecordRenewal", 1, errDown)
				e.db.FailNth("DiscardCertificate", 1, errDown)
				if _, err := e.svc.Renew(ctx, req); !fault.Is(err, fault.Unavailable) {
					t.Fatalf("Renew: %v, want unavailable", err)
				}
				signed := e.iss.serials()
				lost := signed[len(signed)-1]
				if l := e.logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, lost) {
					t.Fatalf("a signed certificate lost without an error naming it (%s):\n%s", lost, l)
				}
			})
		})
	}
}

// checkDiscarded asserts that the CA signed one certificate since before,
// for deviceID, and that it is recorded revoked, on the CRL, republished.
func (e *claimEnv) checkDiscarded(t *testing.T, before int, deviceID string) {
	t.Helper()
	ctx := context.Background()
	got := e.iss.serials()[before:]
	if len(got) != 1 {
		t.Fatalf("the CA signed %v, want one", got)
	}
	c, err := e.db.Real().GetCertificate(ctx, got[0])
	if err != nil || c.Status != store.CertRevoked || c.DeviceID != deviceID || c.RevocationReason != store.ReasonDiscarded {
		t.Fatalf("signed certificate %s after the failed commit: %+v %v, want revoked (discarded) for %s", got[0], c, err, deviceID)
	}
	if !e.onCRL(t)[got[0]] {
		t.Fatalf("discarded certificate %s is not on the CRL", got[0])
	}
	if e.crl.n.Load() == 0 {
		t.Fatal("the CRL was not republished after the discard")
	}
	ev, err := e.db.Real().ListAudit(ctx, store.AuditFilter{Action: "certificate.discard", ObjectID: got[0]})
	if err != nil || len(ev) != 1 {
		t.Fatalf("discard audit events: %+v %v, want one", ev, err)
	}
}

// TestLapsedClaimDiscards: an enrollment that signs after its claim lapsed
// (its holder stalled longer than ClaimTTL, and the token was claimed and
// used by another) cannot commit; its certificate is discarded as revoked,
// never left valid and unknown.
func TestLapsedClaimDiscards(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			clk := testclock.New(time.Now())
			e := newClaimEnv(t, backend, caDir, clk.Now)
			_, tok := oneToken(t, e.svc)
			entered, hold := make(chan struct{}), make(chan struct{})
			var first atomic.Bool
			first.Store(true)
			e.iss.before = func() {
				if first.CompareAndSwap(true, false) {
					close(entered)
					<-hold
				}
			}
			stalled := make(chan error, 1)
			go func() {
				_, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, DeviceID: "cam-1", CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))})
				stalled <- err
			}()
			<-entered
			clk.Add(31 * time.Second) // past the default ClaimTTL
			won, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, DeviceID: "cam-1", CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))})
			if err != nil {
				t.Fatalf("enrollment after the claim lapsed: %v", err)
			}
			close(hold)
			if err := <-stalled; !fault.Is(err, fault.TokenUsed) {
				t.Fatalf("stalled enrollment: %v, want token_used", err)
			}
			signed := e.iss.serials()
			if len(signed) != 2 || signed[0] != won.Serial {
				t.Fatalf("signed %v, want the winner's %s then the stalled one's", signed, won.Serial)
			}
			e.checkDiscarded(t, 1, "cam-1")
		})
	}
}

// TestSignFailureReleases: a CSR whose signature does not verify is refused
// by the CA after the token was claimed; the claim is let go, so the token
// is not spent and enrolls at once with a good CSR (not unavailable for the
// claim's lifetime).
func TestSignFailureReleases(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			_, tok := oneToken(t, e.svc)
			key := testpki.Key(t, "P-256")
			der := testpki.CSR(t, key)
			der[len(der)-1] ^= 0xff
			bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
			if _, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: bad}); !fault.Is(err, fault.CSRInvalid) {
				t.Fatalf("tampered CSR: %v, want csr_invalid", err)
			}
			if _, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: []byte(testpki.CSRPEM(t, key))}); err != nil {
				t.Fatalf("the same token with a good CSR: %v", err)
			}
			if n := len(e.iss.serials()); n != 1 {
				t.Fatalf("signed %d, want 1", n)
			}
		})
	}
}

// TestRefusedEnrollmentSignsNothing: an enrollment the commit would refuse
// (an id reserved for another token, or enrolled already) is refused
// before signing, so retrying it at will neither signs nor grows the CRL.
func TestRefusedEnrollmentSignsNothing(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			if _, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "eager", DeviceIDs: []string{"cam-9"},
				TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
			res, _ := e.enrolled(t)
			_, tok := oneToken(t, e.svc)
			signed := len(e.iss.serials())
			for id, code := range map[string]fault.Code{"cam-9": fault.DeviceIDReserved, res.Device.ID: fault.AlreadyExists} {
				for range 3 {
					_, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, DeviceID: id, CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))})
					if !fault.Is(err, code) {
						t.Fatalf("enroll as %s: %v, want %s", id, err, code)
					}
				}
			}
			if n := len(e.iss.serials()); n != signed {
				t.Fatalf("refused enrollments signed %d certificates", n-signed)
			}
			if n := len(e.onCRL(t)); n != 0 || e.crl.n.Load() != 0 {
				t.Fatalf("CRL has %d entries after refusals (%d publications), want none", n, e.crl.n.Load())
			}
		})
	}
}
