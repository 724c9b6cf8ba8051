package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestClaims: a credential is claimed once at a time, the commit needs the
// claim, a lapsed claim can be taken over, and a discarded certificate is
// revoked wherever certificates are looked up.
func TestClaims(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("token", func(t *testing.T) { testTokenClaim(t, backend) })
			t.Run("token race", func(t *testing.T) { testTokenClaimRace(t, backend) })
			t.Run("token device", func(t *testing.T) { testTokenClaimDevice(t, backend) })
			t.Run("renewal", func(t *testing.T) { testRenewalClaim(t, backend) })
			t.Run("discard", func(t *testing.T) { testDiscard(t, backend) })
		})
	}
}

func claim(id string, until time.Time) store.Claim { return store.Claim{ID: id, Until: until} }

func tokenClaim(hash, id string, until time.Time) store.TokenClaim {
	return store.TokenClaim{Claim: claim(id, until), Hash: hash}
}

func testTokenClaim(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2")
	ttl := 30 * time.Second

	noErr(t, s.ClaimToken(ctx, tokenClaim("t1", "a", base.Add(ttl)), base))
	wantCode(t, s.ClaimToken(ctx, tokenClaim("t1", "b", base.Add(10*time.Second+ttl)), base.Add(10*time.Second)), fault.TokenUsed)
	// Committing needs the claim: none, or another one, is refused.
	wantCode(t, second(s.CompleteEnrollment(ctx, enrollment("t1", "dev-x", "sx", base))), fault.TokenUsed)
	e := enrollment("t1", "dev-1", "s1", base)
	e.Claim = "b"
	wantCode(t, second(s.CompleteEnrollment(ctx, e)), fault.TokenUsed)

	// A claim whose holder died lapses: "b" takes it over, and "a" then
	// cannot commit with it.
	later := base.Add(ttl)
	noErr(t, s.ClaimToken(ctx, tokenClaim("t1", "b", later.Add(ttl)), later))
	e.Claim, e.At = "a", later
	wantCode(t, second(s.CompleteEnrollment(ctx, e)), fault.TokenUsed)
	// Only the holder releases; then anyone may claim again.
	noErr(t, s.ReleaseTokenClaim(ctx, "t1", "a"))
	wantCode(t, s.ClaimToken(ctx, tokenClaim("t1", "c", later.Add(ttl)), later), fault.TokenUsed)
	noErr(t, s.ReleaseTokenClaim(ctx, "t1", "b"))
	e.Claim = "b"
	wantCode(t, second(s.CompleteEnrollment(ctx, e)), fault.Conflict)
	noErr(t, s.ClaimToken(ctx, tokenClaim("t1", "c", later.Add(ttl)), later))
	e.Claim = "c"
	must(s.CompleteEnrollment(ctx, e))(t)
	wantCode(t, s.ClaimToken(ctx, tokenClaim("t1", "d", later.Add(2*ttl)), later.Add(ttl)), fault.TokenUsed)
	noErr(t, s.ReleaseTokenClaim(ctx, "t1", "c"))
	if b := must(s.GetTokenBatch(ctx, "b"))(t); b.Used != 1 {
		t.Fatalf("used %d, want 1", b.Used)
	}

	// The other refusals keep their codes.
	wantCode(t, s.ClaimToken(ctx, tokenClaim("nope", "e", later.Add(ttl)), later), fault.TokenInvalid)
	wantCode(t, s.ClaimToken(ctx, tokenClaim("t2", "e", base.Add(2*time.Hour)), base.Add(time.Hour)), fault.TokenExpired)
	batch(t, s, "r", base.Add(time.Hour), "t3")
	if _, _, err := s.StartBatchRevocation(ctx, store.RevocationJob{Target: "r", Reason: "keyCompromise", CreatedAt: base}, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.ClaimToken(ctx, tokenClaim("t3", "e", later.Add(ttl)), later), fault.TokenRevoked)
}

// testTokenClaimRace: of 32 claims of one token at once exactly one holds.
func testTokenClaimRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	const n = 32
	errs := make([]error, n)
	testrace.Run(n, func(i int) {
		errs[i] = s.ClaimToken(ctx, tokenClaim("t1", fmt.Sprint("c", i), base.Add(time.Minute)), base)
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantCode(t, err, fault.TokenUsed)
	}
	if won != 1 {
		t.Fatalf("%d claims held at once, want 1", won)
	}
}

