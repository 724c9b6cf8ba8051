package enroll_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/store"
)

var errDown = fault.New(fault.Unavailable, "database restarting")

// newCADir creates a CA for a test's environments to share: making one
// takes seconds (key derivation), and nothing here depends on its keys.
func newCADir(t *testing.T) string {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: caDir, Passphrase: caPass}); err != nil {
		t.Fatal(err)
	}
	return caDir
}

// failingEnv is claimEnv's store, service and log: an enrollment service whose every store call goes through a
// teststore wrapper on backend (the CA in caDir reads the real store), with
// fleet "default" and a profile "eager" whose renewal window is open at once.
func failingEnv(t *testing.T, backend, caDir string) (*teststore.Store, *enroll.Service, *testlog.Buffer) {
	t.Helper()
	e := newClaimEnv(t, backend, caDir, nil)
	return e.db, e.svc, e.logs
}

func oneToken(t *testing.T, svc *enroll.Service) (enroll.Batch, string) {
	t.Helper()
	b, err := svc.CreateBatch(context.Background(), enroll.BatchRequest{Fleet: "default", Profile: "eager", Count: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return b, b.Tokens[0].Token
}

// TestEnrollStoreFailures: a store failure at any step of an enrollment
// fails it with the store's code — unavailable, never token_invalid or
// token_used, which would tell the factory line to throw the token away —
// spends no token and creates no device; the same request then succeeds.
// An error without a code stays internal.
func TestEnrollStoreFailures(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, tc := range []struct {
				method string
				err    error
				code   fault.Code
			}{
				{"GetEnrollmentToken", errDown, fault.Unavailable},
				{"CompleteEnrollment", errDown, fault.Unavailable},
				{"CompleteEnrollment", errors.New("disk I/O error"), fault.Internal},
			} {
				t.Run(tc.method+"/"+string(tc.code), func(t *testing.T) {
					ctx := context.Background()
					db, svc, _ := failingEnv(t, backend, caDir)
					b, tok := oneToken(t, svc)
					req := enroll.Request{Token: tok, DeviceID: "cam-1", CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))}
					db.FailNth(tc.method, 1, tc.err)
					res, err := svc.Enroll(ctx, req)
					if got := fault.CodeOf(err); got != tc.code || res.Certificate != nil {
						t.Fatalf("Enroll: code %q (%v), result %+v; want %q", got, err, res.Device, tc.code)
					}
					if bt, err := db.Real().GetTokenBatch(ctx, b.ID); err != nil || bt.Used != 0 {
						t.Fatalf("batch after the failure: used %d (%v), want 0", bt.Used, err)
					}
					if _, err := db.Real().GetDevice(ctx, "cam-1"); !fault.Is(err, fault.NotFound) {
						t.Fatalf("device after the failure: %v, want not found", err)
					}
					res, err = svc.Enroll(ctx, req)
					if err != nil || res.Repeated || res.Device.ID != "cam-1" || res.Device.Status != store.DeviceActive {
						t.Fatalf("retry: %+v repeated=%v %v; want a fresh enrollment", res.Device, res.Repeated, err)
					}
				})
			}
		})
	}
}

// TestBatchStoreFailure: a catalog read that fails is the store's error,
// not "fleet not found", and no batch is made.
func TestBatchStoreFailure(t *testing.T) {
	ctx := context.Background()
	db, svc, _ := failingEnv(t, "sqlite", newCADir(t))
	for _, m := range []string{"GetFleet", "GetProfile", "CreateTokenBatch"} {
		db.FailNth(m, 1, errDown)
		_, err := svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "eager", Count: 1, TTL: time.Hour})
		if !fault.Is(err, fault.Unavailable) {
			t.Fatalf("%s refused: %v, want unavailable", m, err)
		}
	}
	if bs, err := db.Real().ListTokenBatches(ctx, 10); err != nil || len(bs) != 0 {
		t.Fatalf("batches after refused requests: %+v %v", bs, err)
	}
}

// TestRenewStoreFailures: a renewal whose challenge lookup or commit the
// store refuses fails with the store's code (not challenge_invalid, which
// would send the device for a new challenge it does not need), leaves the
// old certificate active and the challenge unspent; the very same CSR then
// renews.
func TestRenewStoreFailures(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, method := range []string{"GetRenewalChallenge", "RecordRenewal"} {
				t.Run(method, func(t *testing.T) {
					ctx := context.Background()
					db, svc, _ := failingEnv(t, backend, caDir)
					_, tok := oneToken(t, svc)
					key := testpki.Key(t, "P-256")
					res, err := svc.Enroll(ctx, enroll.Request{Token: tok, CSR: []byte(testpki.CSRPEM(t, key))})
					if err != nil {
						t.Fatal(err)
					}
					req := renewRequest(t, svc, key, res.Certificate)
					db.FailNth(method, 1, errDown)
					if _, err := svc.Renew(ctx, req); !fault.Is(err, fault.Unavailable) {
						t.Fatalf("Renew with %s refused: code %q (%v), want unavailable", method, fault.CodeOf(err), err)
					}
					if c, err := db.Real().GetCertificate(ctx, res.Serial); err != nil || c.Status != store.CertActive {
						t.Fatalf("old certificate after the failure: %+v %v", c, err)
					}
					ren, err := svc.Renew(ctx, req)
					if err != nil || ren.Serial == res.Serial {
						t.Fatalf("retried renewal: %+v %v", ren.Serial, err)
					}
					if c, err := db.Real().GetCertificate(ctx, res.Serial); err != nil || c.Status != store.CertSuperseded {
						t.Fatalf("old certificate after the renewal: %s %v, want superseded", c.Status, err)
					}
				})
			}
		})
	}
}

// renewRequest is a plain-HTTP renewal of current: a CSR signed by its key
// carrying a live challenge.
func renewRequest(t *testing.T, svc *enroll.Service, key crypto.Signer, current *x509.Certificate) enroll.RenewRequest {
	t.Helper()
	ch, err := svc.Challenge(context.Background(), current)
	if err != nil {
		t.Fatal(err)
	}
	der, err := enroll.NewChallengeCSR(key, ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	return enroll.RenewRequest{Current: current, CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}
}

// TestRepeatAuditLost: a repeated enrollment changes nothing, so an audit
// write that fails does not fail it: the device gets its certificate again
// and the lost event is logged at error level.
func TestRepeatAuditLost(t *testing.T) {
	ctx := context.Background()
	db, svc, logs := failingEnv(t, "sqlite", newCADir(t))
	_, tok := oneToken(t, svc)
	req := enroll.Request{Token: tok, CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))}
	first, err := svc.Enroll(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	db.FailOn("AppendAudit", errDown)
	again, err := svc.Enroll(ctx, req)
	if err != nil || !again.Repeated || again.Serial != first.Serial {
		t.Fatalf("repeat with the audit sink down: %+v %v", again, err)
	}
	if n := db.Calls("AppendAudit"); n != 1 {
		t.Errorf("%d audit writes, want 1", n)
	}
	if l := logs.String(); !strings.Contains(l, "audit event lost") || !strings.Contains(l, "device.enroll_repeat") {
		t.Errorf("lost audit event not logged:\n%s", l)
	}
}
