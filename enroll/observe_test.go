package enroll_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
)

// enrollRecorder is an enroll.Observer that keeps what it was told.
type enrollRecorder struct {
	mu  sync.Mutex
	got []string
}

var _ enroll.Observer = (*enrollRecorder)(nil)

func (r *enrollRecorder) Enrolled(kind, code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, kind+" "+code)
}

// take returns what was reported since the last take.
func (r *enrollRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// observed is a service over e's store, CA and clock that reports to rec.
func (e *sleepyEnv) observed(t *testing.T, rec enroll.Observer) *enroll.Service {
	t.Helper()
	svc, err := enroll.New(enroll.Config{Catalog: e.db, Tokens: e.db, Records: e.db, Claims: e.db, Audit: audit.New(e.db, nil),
		Issuer: e.iss, CRL: e.crl, Now: e.clock.Now, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestObserverCountsEachCallOnce: every Enroll and Renew is reported
// exactly once, by its kind (a renewal of an expired certificate is
// renew_expired) and its result: ok, repeated for a retry given its
// certificate again, the fault code of a refusal, internal for an error
// without one. Challenge, which issues nothing, is not reported.
func TestObserverCountsEachCallOnce(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newSleepyEnv(t, backend, caDir)
			rec := &enrollRecorder{}
			svc := e.observed(t, rec)
			ctx := context.Background()
			_, tok := oneToken(t, svc)
			_, tok2 := oneToken(t, svc)
			k1, k2, k3 := testpki.Key(t, "P-256"), testpki.Key(t, "P-256"), testpki.Key(t, "P-256")
			csr := func(k crypto.Signer) []byte { return []byte(testpki.CSRPEM(t, k)) }
			type step struct {
				name string
				call func() error
				want string
			}
			var first, renewed, other enroll.Result
			steps := []step{
				{"enroll", func() (err error) {
					first, err = svc.Enroll(ctx, enroll.Request{Token: tok, CSR: csr(k1)})
					return err
				}, "enroll ok"},
				{"retry", func() error {
					res, err := svc.Enroll(ctx, enroll.Request{Token: tok, CSR: csr(k1)})
					if err == nil && !res.Repeated {
						return errors.New("the retry was not a repeat")
					}
					return err
				}, "enroll repeated"},
				{"used token, other key", func() error {
					_, err := svc.Enroll(ctx, enroll.Request{Token: tok, CSR: csr(k2)})
					return err
				}, "enroll token_used"},
				{"no token", func() error {
					_, err := svc.Enroll(ctx, enroll.Request{CSR: csr(k2)})
					return err
				}, "enroll token_invalid"},
				{"bad csr", func() error {
					_, err := svc.Enroll(ctx, enroll.Request{Token: tok2, CSR: []byte("not a csr")})
					return err
				}, "enroll csr_invalid"},
				{"store error without a code", func() error {
					e.db.SetNextError(errors.New("disk on fire"))
					_, err := svc.Enroll(ctx, enroll.Request{Token: tok2, CSR: csr(k2)})
					return err
				}, "enroll internal"},
				{"second device", func() (err error) {
					other, err = svc.Enroll(ctx, enroll.Request{Token: tok2, CSR: csr(k2)})
					return err
				}, "enroll ok"},
				{"renew without a certificate", func() error {
					_, err := svc.Renew(ctx, enroll.RenewRequest{CSR: csr(k1)})
					return err
				}, "renew unauthenticated"},
				{"renew over mutual TLS", func() (err error) {
					renewed, err = svc.Renew(ctx, enroll.RenewRequest{Current: first.Certificate, CSR: csr(k3), KeyProven: true})
					return err
				}, "renew ok"},
				{"renew the superseded certificate", func() error {
					_, err := svc.Renew(ctx, enroll.RenewRequest{Current: first.Certificate, CSR: csr(k1), KeyProven: true})
					return err
				}, "renew certificate_invalid"},
				{"asleep 10 days", func() error { e.clock.Add(time.Hour + 10*day); return nil }, ""},
				{"renew expired by challenge", func() error {
					req := renewRequest(t, svc, k3, renewed.Certificate)
					_, err := svc.Renew(ctx, req)
					return err
				}, "renew_expired ok"},
				{"renew expired without challenge", func() error {
					_, err := svc.Renew(ctx, enroll.RenewRequest{Current: other.Certificate, CSR: csr(k2), KeyProven: true})
					return err
				}, "renew_expired challenge_required"},
			}
			for _, s := range steps {
				err := s.call()
				got := rec.take()
				var want []string
				if s.want != "" {
					want = []string{s.want}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s (%v): observed %q, want %q", s.name, err, got, want)
				}
				succeeds := s.want == "" || strings.HasSuffix(s.want, " ok") || strings.HasSuffix(s.want, " repeated")
				if (err == nil) != succeeds {
					t.Fatalf("%s: %v, observed as %q", s.name, err, got)
				}
			}
		})
	}
}

// TestObserverRacingCallsCountOnce: racing enrollments with one token and
// racing renewals of one certificate are each reported once, and exactly
// one of each issued ("ok").
func TestObserverRacingCallsCountOnce(t *testing.T) {
	caDir := newCADir(t)
	const n = 16
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newSleepyEnv(t, backend, caDir)
			e.iss.before = slowSign
			rec := &enrollRecorder{}
			svc := e.observed(t, rec)
			ctx := context.Background()
			_, tok := oneToken(t, svc)
			keys := make([][]byte, n)
			for i := range keys {
				keys[i] = []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))
			}
			var mu sync.Mutex
			var cert enroll.Result
			testrace.Run(n, func(i int) {
				res, err := svc.Enroll(ctx, enroll.Request{Token: tok, CSR: keys[0]})
				if err == nil && !res.Repeated {
					mu.Lock()
					cert = res
					mu.Unlock()
				}
			})
			checkCounts(t, "enrollments", rec.take(), n, "enroll ok")
			if cert.Certificate == nil {
				t.Fatal("no enrollment issued")
			}
			testrace.Run(n, func(i int) {
				_, _ = svc.Renew(ctx, enroll.RenewRequest{Current: cert.Certificate, CSR: keys[i], KeyProven: true})
			})
			checkCounts(t, "renewals", rec.take(), n, "renew ok")
		})
	}
}

// checkCounts: got has n reports, one of them ok.
func checkCounts(t *testing.T, what string, got []string, n int, ok string) {
	t.Helper()
	counts := map[string]int{}
	for _, g := range got {
		counts[g]++
	}
	if len(got) != n || counts[ok] != 1 {
		t.Fatalf("%d racing %s reported %d times (%v), want %d with one %q", n, what, len(got), counts, n, ok)
	}
	t.Logf("%s: %s", what, fmt.Sprint(counts))
}
