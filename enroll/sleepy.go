package enroll

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Sleepy devices: a device that slept through its renewal window wakes up
// with an expired certificate. Its profile's renew_after_expiry lets it
// renew for that long after expiry, by the challenge path only (a CSR
// signed by the expired key over a fresh server nonce: no TLS handshake
// accepts an expired client certificate), and only while that certificate
// is still the device's active one: never revoked, never superseded. The
// chain is verified as of the certificate's last valid instant, so a
// certificate that was never Gatehouse's, or was not valid then, is
// refused as before.

// current is the certificate a renewal or a challenge is about, checked.
type current struct {
	id      ca.Identity
	serial  string
	expired bool
}

// current verifies cert (an expired one as of its expiry) and checks that
// it is the active certificate of the device it names.
func (s *Service) current(ctx context.Context, cert *x509.Certificate) (current, error) {
	if cert == nil {
		return current{}, fault.New(fault.Unauthenticated, "the current certificate is required")
	}
	cur := current{serial: ca.SerialHex(cert.SerialNumber), expired: s.cfg.Now().After(cert.NotAfter)}
	verify := s.cfg.Issuer.VerifyLeaf
	if cur.expired {
		verify = s.cfg.Issuer.VerifyExpiredLeaf
	}
	id, err := verify(cert)
	if err != nil {
		return current{}, err
	}
	cur.id = id
	rec, err := s.cfg.Records.GetCertificate(ctx, cur.serial)
	if err != nil {
		if fault.Is(err, fault.NotFound) {
			return current{}, fault.New(fault.CertInvalid, "certificate is not known to Gatehouse")
		}
		return current{}, err
	}
	switch {
	case rec.DeviceID != id.DeviceID:
		return current{}, fault.New(fault.CertInvalid, "certificate does not belong to device %s", id.DeviceID)
	case rec.Status == store.CertRevoked || rec.RevokedAt != nil:
		return current{}, fault.New(fault.CertInvalid, "certificate is revoked")
	case rec.Status == store.CertSuperseded:
		return current{}, fault.New(fault.CertInvalid, "certificate was already renewed")
	case rec.Status != store.CertActive:
		return current{}, fault.New(fault.CertInvalid, "certificate is not the device's active certificate")
	}
	return cur, nil
}

// expiredRenewable checks that profile lets cert, expired at now, renew:
// its renew_after_expiry is set and has not run out.
func expiredRenewable(profile store.Profile, cert *x509.Certificate, now time.Time) error {
	allow := profile.AfterExpiry()
	if allow <= 0 {
		return fault.New(fault.CertInvalid, "certificate has expired, and profile %s does not renew expired certificates", profile.Name)
	}
	if until := cert.NotAfter.Add(allow); !now.Before(until) {
		return fault.New(fault.CertInvalid, "certificate expired more than %s ago (renew_after_expiry of profile %s); enroll again",
			allow, profile.Name)
	}
	return nil
}

// renewAudit is a renewal's audit event: device.renew_expired for a
// sleepy device's, so an operator finds those on their own.
func renewAudit(deviceID string, cur current, newSerial string) *store.AuditEvent {
	action, detail := "device.renew", "old="+cur.serial+" new="+newSerial
	if cur.expired {
		action, detail = "device.renew_expired", detail+" proof=challenge"
	}
	return &store.AuditEvent{Actor: "device:" + deviceID, Action: action, ObjectType: "device", ObjectID: deviceID, Detail: detail}
}