func testRenewalClaim(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	ttl := 30 * time.Second

	wantCode(t, s.ClaimRenewal(ctx, "dev-2", "s1", claim("a", base.Add(ttl)), base), fault.CertInvalid)
	noErr(t, s.ClaimRenewal(ctx, "dev-1", "s1", claim("a", base.Add(ttl)), base))
	wantCode(t, s.ClaimRenewal(ctx, "dev-1", "s1", claim("b", base.Add(ttl)), base), fault.CertInvalid)
	r := store.Renewal{DeviceID: "dev-1", OldSerial: "s1", Cert: certificate("dev-1", "s2", base)}
	wantCode(t, second(s.RecordRenewal(ctx, r)), fault.CertInvalid)
	r.Claim = "b"
	wantCode(t, second(s.RecordRenewal(ctx, r)), fault.CertInvalid)
	noErr(t, s.ReleaseRenewalClaim(ctx, "s1", "b")) // not b's: nothing happens
	wantCode(t, s.ClaimRenewal(ctx, "dev-1", "s1", claim("b", base.Add(ttl)), base), fault.CertInvalid)
	noErr(t, s.ReleaseRenewalClaim(ctx, "s1", "a"))
	noErr(t, s.ClaimRenewal(ctx, "dev-1", "s1", claim("b", base.Add(ttl)), base))
	must(s.RecordRenewal(ctx, r))(t)
	if c := must(s.GetCertificate(ctx, "s1"))(t); c.Status != store.CertSuperseded {
		t.Fatalf("old certificate %s, want superseded", c.Status)
	}
	// A renewed certificate is not claimed again, even once its claim lapsed.
	wantCode(t, s.ClaimRenewal(ctx, "dev-1", "s1", claim("c", base.Add(3*ttl)), base.Add(2*ttl)), fault.CertInvalid)
}

func testDiscard(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "a1", base)))(t)

	// Of a device that does not exist (a first enrollment that failed).
	lost := certificate("ghost", "b2", base)
	noErr(t, s.DiscardCertificate(ctx, lost, "enrollment failed", base.Add(time.Second), store.ClaimRef{},
		&store.AuditEvent{Actor: "device:ghost", Action: "certificate.discard", ObjectType: "certificate", ObjectID: "b2"}))
	noErr(t, s.DiscardCertificate(ctx, lost, "again", base.Add(time.Hour), store.ClaimRef{}, nil))
	c := must(s.GetCertificate(ctx, "b2"))(t)
	if c.Status != store.CertRevoked || c.DeviceID != "ghost" || c.RevocationReason != store.ReasonDiscarded || c.PEM != lost.PEM {
		t.Fatalf("discarded certificate: %+v", c)
	}
	wantTimePtr(t, "revoked_at", c.RevokedAt, base.Add(time.Second))
	// A certificate that is recorded already (its commit went through after
	// all) is not discarded.
	noErr(t, s.DiscardCertificate(ctx, certificate("dev-1", "a1", base), "lost reply", base, store.ClaimRef{}, nil))
	if c := must(s.GetCertificate(ctx, "a1"))(t); c.Status != store.CertActive {
		t.Fatalf("recorded certificate after a discard: %s, want active", c.Status)
	}
	revoked := map[string]store.RevokedCert{}
	noErr(t, s.EachRevokedCertificate(ctx, base, func(r store.RevokedCert) error { revoked[r.Serial] = r; return nil }))
	if len(revoked) != 1 || revoked["b2"].Reason != store.ReasonDiscarded || !revoked["b2"].RevokedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("revoked list %+v, want only the discarded b2", revoked)
	}
	// Expired ones leave the list, as revoked certificates do.
	noErr(t, s.EachRevokedCertificate(ctx, lost.NotAfter.Add(time.Millisecond), func(r store.RevokedCert) error {
		return fmt.Errorf("listed %s after it expired", r.Serial)
	}))
	if ev := must(s.ListAudit(ctx, store.AuditFilter{Action: "certificate.discard"}))(t); len(ev) != 1 {
		t.Fatalf("%d discard audit events, want 1", len(ev))
	}
	wantCode(t, second(s.GetCertificate(ctx, "nope")), fault.NotFound)
	testDiscardListedAndRevoked(t, s, lost)
}

