package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Vendor PKIs for IDevID enrollment (migrations/00017): the vendors, their
// newest CRL per issuer, and their allow-lists of IDevID serials. The store
// keeps bytes and text; what they mean (certificates, CRLs, serials) is
// package idevid's to check before they get here.

type idevidVendorRow struct {
	Fleet            string `gorm:"column:fleet;primaryKey"`
	Name             string `gorm:"column:name;primaryKey"`
	Profile          string `gorm:"column:profile"`
	AnchorsPEM       string `gorm:"column:anchors_pem"`
	IntermediatesPEM string `gorm:"column:intermediates_pem"`
	IDFrom           string `gorm:"column:id_from"`
	IDPrefix         string `gorm:"column:id_prefix"`
	AllowReenroll    int64  `gorm:"column:allow_reenroll"`
	RequireAllowList int64  `gorm:"column:require_allowlist"`
	AllowListSize    int64  `gorm:"column:allowlist_size"`
	CreatedAt        int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt        int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (idevidVendorRow) TableName() string { return "idevid_vendors" }

func (r idevidVendorRow) domain() IDevIDVendor {
	return IDevIDVendor{Fleet: r.Fleet, Name: r.Name, Profile: r.Profile, AnchorsPEM: r.AnchorsPEM,
		IntermediatesPEM: r.IntermediatesPEM, IDFrom: r.IDFrom, IDPrefix: r.IDPrefix,
		AllowReenroll: r.AllowReenroll != 0, RequireAllowList: r.RequireAllowList != 0,
		AllowListSize: int(r.AllowListSize), CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
}

type idevidCRLRow struct {
	Fleet     string `gorm:"column:fleet"`
	Vendor    string `gorm:"column:vendor"`
	IssuerKey string `gorm:"column:issuer_key"`
	DER       string `gorm:"column:der"`
}

func vendorWhat(fleet, name string) string { return "IDevID vendor " + fleet + "/" + name }

// crlNumberDigits is the width of a stored CRL number: 20 octets, the most
// RFC 5280 allows, as hex.
const crlNumberDigits = 40

// crlNumberText is n as stored: zero-padded lower-case hex, so that text
// order is numeric order; "" for no number.
func crlNumberText(n *big.Int) (string, error) {
	if n == nil {
		return "", nil
	}
	if n.Sign() < 0 {
		return "", fault.New(fault.InvalidArgument, "CRL number is negative")
	}
	h := n.Text(16)
	if len(h) > crlNumberDigits {
		return "", fault.New(fault.InvalidArgument, "CRL number is longer than 20 octets")
	}
	return strings.Repeat("0", crlNumberDigits-len(h)) + h, nil
}

// CreateIDevIDVendor registers a vendor PKI for a fleet, with its audit
// event. Its fleet and profile must exist (NotFound otherwise); a second
// vendor of one name in a fleet is AlreadyExists. CRLs and AllowListSize
// are ignored: lists are imported on their own (PutIDevIDVendorCRL,
// ReplaceIDevIDAllowList).
func (s *Store) CreateIDevIDVendor(ctx context.Context, v IDevIDVendor, audit *AuditEvent) (IDevIDVendor, error) {
	now := ms(s.now())
	r := idevidVendorRow{Fleet: v.Fleet, Name: v.Name, Profile: v.Profile, AnchorsPEM: v.AnchorsPEM,
		IntermediatesPEM: v.IntermediatesPEM, IDFrom: v.IDFrom, IDPrefix: v.IDPrefix,
		AllowReenroll: flag(v.AllowReenroll), RequireAllowList: flag(v.RequireAllowList), CreatedAt: now, UpdatedAt: now}
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := s.mustExist(tx, "fleets", v.Fleet, "fleet "+v.Fleet); err != nil {
			return err
		}
		if err := s.mustExist(tx, "profiles", v.Profile, "profile "+v.Profile); err != nil {
			return err
		}
		if err := tx.Create(&r).Error; err != nil {
			return classify(err, vendorWhat(v.Fleet, v.Name))
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return IDevIDVendor{}, err
	}
	return r.domain(), nil
}

// mustExist is NotFound naming what unless table has a row of that name.
// Read in the writing transaction: the foreign key would refuse a missing
// one too, but as a conflict that does not say which.
func (s *Store) mustExist(tx *gorm.DB, table, name, what string) error {
	var n int64
	if err := tx.Table(table).Where("name = ?", name).Count(&n).Error; err != nil {
		return classify(err, what)
	}
	if n == 0 {
		return fault.New(fault.NotFound, "%s not found", what)
	}
	return nil
}

// GetIDevIDVendor returns one vendor with its CRLs.
func (s *Store) GetIDevIDVendor(ctx context.Context, fleet, name string) (IDevIDVendor, error) {
	var r idevidVendorRow
	db := s.db.WithContext(ctx)
	if err := db.Where("fleet = ? AND name = ?", fleet, name).Take(&r).Error; err != nil {
		return IDevIDVendor{}, classify(err, vendorWhat(fleet, name))
	}
	v := r.domain()
	var crls []idevidCRLRow
	if err := db.Table("idevid_vendor_crls").Select("fleet, vendor, issuer_key, der").
		Where("fleet = ? AND vendor = ?", fleet, name).Order("issuer_key").Find(&crls).Error; err != nil {
		return IDevIDVendor{}, classify(err, "IDevID vendor CRLs")
	}
	for _, c := range crls {
		der, err := base64.StdEncoding.DecodeString(c.DER)
		if err != nil {
			return IDevIDVendor{}, fmt.Errorf("stored CRL of %s is malformed: %w", vendorWhat(fleet, name), err)
		}
		v.CRLs = append(v.CRLs, der)
	}
	return v, nil
}

// ListIDevIDVendors returns the vendors of fleet ("" for every fleet)
// ordered by fleet and name, each with its CRLs: what an IDevID enrollment
// matches a device against.
func (s *Store) ListIDevIDVendors(ctx context.Context, fleet string) ([]IDevIDVendor, error) {
	db := s.db.WithContext(ctx)
	q, cq := db.Model(&idevidVendorRow{}), db.Table("idevid_vendor_crls").Select("fleet, vendor, issuer_key, der")
	if fleet != "" {
		q, cq = q.Where("fleet = ?", fleet), cq.Where("fleet = ?", fleet)
	}
	var rows []idevidVendorRow
	if err := q.Order("fleet").Order("name").Find(&rows).Error; err != nil {
		return nil, classify(err, "IDevID vendors")
	}
	var crls []idevidCRLRow
	if err := cq.Order("fleet").Order("vendor").Order("issuer_key").Find(&crls).Error; err != nil {
		return nil, classify(err, "IDevID vendor CRLs")
	}
	out := make([]IDevIDVendor, len(rows))
	at := make(map[[2]string]int, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
		at[[2]string{r.Fleet, r.Name}] = i
	}
	for _, c := range crls {
		i, ok := at[[2]string{c.Fleet, c.Vendor}]
		if !ok {
			// Imported after the vendors were read; the next read has it.
			continue
		}
		der, err := base64.StdEncoding.DecodeString(c.DER)
		if err != nil {
			return nil, fmt.Errorf("stored CRL of %s is malformed: %w", vendorWhat(c.Fleet, c.Vendor), err)
		}
		out[i].CRLs = append(out[i].CRLs, der)
	}
	return out, nil
}

// UpdateIDevIDVendor replaces a vendor's settings (profile, PEMs, id
// derivation, flags), with its audit event. Stored CRLs stay: a CRL whose
// issuer left the PEMs may still cover certificates that devices send with
// their chain. CRLs and AllowListSize of v are ignored.
//
// With v.UpdatedAt set (the vendor as its caller read it), the write is
// conditional on that version: a change made since, by a concurrent
// update, is not overwritten but answered conflict, for the caller to read
// again; a read-change-write must not lose another's change.
func (s *Store) UpdateIDevIDVendor(ctx context.Context, v IDevIDVendor, audit *AuditEvent) (IDevIDVendor, error) {
	at := ms(s.now())
	if read := ms(v.UpdatedAt); !v.UpdatedAt.IsZero() && at <= read {
		at = read + 1 // every update moves the version
	}
	set := map[string]any{
		"profile": v.Profile, "anchors_pem": v.AnchorsPEM, "intermediates_pem": v.IntermediatesPEM,
		"id_from": v.IDFrom, "id_prefix": v.IDPrefix, "allow_reenroll": flag(v.AllowReenroll),
		"require_allowlist": flag(v.RequireAllowList), "updated_at": at,
	}
	what := vendorWhat(v.Fleet, v.Name)
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := s.mustExist(tx, "profiles", v.Profile, "profile "+v.Profile); err != nil {
			return err
		}
		q := tx.Model(&idevidVendorRow{}).Where("fleet = ? AND name = ?", v.Fleet, v.Name)
		if !v.UpdatedAt.IsZero() {
			q = q.Where("updated_at = ?", ms(v.UpdatedAt))
		}
		res := q.Updates(set)
		if res.Error == nil && res.RowsAffected == 0 && !v.UpdatedAt.IsZero() {
			var n int64
			if err := tx.Model(&idevidVendorRow{}).Where("fleet = ? AND name = ?", v.Fleet, v.Name).Count(&n).Error; err != nil {
				return classify(err, what)
			}
			if n > 0 {
				return fault.New(fault.Conflict, "%s changed since it was read; read it again", what)
			}
		}
		if err := mustAffect(res, what); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return IDevIDVendor{}, err
	}
	return s.GetIDevIDVendor(ctx, v.Fleet, v.Name)
}

// DeleteIDevIDVendor removes a vendor with its CRLs and allow-list, with
// its audit event. Devices it enrolled stay: they hold Gatehouse
// certificates now, revoked the usual way.
func (s *Store) DeleteIDevIDVendor(ctx context.Context, fleet, name string, audit *AuditEvent) error {
	return s.write(ctx, func(tx *gorm.DB) error {
		// The vendor row first: its delete locks it (PostgreSQL), so an
		// allow-list replacement, which holds that lock while it inserts,
		// has committed before the rows below are deleted, or finds no
		// vendor after. The CRLs' foreign key cascades; the allow-list has
		// none (migrations/00017 says why).
		res := tx.Where("fleet = ? AND name = ?", fleet, name).Delete(&idevidVendorRow{})
		if err := mustAffect(res, vendorWhat(fleet, name)); err != nil {
			return err
		}
		for _, table := range []string{"idevid_vendor_crls", "idevid_allowlist"} {
			if err := tx.Exec("DELETE FROM "+table+" WHERE fleet = ? AND vendor = ?", fleet, name).Error; err != nil {
				return classify(err, vendorWhat(fleet, name))
			}
		}
		return s.appendAuditTx(tx, audit)
	})
}

// sqlPutVendorCRL stores a vendor CRL unless the stored one of its issuer
// is as new or newer: one statement, so concurrent imports cannot lose the
// newest (PostgreSQL evaluates the WHERE on the latest committed row, under
// its lock). Newer means: not issued before the stored one, and a higher
// number when both have one, else a later thisUpdate. %s is the number
// column as compared: under the "C" collation on PostgreSQL, where the
// database's collation might not order hex digits bytewise.
const sqlPutVendorCRL = `INSERT INTO idevid_vendor_crls (fleet, vendor, issuer_key, number, this_update, der, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fleet, vendor, issuer_key) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
der = excluded.der, updated_at = excluded.updated_at
WHERE excluded.this_update >= idevid_vendor_crls.this_update AND (
 (excluded.number <> '' AND idevid_vendor_crls.number <> '' AND excluded.number%[1]s > idevid_vendor_crls.number%[1]s)
 OR ((excluded.number = '' OR idevid_vendor_crls.number = '') AND excluded.this_update > idevid_vendor_crls.this_update))`

// PutIDevIDVendorCRL stores der as the CRL of issuerKey (an issuer's
// identity chosen by the caller) for a vendor, with its audit event, and
// refuses (fault.Conflict) one that is not newer than the stored CRL of
// that issuer: importing an older list would un-revoke what the newer
// revoked. number is the CRL number, nil when the list has none.
func (s *Store) PutIDevIDVendorCRL(ctx context.Context, fleet, name, issuerKey string, der []byte, number *big.Int,
	thisUpdate time.Time, audit *AuditEvent) error {
	num, err := crlNumberText(number)
	if err != nil {
		return err
	}
	q := fmt.Sprintf(sqlPutVendorCRL, "")
	if s.postgres {
		q = fmt.Sprintf(sqlPutVendorCRL, ` COLLATE "C"`)
	}
	what := vendorWhat(fleet, name)
	return s.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&idevidVendorRow{}).Where("fleet = ? AND name = ?", fleet, name).Count(&n).Error; err != nil {
			return classify(err, what)
		}
		if n == 0 {
			return fault.New(fault.NotFound, "%s not found", what)
		}
		res := tx.Exec(q, fleet, name, issuerKey, num, ms(thisUpdate), base64.StdEncoding.EncodeToString(der), ms(s.now()))
		if res.Error != nil {
			return classify(res.Error, what+" CRL")
		}
		if res.RowsAffected == 0 {
			return fault.New(fault.Conflict, "%s already has a CRL of this issuer as new or newer (number, thisUpdate): an older list is never imported over it", what)
		}
		return s.appendAuditTx(tx, audit)
	})
}

