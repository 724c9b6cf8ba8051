package enroll_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"strings"
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
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/store"
)

const day = 24 * time.Hour

// sleepyEnv is claimEnv with one clock for the CA, the store and the
// service, and profile "eager" allowing renewal up to 30 days after expiry.
type sleepyEnv struct {
	*claimEnv
	clock *testclock.Clock
}

func newSleepyEnv(t *testing.T, backend, caDir string) *sleepyEnv {
	t.Helper()
	ctx := context.Background()
	clock := testclock.New(time.Now())
	db := teststore.Open(t, backend)
	db.Real().SetClock(clock.Now)
	theCA, err := ca.New(ca.Config{Dir: caDir, Passphrase: caPass, Store: db.Real(), CRLStore: db.Real(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := &claimEnv{db: db, iss: &countingIssuer{Issuer: theCA}, ca: theCA, crl: &countingCRL{}, logs: &testlog.Buffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	e.svc, err = enroll.New(enroll.Config{Catalog: db, Tokens: db, Records: db, Claims: db, Audit: audit.New(db, log),
		Issuer: e.iss, CRL: e.crl, Log: log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Real().CreateFleet(ctx, store.Fleet{Name: "default"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Real().CreateProfile(ctx, store.Profile{Name: "eager", KeyTypes: []string{"P-256"}, Validity: time.Hour,
		RenewWindow: time.Hour, RenewAfterExpiry: new(30 * day)}, nil); err != nil {
		t.Fatal(err)
	}
	return &sleepyEnv{claimEnv: e, clock: clock}
}

// expiredDevice is a sleepyEnv with one device enrolled whose certificate
// expired 10 days ago.
func expiredDevice(t *testing.T, backend, caDir string) (*sleepyEnv, enroll.Result, crypto.Signer) {
	t.Helper()
	e := newSleepyEnv(t, backend, caDir)
	res, key := e.enrolled(t)
	e.clock.Add(time.Hour + 10*day)
	return e, res, key
}

// setAllowance changes profile eager's renew_after_expiry.
func (e *sleepyEnv) setAllowance(t *testing.T, d time.Duration) {
	t.Helper()
	p, err := e.db.Real().GetProfile(context.Background(), "eager")
	if err != nil {
		t.Fatal(err)
	}
	p.RenewAfterExpiry = &d
	if _, err := e.db.Real().UpdateProfile(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
}

// expiredCSR is a renewal CSR for cert signed by key over a challenge
// asked for now, or nil and the challenge's refusal.
func expiredCSR(svc *enroll.Service, key crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	ch, err := svc.Challenge(context.Background(), cert)
	if err != nil {
		return nil, err
	}
	der, err := enroll.NewChallengeCSR(key, ch.Nonce)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// TestRenewExpired: under a 30-day renew_after_expiry a certificate that
// expired 10 days ago renews by the challenge signed with its key, audited
// as device.renew_expired; one that expired 40 days ago, a revoked or a
// superseded one, one under an allowance of 0, one whose device is
// suspended, a CSR with another key and a mutual-TLS claim without a
// challenge are refused, and none of them gets anything signed.
func TestRenewExpired(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				asleep  time.Duration
				prepare func(t *testing.T, e *sleepyEnv, res enroll.Result, key crypto.Signer)
				// challengeCode is the refusal of the challenge, renewCode
				// that of the renewal with a challenge got before prepare.
				challengeCode, renewCode fault.Code
			}{
				{name: "expired 10d", asleep: 10 * day},
				{name: "expired 40d", asleep: 40 * day, challengeCode: fault.CertInvalid, renewCode: fault.CertInvalid},
				{name: "allowance 0", asleep: 10 * day, challengeCode: fault.CertInvalid, renewCode: fault.CertInvalid,
					prepare: func(t *testing.T, e *sleepyEnv, _ enroll.Result, _ crypto.Signer) { e.setAllowance(t, 0) }},
				{name: "revoked", asleep: 10 * day, challengeCode: fault.CertInvalid, renewCode: fault.CertInvalid,
					prepare: func(t *testing.T, e *sleepyEnv, res enroll.Result, _ crypto.Signer) {
						if err := e.db.Real().RevokeCertificate(context.Background(), res.Serial, 1, e.clock.Now()); err != nil {
							t.Fatal(err)
						}
					}},
				{name: "superseded", asleep: 10 * day, challengeCode: fault.CertInvalid, renewCode: fault.CertInvalid,
					prepare: func(t *testing.T, e *sleepyEnv, res enroll.Result, key crypto.Signer) {
						// Renewed once already (while it was valid): the old
						// certificate must never renew again.
						e.clock.Add(-10*day - time.Hour)
						if _, err := e.svc.Renew(context.Background(), renewRequest(t, e.svc, key, res.Certificate)); err != nil {
							t.Fatal(err)
						}
						e.clock.Add(10*day + time.Hour)
					}},
				{name: "device suspended", asleep: 10 * day, challengeCode: fault.DeviceNotActive, renewCode: fault.DeviceNotActive,
					prepare: func(t *testing.T, e *sleepyEnv, res enroll.Result, _ crypto.Signer) {
						if _, err := e.db.Real().TransitionDevice(context.Background(), res.Device.ID,
							[]store.DeviceStatus{store.DeviceActive}, store.DeviceSuspended, e.clock.Now(), nil); err != nil {
							t.Fatal(err)
						}
					}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e := newSleepyEnv(t, backend, caDir)
					ctx := context.Background()
					res, key := e.enrolled(t)
					e.clock.Add(time.Hour + tc.asleep)
					csr, err := expiredCSR(e.svc, key, res.Certificate)
					if tc.challengeCode == "" && err != nil {
						t.Fatalf("challenge: %v", err)
					}
					if tc.prepare != nil {
						// The challenge from before the change tests Renew's own checks.
						e.clock.Add(-tc.asleep + 10*day)
						if csr == nil {
							if csr, err = expiredCSR(e.svc, key, res.Certificate); err != nil {
								t.Fatalf("challenge before the change: %v", err)
							}
						}
						tc.prepare(t, e, res, key)
						if _, err := expiredCSR(e.svc, key, res.Certificate); fault.CodeOf(err) != tc.challengeCode {
							t.Fatalf("challenge after the change: %v, want %s", err, tc.challengeCode)
						}
					} else if tc.challengeCode != "" {
						if fault.CodeOf(err) != tc.challengeCode {
							t.Fatalf("challenge: %v, want %s", err, tc.challengeCode)
						}
						// A challenge got a minute before the allowance ran
						// out must not carry the renewal past it.
						e.clock.Set(res.Certificate.NotAfter.Add(30*day - time.Minute))
						if csr, err = expiredCSR(e.svc, key, res.Certificate); err != nil {
							t.Fatal(err)
						}
						e.clock.Add(2 * time.Minute)
					}
					before := len(e.iss.serials())
					got, err := e.svc.Renew(ctx, enroll.RenewRequest{Current: res.Certificate, CSR: csr})
					if tc.renewCode != "" {
						if fault.CodeOf(err) != tc.renewCode {
							t.Fatalf("renew: %v, want %s", err, tc.renewCode)
						}
						if n := len(e.iss.serials()) - before; n != 0 {
							t.Fatalf("a refused renewal signed %d certificates", n)
						}
						return
					}
					if err != nil {
						t.Fatalf("renew: %v", err)
					}
					e.checkOneSigned(t, before, got.Serial)
					if !got.Certificate.NotAfter.After(e.clock.Now()) {
						t.Fatalf("renewed certificate expires %s, before now %s", got.Certificate.NotAfter, e.clock.Now())
					}
					old, err := e.db.Real().GetCertificate(ctx, res.Serial)
					if err != nil || old.Status == store.CertActive {
						t.Fatalf("old certificate after renewal: %s %v", old.Status, err)
					}
					wantAudit(t, e.db.Real(), "device.renew_expired", res.Device.ID, res.Serial)
				})
			}
		})
	}
}

// TestRenewExpiredRefusals: an expired certificate proves nothing by a
// handshake (KeyProven without a challenge) nor with another key's CSR.
func TestRenewExpiredRefusals(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e, res, key := expiredDevice(t, backend, caDir)
			other := []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))
			_, err := e.svc.Renew(context.Background(), enroll.RenewRequest{Current: res.Certificate, CSR: other, KeyProven: true})
			if fault.CodeOf(err) != fault.Unauthenticated {
				t.Fatalf("mutual TLS with a new key: %v, want unauthenticated", err)
			}
			own := []byte(testpki.CSRPEM(t, key))
			_, err = e.svc.Renew(context.Background(), enroll.RenewRequest{Current: res.Certificate, CSR: own, KeyProven: true})
			if fault.CodeOf(err) != fault.ChallengeRequired {
				t.Fatalf("mutual TLS with its key, no challenge: %v, want challenge_required", err)
			}
			if len(e.iss.serials()) != 1 {
				t.Fatalf("refusals signed: %v", e.iss.serials())
			}
		})
	}
}

// TestRenewExpiredRaceSignsOnce: 16 renewals of one expired certificate at
// once with its challenge renew it once and sign once, on both databases.
func TestRenewExpiredRaceSignsOnce(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e, res, key := expiredDevice(t, backend, caDir)
			csr, err := expiredCSR(e.svc, key, res.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			before := len(e.iss.serials())
			e.iss.before = slowSign
			won, codes := race(t, 16, func(int) (enroll.Result, error) {
				return e.svc.Renew(context.Background(), enroll.RenewRequest{Current: res.Certificate, CSR: csr})
			})
			wantOnly(t, codes, fault.ChallengeInvalid, fault.CertInvalid)
			e.checkOneSigned(t, before, won.Serial)
		})
	}
}

// wantAudit asserts one event action on device id whose detail names serial.
func wantAudit(t *testing.T, st *store.Store, action, id, serial string) {
	t.Helper()
	es, err := st.ListAudit(context.Background(), store.AuditFilter{Action: action, ObjectID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || !strings.Contains(es[0].Detail, "old="+serial) {
		t.Fatalf("%s events for %s: %+v, want one naming old=%s", action, id, es, serial)
	}
}
