package teststore

import (
	"context"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// The consumer interfaces Store stands in for. A method added to one of them
// breaks the build here until it is wrapped (with its check) below.
var (
	_ revoke.Store           = (*Store)(nil)
	_ revoke.JobRecords      = (*Store)(nil)
	_ revoke.JobQueue        = (*Store)(nil)
	_ revoke.JobStore        = (*Store)(nil)
	_ revoke.SupersededStore = (*Store)(nil)
	_ kick.Store             = (*Store)(nil)
	_ enroll.Catalog         = (*Store)(nil)
	_ enroll.Tokens          = (*Store)(nil)
	_ enroll.Records         = (*Store)(nil)
	_ enroll.Claims          = (*Store)(nil)
	_ enroll.IDevIDs         = (*Store)(nil)
	_ audit.Sink             = (*Store)(nil)
)

// Store also implements authzsync.Source and policy.Versions (below); their
// guards sit in the test that uses them (authzsync/stale_test.go), because
// importing those packages here would link OPA into every test binary that
// uses this one.

// revoke.Store

func (s *Store) RevokeDevice(ctx context.Context, id string, reason int, at time.Time, audit *store.AuditEvent) ([]string, error) {
	if err := s.check("RevokeDevice"); err != nil {
		return nil, err
	}
	return s.real.RevokeDevice(ctx, id, reason, at, audit)
}

func (s *Store) TransitionDevice(ctx context.Context, id string, from []store.DeviceStatus, to store.DeviceStatus, at time.Time, audit *store.AuditEvent) (store.Device, error) {
	if err := s.check("TransitionDevice"); err != nil {
		return store.Device{}, err
	}
	return s.real.TransitionDevice(ctx, id, from, to, at, audit)
}

func (s *Store) RevokeCertificateAudited(ctx context.Context, serial string, reason int, at time.Time, audit func(store.Certificate) store.AuditEvent) (store.Certificate, error) {
	if err := s.check("RevokeCertificateAudited"); err != nil {
		return store.Certificate{}, err
	}
	return s.real.RevokeCertificateAudited(ctx, serial, reason, at, audit)
}

// revoke.JobRecords

func (s *Store) StartBatchRevocation(ctx context.Context, j store.RevocationJob, audit *store.AuditEvent) (store.RevocationJob, bool, error) {
	if err := s.check("StartBatchRevocation"); err != nil {
		return store.RevocationJob{}, false, err
	}
	return s.real.StartBatchRevocation(ctx, j, audit)
}

func (s *Store) GetRevocationJob(ctx context.Context, id string) (store.RevocationJob, error) {
	if err := s.check("GetRevocationJob"); err != nil {
		return store.RevocationJob{}, err
	}
	return s.real.GetRevocationJob(ctx, id)
}

func (s *Store) ListRevocationJobs(ctx context.Context, limit int) ([]store.RevocationJob, error) {
	if err := s.check("ListRevocationJobs"); err != nil {
		return nil, err
	}
	return s.real.ListRevocationJobs(ctx, limit)
}

// revoke.JobQueue

func (s *Store) ClaimRevocationJob(ctx context.Context, owner string, now, until time.Time) (store.RevocationJob, bool, error) {
	if err := s.check("ClaimRevocationJob"); err != nil {
		return store.RevocationJob{}, false, err
	}
	return s.real.ClaimRevocationJob(ctx, owner, now, until)
}

func (s *Store) RevokeBatchChunk(ctx context.Context, req store.ChunkRequest) (store.Chunk, error) {
	if err := s.check("RevokeBatchChunk"); err != nil {
		return store.Chunk{}, err
	}
	return s.real.RevokeBatchChunk(ctx, req)
}

func (s *Store) FailRevocationJob(ctx context.Context, id, owner, msg string, at time.Time) error {
	if err := s.check("FailRevocationJob"); err != nil {
		return err
	}
	return s.real.FailRevocationJob(ctx, id, owner, msg, at)
}

func (s *Store) ReleaseRevocationJob(ctx context.Context, id, owner string) error {
	if err := s.check("ReleaseRevocationJob"); err != nil {
		return err
	}
	return s.real.ReleaseRevocationJob(ctx, id, owner)
}

// revoke.SupersededStore

func (s *Store) RevokeSupersededDue(ctx context.Context, at time.Time, limit int, audit func(store.Certificate) store.AuditEvent) ([]store.Certificate, error) {
	if err := s.check("RevokeSupersededDue"); err != nil {
		return nil, err
	}
	return s.real.RevokeSupersededDue(ctx, at, limit, audit)
}

// kick.Store

func (s *Store) EnqueueKicks(ctx context.Context, deviceID, reason string, brokers []string, at time.Time) error {
	if err := s.check("EnqueueKicks"); err != nil {
		return err
	}
	return s.real.EnqueueKicks(ctx, deviceID, reason, brokers, at)
}

func (s *Store) ClaimKicks(ctx context.Context, brokers []string, now time.Time, lease time.Duration, limit int) ([]store.SessionKick, error) {
	if err := s.check("ClaimKicks"); err != nil {
		return nil, err
	}
	return s.real.ClaimKicks(ctx, brokers, now, lease, limit)
}

func (s *Store) FinishKick(ctx context.Context, deviceID, broker string, gen int64, at time.Time) (bool, error) {
	if err := s.check("FinishKick"); err != nil {
		return false, err
	}
	return s.real.FinishKick(ctx, deviceID, broker, gen, at)
}

func (s *Store) RetryKick(ctx context.Context, deviceID, broker string, gen int64, lastErr string, next time.Time, failed bool, at time.Time) (bool, error) {
	if err := s.check("RetryKick"); err != nil {
		return false, err
	}
	return s.real.RetryKick(ctx, deviceID, broker, gen, lastErr, next, failed, at)
}

func (s *Store) CancelKicks(ctx context.Context, deviceID string, at time.Time) (int64, error) {
	if err := s.check("CancelKicks"); err != nil {
		return 0, err
	}
	return s.real.CancelKicks(ctx, deviceID, at)
}

// enroll.Catalog

func (s *Store) GetFleet(ctx context.Context, name string) (store.Fleet, error) {
	if err := s.check("GetFleet"); err != nil {
		return store.Fleet{}, err
	}
	return s.real.GetFleet(ctx, name)
}

func (s *Store) GetProfile(ctx context.Context, name string) (store.Profile, error) {
	if err := s.check("GetProfile"); err != nil {
		return store.Profile{}, err
	}
	return s.real.GetProfile(ctx, name)
}

// enroll.Tokens

func (s *Store) CreateTokenBatch(ctx context.Context, b store.TokenBatch, tokens []store.NewToken, audit *store.AuditEvent) (store.TokenBatch, error) {
	if err := s.check("CreateTokenBatch"); err != nil {
		return store.TokenBatch{}, err
	}
	return s.real.CreateTokenBatch(ctx, b, tokens, audit)
}

func (s *Store) GetEnrollmentToken(ctx context.Context, hash string) (store.BootstrapToken, store.Profile, error) {
	if err := s.check("GetEnrollmentToken"); err != nil {
		return store.BootstrapToken{}, store.Profile{}, err
	}
	return s.real.GetEnrollmentToken(ctx, hash)
}

func (s *Store) CompleteEnrollment(ctx context.Context, e store.Enrollment) (store.Device, error) {
	if err := s.check("CompleteEnrollment"); err != nil {
		return store.Device{}, err
	}
	return s.real.CompleteEnrollment(ctx, e)
}

// enroll.Records

func (s *Store) GetDevice(ctx context.Context, id string) (store.Device, error) {
	if err := s.check("GetDevice"); err != nil {
		return store.Device{}, err
	}
	return s.real.GetDevice(ctx, id)
}

func (s *Store) GetCertificate(ctx context.Context, serial string) (store.Certificate, error) {
	if err := s.check("GetCertificate"); err != nil {
		return store.Certificate{}, err
	}
	return s.real.GetCertificate(ctx, serial)
}

func (s *Store) RecordRenewal(ctx context.Context, r store.Renewal) (store.Certificate, error) {
	if err := s.check("RecordRenewal"); err != nil {
		return store.Certificate{}, err
	}
	return s.real.RecordRenewal(ctx, r)
}

func (s *Store) CreateRenewalChallenge(ctx context.Context, c store.RenewalChallenge, keep int, reuseUntil time.Time) (store.RenewalChallenge, error) {
	if err := s.check("CreateRenewalChallenge"); err != nil {
		return store.RenewalChallenge{}, err
	}
	return s.real.CreateRenewalChallenge(ctx, c, keep, reuseUntil)
}

func (s *Store) GetRenewalChallenge(ctx context.Context, hash string) (store.RenewalChallenge, error) {
	if err := s.check("GetRenewalChallenge"); err != nil {
		return store.RenewalChallenge{}, err
	}
	return s.real.GetRenewalChallenge(ctx, hash)
}

// enroll.Claims

func (s *Store) ClaimToken(ctx context.Context, c store.TokenClaim, at time.Time) error {
	if err := s.check("ClaimToken"); err != nil {
		return err
	}
	return s.real.ClaimToken(ctx, c, at)
}

func (s *Store) ReleaseTokenClaim(ctx context.Context, hash, claimID string) error {
	if err := s.check("ReleaseTokenClaim"); err != nil {
		return err
	}
	return s.real.ReleaseTokenClaim(ctx, hash, claimID)
}

func (s *Store) ClaimRenewal(ctx context.Context, deviceID, serial string, c store.Claim, at time.Time) error {
	if err := s.check("ClaimRenewal"); err != nil {
		return err
	}
	return s.real.ClaimRenewal(ctx, deviceID, serial, c, at)
}

func (s *Store) ReleaseRenewalClaim(ctx context.Context, serial, claimID string) error {
	if err := s.check("ReleaseRenewalClaim"); err != nil {
		return err
	}
	return s.real.ReleaseRenewalClaim(ctx, serial, claimID)
}

func (s *Store) DiscardCertificate(ctx context.Context, c store.Certificate, cause string, at time.Time, ref store.ClaimRef, audit *store.AuditEvent) error {
	if err := s.check("DiscardCertificate"); err != nil {
		return err
	}
	return s.real.DiscardCertificate(ctx, c, cause, at, ref, audit)
}

// audit.Sink

func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	if err := s.check("AppendAudit"); err != nil {
		return err
	}
	return s.real.AppendAudit(ctx, e)
}