// testDiscardListedAndRevoked: a discarded certificate is in its device's
// list, newest first, as revoked and discarded; revoking it is a request
// that changes nothing (audited), like revoking a revoked certificate.
func testDiscardListedAndRevoked(t *testing.T, s *store.Store, lost store.Certificate) {
	ctx := context.Background()
	// A renewal of dev-1 that failed to commit, signed after a1 and before
	// a recorded later one.
	failed := certificate("dev-1", "c3", base.Add(time.Minute))
	noErr(t, s.DiscardCertificate(ctx, failed, "renewal failed", base.Add(2*time.Minute), store.ClaimRef{}, nil))
	type row struct {
		serial    string
		status    store.CertStatus
		reason    int
		discarded bool
	}
	var got []row
	for _, c := range must(s.ListCertificates(ctx, "dev-1"))(t) {
		got = append(got, row{c.Serial, c.Status, c.RevocationReason, c.Discarded})
		if c.Discarded && (c.RevokedAt == nil || !c.RevokedAt.Equal(base.Add(2*time.Minute)) || c.PEM != failed.PEM) {
			t.Errorf("listed discarded certificate %+v", c)
		}
	}
	want := []row{{"c3", store.CertRevoked, store.ReasonDiscarded, true}, {"a1", store.CertActive, 0, false}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dev-1's certificates %v, want %v", got, want)
	}
	if cs := must(s.ListCertificates(ctx, "ghost"))(t); len(cs) != 1 || cs[0].Serial != lost.Serial || !cs[0].Discarded {
		t.Fatalf("the discarded certificate of a device that never was: %+v", cs)
	}

	// All of them, newest discard first, at most limit.
	var all []string
	for _, c := range must(s.DiscardedCertificates(ctx, 0))(t) {
		all = append(all, c.Serial)
		if !c.Discarded || c.Status != store.CertRevoked || c.RevocationReason != store.ReasonDiscarded {
			t.Errorf("discarded certificate %+v", c)
		}
	}
	if fmt.Sprint(all) != "[c3 b2]" {
		t.Fatalf("DiscardedCertificates = %v, want [c3 b2]", all)
	}
	if cs := must(s.DiscardedCertificates(ctx, 1))(t); len(cs) != 1 || cs[0].Serial != "c3" {
		t.Fatalf("DiscardedCertificates limit 1 = %+v", cs)
	}

	audited := 0
	for _, serial := range []string{lost.Serial, failed.Serial} {
		c, err := s.RevokeCertificateAudited(ctx, serial, 1, base.Add(time.Hour), func(c store.Certificate) store.AuditEvent {
			audited++
			return store.AuditEvent{Actor: "admin", Action: "certificate.revoke", ObjectType: "certificate", ObjectID: c.Serial}
		})
		noErr(t, err)
		if !c.Discarded || c.Status != store.CertRevoked || c.RevocationReason != store.ReasonDiscarded || c.RevokedAt == nil ||
			c.RevokedAt.Equal(base.Add(time.Hour)) {
			t.Fatalf("revoking discarded %s: %+v, want it as it was (revoked, cessationOfOperation, first time)", serial, c)
		}
	}
	if audited != 2 || len(must(s.ListAudit(ctx, store.AuditFilter{Action: "certificate.revoke"}))(t)) != 2 {
		t.Fatalf("revocations of discarded certificates audited %d times, want 2", audited)
	}
	if c := must(s.GetCertificate(ctx, "a1"))(t); c.Status != store.CertActive {
		t.Fatalf("revoking dev-1's discarded certificate touched its active one: %s", c.Status)
	}
	wantCode(t, second(s.RevokeCertificateAudited(ctx, "nope", 1, base, nil)), fault.NotFound)
}

// testTokenClaimDevice: a claim for an id the commit would refuse (enrolled,
// or reserved for another token) is refused the same way and holds nothing.
func testTokenClaimDevice(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2")
	must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "fixed", Fleet: fleet, Profile: profile, ExpiresAt: base.Add(time.Hour),
		CreatedBy: "test"}, []store.NewToken{{Hash: "f1", DeviceID: "reserved-1"}}, nil))(t)
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)

	c := tokenClaim("t2", "a", base.Add(time.Minute))
	c.DeviceID, c.Fleet, c.CheckReserved = "dev-1", fleet, true
	wantCode(t, s.ClaimToken(ctx, c, base), fault.AlreadyExists)
	c.ClaimPending = true // an enrolled device is not pending: still refused
	wantCode(t, s.ClaimToken(ctx, c, base), fault.AlreadyExists)
	c.DeviceID, c.ClaimPending = "reserved-1", false
	wantCode(t, s.ClaimToken(ctx, c, base), fault.DeviceIDReserved)
	// The refusals held nothing: another claim of the token succeeds.
	c.DeviceID = "free-1"
	c.ID = "b"
	noErr(t, s.ClaimToken(ctx, c, base))
	// The rightful token claims its reserved id.
	f := tokenClaim("f1", "c", base.Add(time.Minute))
	f.DeviceID, f.Fleet, f.ClaimPending = "reserved-1", fleet, true
	noErr(t, s.ClaimToken(ctx, f, base))
}
