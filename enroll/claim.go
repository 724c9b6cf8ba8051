package enroll

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Claims takes a credential before anything is signed with it, so that
// every certificate the CA signs is either recorded or discarded as
// revoked, and one credential yields at most one certificate: two requests
// racing with one token, one challenge or one current certificate no
// longer both get a certificate signed, of which only one was recorded and
// the other valid, unrevocable and on no CRL.
type Claims interface {
	// ClaimToken is token_used when the token is used or claimed by a live
	// claim of another enrollment, and refuses as the commit would a
	// device id that is enrolled or reserved.
	ClaimToken(ctx context.Context, c store.TokenClaim, at time.Time) error
	ReleaseTokenClaim(ctx context.Context, hash, claimID string) error
	// ClaimRenewal is certificate_invalid when the certificate is not the
	// device's active one, or is claimed by another renewal.
	ClaimRenewal(ctx context.Context, deviceID, serial string, c store.Claim, at time.Time) error
	ReleaseRenewalClaim(ctx context.Context, serial, claimID string) error
	// DiscardCertificate records a signed certificate that was never
	// handed out as revoked.
	DiscardCertificate(ctx context.Context, c store.Certificate, cause string, at time.Time, ref store.ClaimRef, audit *store.AuditEvent) error
}

var _ Claims = (*store.Store)(nil)

// cleanupTimeout bounds the writes that undo a failed enrollment or renewal
// (a claim released, a certificate discarded); they run even when the
// client has hung up.
const cleanupTimeout = 10 * time.Second

// claimPoll is the first and the longest pause between looks at a token
// claimed by a concurrent enrollment.
const (
	claimPollMin = 5 * time.Millisecond
	claimPollMax = 100 * time.Millisecond
)

func (s *Service) newClaim(now time.Time) store.Claim {
	return store.Claim{ID: uuid.NewString(), Until: now.Add(s.cfg.ClaimTTL)}
}

// claimToken claims the token for this enrollment. A token that a
// concurrent enrollment holds is waited for, up to ClaimWait: that one is
// most often this very device retrying after a lost reply, and once it
// commits this request gets its certificate (repeat); if it failed and let
// go, this request claims the token. A token used meanwhile is token_used,
// for the caller to repeat; one still held after the wait is unavailable
// (retry), not token_used, which would tell a factory line to throw a good
// token away.
func (s *Service) claimToken(ctx context.Context, c store.TokenClaim) (store.Claim, error) {
	deadline := time.Now().Add(s.cfg.ClaimWait)
	pause := claimPollMin
	for {
		c.Claim = s.newClaim(s.cfg.Now())
		err := s.cfg.Claims.ClaimToken(ctx, c, s.cfg.Now())
		if !fault.Is(err, fault.TokenUsed) {
			return c.Claim, err
		}
		tok, _, gerr := s.cfg.Tokens.GetEnrollmentToken(ctx, c.Hash)
		switch {
		case gerr != nil:
			return store.Claim{}, gerr
		case tok.UsedAt != nil:
			return store.Claim{}, err
		case time.Now().Add(pause).After(deadline):
			return store.Claim{}, fault.New(fault.Unavailable, "bootstrap token is being redeemed by another request; retry")
		}
		select {
		case <-ctx.Done():
			return store.Claim{}, fault.Wrap(ctx.Err(), fault.Unavailable, "gave up waiting for the bootstrap token")
		case <-time.After(pause):
		}
		pause = min(2*pause, claimPollMax)
	}
}

// cleanupContext outlives the request: a claim left behind blocks its
// credential until it expires, and a discarded certificate not recorded is
// lost.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// releaseToken lets go of a token whose enrollment did not commit, so it
// can be retried at once. A release that fails leaves the claim to expire.
func (s *Service) releaseToken(ctx context.Context, hash, claimID string) {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := s.cfg.Claims.ReleaseTokenClaim(ctx, hash, claimID); err != nil {
		s.cfg.Log.Warn("bootstrap token claim not released; it expires by itself", "ttl", s.cfg.ClaimTTL, "err", err)
	}
}

// releaseRenewal is releaseToken for a renewal's claim on its certificate.
func (s *Service) releaseRenewal(ctx context.Context, serial, claimID string) {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := s.cfg.Claims.ReleaseRenewalClaim(ctx, serial, claimID); err != nil {
		s.cfg.Log.Warn("renewal claim not released; it expires by itself", "serial", serial, "ttl", s.cfg.ClaimTTL, "err", err)
	}
}

// discard records leaf, signed for an enrollment or renewal (action) of
// deviceID that then failed with cause, as revoked, releasing ref's claim
// in the same write, and republishes the CRL: nobody was given it, but it
// is signed by our CA, and a broker that checks only the CRL would accept
// it. If even that write fails the certificate is logged at error level for
// an operator to revoke, and discard reports false: the claim is still
// held.
func (s *Service) discard(ctx context.Context, action, deviceID string, leaf *x509.Certificate, ref store.ClaimRef, cause error) bool {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	rec := certRecord(deviceID, leaf)
	why := action + " failed (" + string(fault.CodeOf(cause)) + ") after signing"
	err := s.cfg.Claims.DiscardCertificate(ctx, rec, why, s.cfg.Now(), ref, &store.AuditEvent{Actor: "device:" + deviceID,
		Action: "certificate.discard", ObjectType: "certificate", ObjectID: rec.Serial, Detail: why})
	if err != nil {
		s.cfg.Log.Error("a signed certificate was neither recorded nor discarded: revoke it by hand",
			"serial", rec.Serial, "device", deviceID, "fingerprint", rec.Fingerprint, "pem", rec.PEM, "err", err)
		return false
	}
	s.publishCRL(ctx)
	return true
}

// publishCRL republishes the CRL within CRLWait. Its failure fails nothing:
// the revocation is committed, OCSP already answers revoked, and the CRL's
// own loop retries.
func (s *Service) publishCRL(ctx context.Context) {
	if s.cfg.CRL == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CRLWait)
	_ = s.cfg.CRL.Publish(cctx)
	cancel()
}