// authzsync.Source

func (s *Store) DevicesChangedSince(ctx context.Context, since time.Time) ([]store.DeviceWithCert, time.Time, error) {
	if err := s.check("DevicesChangedSince"); err != nil {
		return nil, since, err
	}
	return s.real.DevicesChangedSince(ctx, since)
}

// policy.Versions

func (s *Store) CreatePolicyVersion(ctx context.Context, v store.PolicyVersion, audit *store.AuditEvent) (store.PolicyVersion, error) {
	if err := s.check("CreatePolicyVersion"); err != nil {
		return store.PolicyVersion{}, err
	}
	return s.real.CreatePolicyVersion(ctx, v, audit)
}

func (s *Store) GetPolicyVersion(ctx context.Context, version int64) (store.PolicyVersion, error) {
	if err := s.check("GetPolicyVersion"); err != nil {
		return store.PolicyVersion{}, err
	}
	return s.real.GetPolicyVersion(ctx, version)
}

func (s *Store) ListPolicyVersions(ctx context.Context) ([]store.PolicyVersion, error) {
	if err := s.check("ListPolicyVersions"); err != nil {
		return nil, err
	}
	return s.real.ListPolicyVersions(ctx)
}

func (s *Store) ActivatePolicyVersion(ctx context.Context, version int64, actor string, audit *store.AuditEvent) (store.PolicyActivation, error) {
	if err := s.check("ActivatePolicyVersion"); err != nil {
		return store.PolicyActivation{}, err
	}
	return s.real.ActivatePolicyVersion(ctx, version, actor, audit)
}