// allowListBatch is the most serials one SQLite INSERT of an allow-list
// carries (insertAllowList).
const allowListBatch = 512

// ReplaceIDevIDAllowList replaces a vendor's allow-list with serials
// (normalised by the caller; duplicates are stored once), with its audit
// event, in one transaction: a failed replacement leaves the old list. It
// returns the number of serials stored. The serials go in by batches
// (insertAllowList): no memory beyond the caller's slice and one batch.
func (s *Store) ReplaceIDevIDAllowList(ctx context.Context, fleet, name string, serials []string, audit *AuditEvent) (int, error) {
	what := vendorWhat(fleet, name)
	var stored int64
	err := s.write(ctx, func(tx *gorm.DB) error {
		stored = 0
		// The vendor row is locked first (PostgreSQL; SQLite has one
		// writer): concurrent replacements of one list run one after the
		// other, each whole.
		q := tx.Model(&idevidVendorRow{}).Select("fleet").Where("fleet = ? AND name = ?", fleet, name)
		if s.postgres {
			q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
		}
		var found []string
		if err := q.Find(&found).Error; err != nil {
			return classify(err, what)
		}
		if len(found) == 0 {
			return fault.New(fault.NotFound, "%s not found", what)
		}
		if err := tx.Exec("DELETE FROM idevid_allowlist WHERE fleet = ? AND vendor = ?", fleet, name).Error; err != nil {
			return classify(err, what+" allow-list")
		}
		added, err := s.insertAllowList(tx, fleet, name, serials)
		if err != nil {
			return classify(err, what+" allow-list")
		}
		stored = added
		res := tx.Model(&idevidVendorRow{}).Where("fleet = ? AND name = ?", fleet, name).
			Updates(map[string]any{"allowlist_size": stored, "updated_at": ms(s.now())})
		if err := mustAffect(res, what); err != nil {
			return err
		}
		return s.appendAuditTx(tx, audit)
	})
	if err != nil {
		return 0, err
	}
	return int(stored), nil
}

