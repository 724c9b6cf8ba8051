package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// PolicyVersion is one immutable version of the topic ACL policy.
type PolicyVersion struct {
	Version   int64
	Policy    string
	Tests     string
	Digest    string
	Comment   string
	CreatedBy string
	CreatedAt time.Time
}

// PolicyActivation records that a version became the active one.
type PolicyActivation struct {
	Version     int64
	ActivatedBy string
	ActivatedAt time.Time
}

type policyRow struct {
	Version   int64  `gorm:"column:version;primaryKey;autoIncrement:false"`
	Policy    string `gorm:"column:policy"`
	Tests     string `gorm:"column:tests"`
	Digest    string `gorm:"column:digest"`
	Comment   string `gorm:"column:comment"`
	CreatedBy string `gorm:"column:created_by"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
}

func (policyRow) TableName() string { return "policy_versions" }

func (r policyRow) domain() PolicyVersion {
	return PolicyVersion{Version: r.Version, Policy: r.Policy, Tests: r.Tests, Digest: r.Digest, Comment: r.Comment,
		CreatedBy: r.CreatedBy, CreatedAt: fromMS(r.CreatedAt)}
}

type activationRow struct {
	ID          string `gorm:"column:id;primaryKey"`
	Version     int64  `gorm:"column:version"`
	ActivatedBy string `gorm:"column:activated_by"`
	ActivatedAt int64  `gorm:"column:activated_at"`
}

func (activationRow) TableName() string { return "policy_activations" }

// CreatePolicyVersion stores a new version numbered one past the newest,
// and audit, when not nil, in the same transaction with the new version
// number as its ObjectID (only the transaction knows it).
func (s *Store) CreatePolicyVersion(ctx context.Context, v PolicyVersion, audit *AuditEvent) (PolicyVersion, error) {
	var out PolicyVersion
	err := s.write(ctx, func(tx *gorm.DB) error {
		var last int64
		if err := tx.Model(&policyRow{}).Select("COALESCE(MAX(version), 0)").Scan(&last).Error; err != nil {
			return classify(err, "policy versions")
		}
		r := policyRow{Version: last + 1, Policy: v.Policy, Tests: v.Tests, Digest: v.Digest, Comment: v.Comment,
			CreatedBy: v.CreatedBy, CreatedAt: ms(s.now())}
		if err := tx.Create(&r).Error; err != nil {
			err = classify(err, "policy version")
			if fault.Is(err, fault.AlreadyExists) {
				// Two replicas numbered a version at once; the caller may retry.
				return fault.New(fault.Conflict, "another policy version was created concurrently; try again")
			}
			return err
		}
		out = r.domain()
		if audit == nil {
			return nil
		}
		e := *audit
		e.ObjectID = strconv.FormatInt(r.Version, 10)
		return s.appendAuditTx(tx, &e)
	})
	return out, err
}

// GetPolicyVersion returns one version.
func (s *Store) GetPolicyVersion(ctx context.Context, version int64) (PolicyVersion, error) {
	var r policyRow
	if err := s.db.WithContext(ctx).Where("version = ?", version).Take(&r).Error; err != nil {
		return PolicyVersion{}, classify(err, "policy version")
	}
	return r.domain(), nil
}

// ListPolicyVersions returns every version, newest first.
func (s *Store) ListPolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	var rows []policyRow
	if err := s.db.WithContext(ctx).Order("version DESC").Find(&rows).Error; err != nil {
		return nil, classify(err, "policy versions")
	}
	out := make([]PolicyVersion, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// ActivatePolicyVersion makes version the active one, and writes audit
// (when not nil) in the same transaction.
func (s *Store) ActivatePolicyVersion(ctx context.Context, version int64, actor string, audit *AuditEvent) (PolicyActivation, error) {
	at := s.now()
	r := activationRow{ID: uuid.Must(uuid.NewV7()).String(), Version: version, ActivatedBy: actor, ActivatedAt: ms(at)}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			err = classify(err, "policy activation")
			if fault.Is(err, fault.Conflict) {
				return fault.New(fault.NotFound, "policy version %d not found", version)
			}
			return err
		}
		if err := s.notify(tx, TopicPolicy); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return PolicyActivation{}, err
	}
	return PolicyActivation{Version: version, ActivatedBy: actor, ActivatedAt: fromMS(r.ActivatedAt)}, nil
}

// ActivePolicy returns the newest activation; fault.NotFound when none.
func (s *Store) ActivePolicy(ctx context.Context) (PolicyActivation, error) {
	var r activationRow
	err := s.db.WithContext(ctx).Order("activated_at DESC, id DESC").Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return PolicyActivation{}, fault.New(fault.NotFound, "no policy has been activated")
	}
	if err != nil {
		return PolicyActivation{}, classify(err, "policy activation")
	}
	return PolicyActivation{Version: r.Version, ActivatedBy: r.ActivatedBy, ActivatedAt: fromMS(r.ActivatedAt)}, nil
}

// ListPolicyActivations returns the activation history, newest first.
func (s *Store) ListPolicyActivations(ctx context.Context, limit int) ([]PolicyActivation, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows []activationRow
	if err := s.db.WithContext(ctx).Order("activated_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, classify(err, "policy activations")
	}
	out := make([]PolicyActivation, len(rows))
	for i, r := range rows {
		out[i] = PolicyActivation{Version: r.Version, ActivatedBy: r.ActivatedBy, ActivatedAt: fromMS(r.ActivatedAt)}
	}
	return out, nil
}