func (s *Store) ActivePolicy(ctx context.Context) (store.PolicyActivation, error) {
	if err := s.check("ActivePolicy"); err != nil {
		return store.PolicyActivation{}, err
	}
	return s.real.ActivePolicy(ctx)
}

// enroll.IDevIDs

func (s *Store) GetIDevIDEnrollment(ctx context.Context, key string) (store.IDevIDRecord, error) {
	if err := s.check("GetIDevIDEnrollment"); err != nil {
		return store.IDevIDRecord{}, err
	}
	return s.real.GetIDevIDEnrollment(ctx, key)
}

func (s *Store) ClaimIDevID(ctx context.Context, c store.IDevIDClaim, at time.Time) error {
	if err := s.check("ClaimIDevID"); err != nil {
		return err
	}
	return s.real.ClaimIDevID(ctx, c, at)
}

func (s *Store) ReleaseIDevIDClaim(ctx context.Context, key, claimID string) error {
	if err := s.check("ReleaseIDevIDClaim"); err != nil {
		return err
	}
	return s.real.ReleaseIDevIDClaim(ctx, key, claimID)
}

func (s *Store) CompleteIDevIDEnrollment(ctx context.Context, e store.IDevIDEnrollment) (store.IDevIDEnrolled, error) {
	if err := s.check("CompleteIDevIDEnrollment"); err != nil {
		return store.IDevIDEnrolled{}, err
	}
	return s.real.CompleteIDevIDEnrollment(ctx, e)
}
