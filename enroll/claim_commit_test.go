package enroll_test

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

type noRoles struct{}

func (noRoles) RolesOf(*x509.Certificate) []string { return nil }

type sinkMap struct {
	mu sync.Mutex
	m  map[string]authz.Device
}

func (s *sinkMap) UpsertDevice(d authz.Device) { s.mu.Lock(); s.m[d.ID] = d; s.mu.Unlock() }
func (s *sinkMap) get(id string) (authz.Device, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[id]
	return d, ok
}

// holdFailIssuer blocks its first Issue until release, then fails it.
type holdFailIssuer struct {
	enroll.Issuer
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (h *holdFailIssuer) Issue(ctx context.Context, req ca.LeafRequest) (ca.Issued, error) {
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.entered)
		<-h.release
		return ca.Issued{}, errors.New("HSM timeout")
	}
	return h.Issuer.Issue(ctx, req)
}

// TestWaitedEnrollmentReachesTheCore: an enrollment that waited on another
// request's claim (here 3 s, past the sync's 2 s overlap) is stamped when
// it commits, not when it came, so the decision core's sync, polling all
// along, still learns of the device.
func TestWaitedEnrollmentReachesTheCore(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			sink := &sinkMap{m: map[string]authz.Device{}}
			syn, err := authzsync.New(authzsync.Config{Source: e.db.Real(), Roles: noRoles{}, Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := syn.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			iss := &holdFailIssuer{Issuer: e.ca, entered: make(chan struct{}), release: make(chan struct{})}
			svc, err := enroll.New(enroll.Config{Catalog: e.db, Tokens: e.db, Records: e.db, Claims: e.db,
				Audit: audit.New(e.db, nil), Issuer: iss, Core: syn})
			if err != nil {
				t.Fatal(err)
			}
			_, tok := oneToken(t, svc)
			key := testpki.Key(t, "P-256")
			req := enroll.Request{Token: tok, DeviceID: "cam-1", CSR: []byte(testpki.CSRPEM(t, key))}
			aDone := make(chan error, 1)
			go func() { _, err := svc.Enroll(ctx, req); aDone <- err }()
			<-iss.entered
			bDone := make(chan error, 1)
			// The device's retry waits on A's claim.
			go func() { _, err := svc.Enroll(ctx, req); bDone <- err }()
			for range 12 { // the syncer's 1 s poll, here every 250 ms
				time.Sleep(250 * time.Millisecond)
				if _, err := syn.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			close(iss.release)
			if err := <-aDone; err == nil {
				t.Fatal("the request whose signing failed succeeded")
			}
			if err := <-bDone; err != nil {
				t.Fatalf("the retry that waited: %v", err)
			}
			if _, err := syn.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if d, ok := sink.get("cam-1"); !ok || !d.Active {
				t.Fatalf("cam-1 is enrolled in the store but the decision core holds %+v (known %v)", d, ok)
			}
		})
	}
}

// TestDiscardBeforeCommitWins: a discard that runs before the enrollment's
// own commit lands (PostgreSQL: the COMMIT still in flight when the request
// gave up) releases the claim in its write, so the late commit is refused:
// the certificate is revoked everywhere (store, OCSP, CRL), never revoked on
// the CRL while active for OCSP.
func TestDiscardBeforeCommitWins(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			st := e.db.Real()
			_, tok := oneToken(t, e.svc)
			hash := secret.Hash(tok)
			bt, _, err := st.GetEnrollmentToken(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			key := testpki.Key(t, "P-256")
			csr, err := enroll.ParseCSR([]byte(testpki.CSRPEM(t, key)))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			cl := store.TokenClaim{Claim: store.Claim{ID: "A", Until: now.Add(30 * time.Second)}, Hash: hash, DeviceID: "cam-1",
				Fleet: bt.Fleet, CheckReserved: true}
			if err := st.ClaimToken(ctx, cl, now); err != nil {
				t.Fatal(err)
			}
			iss, err := e.ca.Issue(ctx, ca.LeafRequest{CSR: csr, Fleet: bt.Fleet, DeviceID: "cam-1", Validity: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			serial := ca.SerialHex(iss.Leaf.SerialNumber)
			rec := store.Certificate{Serial: serial, Fingerprint: "fp", DeviceID: "cam-1", NotBefore: iss.Leaf.NotBefore,
				NotAfter: iss.Leaf.NotAfter, PEM: string(ca.EncodePEM(iss.Leaf))}
			if err := st.DiscardCertificate(ctx, rec, "enrollment failed (unavailable) after signing", now,
				store.ClaimRef{TokenHash: hash, ID: "A"}, nil); err != nil {
				t.Fatal(err)
			}
			_, err = st.CompleteEnrollment(ctx, store.Enrollment{TokenHash: hash, Device: store.Device{ID: "cam-1", Fleet: bt.Fleet,
				Profile: bt.Profile}, Cert: rec, At: now, CheckReserved: true, Claim: "A"})
			if err == nil {
				t.Fatal("the enrollment committed after its certificate was discarded")
			}
			c, err := st.GetCertificate(ctx, serial)
			if err != nil || c.Status != store.CertRevoked || !e.onCRL(t)[serial] {
				t.Fatalf("discarded %s: store says %s (%v), on CRL %v; want revoked in both", serial, c.Status, err, e.onCRL(t)[serial])
			}
		})
	}
}