// insertAllowList inserts serials into a vendor's allow-list in tx and
// returns how many were new. It runs on the transaction's connection below
// gorm, in the dialect's placeholders.
//
// PostgreSQL takes allowListPGBatch serials a statement as one text[]
// parameter (unnest): a million serials cost a hundred statements, where
// multi-row VALUES needed thousands and ran at a third of the speed.
// SQLite, in process, takes multi-row VALUES of powers of two up to
// allowListBatch rows, so at most a dozen distinct statements are ever
// prepared whatever the list sizes.
func (s *Store) insertAllowList(tx *gorm.DB, fleet, name string, serials []string) (int64, error) {
	ctx, pool := tx.Statement.Context, tx.Statement.ConnPool
	var stored int64
	exec := func(q string, args ...any) error {
		res, err := pool.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		stored += n
		return err
	}
	if s.postgres {
		for rest := serials; len(rest) > 0; {
			n := min(len(rest), allowListPGBatch)
			if err := exec(sqlAllowListPG, fleet, name, rest[:n]); err != nil {
				return 0, err
			}
			rest = rest[n:]
		}
		return stored, nil
	}
	args := make([]any, 0, 3*allowListBatch)
	for rest := serials; len(rest) > 0; {
		n := allowListBatch
		for n > len(rest) {
			n /= 2
		}
		args = args[:0]
		for _, serial := range rest[:n] {
			args = append(args, fleet, name, serial)
		}
		if err := exec(sqliteAllowListInsert(n), args...); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return stored, nil
}

const (
	allowListPGBatch = 20000
	sqlAllowListPG   = `INSERT INTO idevid_allowlist (fleet, vendor, serial) SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`
)

// sqliteAllowListInsert is the INSERT of n allow-list rows.
func sqliteAllowListInsert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO idevid_allowlist (fleet, vendor, serial) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?)")
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	return b.String()
}

// IDevIDAllowed reports whether serial (normalised) is on the allow-list of
// a vendor.
func (s *Store) IDevIDAllowed(ctx context.Context, fleet, name, serial string) (bool, error) {
	var hits []int
	err := s.db.WithContext(ctx).Raw("SELECT 1 FROM idevid_allowlist WHERE fleet = ? AND vendor = ? AND serial = ? LIMIT 1",
		fleet, name, serial).Scan(&hits).Error
	if err != nil {
		return false, classify(err, vendorWhat(fleet, name)+" allow-list")
	}
	return len(hits) > 0, nil
}
