package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// RevokedCert is one entry of the certificate revocation list.
type RevokedCert struct {
	Serial    string // hex, as certificates are keyed
	RevokedAt time.Time
	Reason    int
	NotAfter  time.Time
}

// CRL is a signed certificate revocation list as stored: the one every
// replica serves.
type CRL struct {
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    int
	DER        []byte
	// Others are the lists of retired intermediates, with the same number
	// and entries (ca rotate); empty before any rotation.
	Others []IssuerCRL
}

// IssuerCRL is a retired intermediate's list.
type IssuerCRL struct {
	Generation int
	DER        []byte
}

// encodeOthers and decodeOthers store Others as "<gen>:<base64>;…".
func encodeOthers(others []IssuerCRL) string {
	parts := make([]string, len(others))
	for i, o := range others {
		parts[i] = strconv.Itoa(o.Generation) + ":" + base64.StdEncoding.EncodeToString(o.DER)
	}
	return strings.Join(parts, ";")
}

func decodeOthers(s string) ([]IssuerCRL, error) {
	if s == "" {
		return nil, nil
	}
	var out []IssuerCRL
	for _, part := range strings.Split(s, ";") {
		g, b, ok := strings.Cut(part, ":")
		gen, err1 := strconv.Atoi(g)
		der, err2 := base64.StdEncoding.DecodeString(b)
		if !ok || err1 != nil || err2 != nil {
			return nil, errors.New("stored retired-intermediate CRL is malformed")
		}
		out = append(out, IssuerCRL{Generation: gen, DER: der})
	}
	return out, nil
}

const (
	// Discarded certificates (DiscardCertificate) were signed, so they are
	// listed like any other revoked one; so are revocations a restore
	// learned from the last published CRL (RecordRestoredRevocations).
	sqlRevokedCerts = `SELECT serial, revoked_at, revocation_reason, not_after FROM certificates
WHERE status = 'revoked' AND not_after >= ?
UNION ALL
SELECT serial, revoked_at, revocation_reason, not_after FROM discarded_certificates WHERE not_after >= ?
UNION ALL
SELECT serial, revoked_at, revocation_reason, not_after FROM restored_revocations WHERE not_after >= ?`
	sqlGetCRL    = `SELECT crl_number, this_update, next_update, entries, der, others FROM crls WHERE id = 1`
	sqlCRLNumber = `SELECT crl_number FROM crls WHERE id = 1`
	sqlStoreCRL  = `INSERT INTO crls (id, crl_number, this_update, next_update, entries, der, others) VALUES (1, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET crl_number = excluded.crl_number, this_update = excluded.this_update,
next_update = excluded.next_update, entries = excluded.entries, der = excluded.der, others = excluded.others
WHERE excluded.crl_number > crls.crl_number`
)

// EachRevokedCertificate calls fn for every revoked certificate whose
// NotAfter is at or after notAfterSince (a revoked certificate that expired
// long ago no longer needs listing), in no particular order. Rows are
// streamed: a million revocations never sit in memory as store rows. An
// error from fn stops the walk and is returned.
func (s *Store) EachRevokedCertificate(ctx context.Context, notAfterSince time.Time, fn func(RevokedCert) error) error {
	q := sqlRevokedCerts
	if s.postgres {
		q = pgQuery(q)
	}
	rows, err := s.sql.QueryContext(ctx, q, ms(notAfterSince), ms(notAfterSince), ms(notAfterSince))
	if err != nil {
		return classify(err, "revoked certificates")
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r         RevokedCert
			revokedAt sql.NullInt64
			reason    sql.NullInt64
			notAfter  int64
		)
		if err := rows.Scan(&r.Serial, &revokedAt, &reason, &notAfter); err != nil {
			return classify(err, "revoked certificates")
		}
		// A revoked row always has its time; a hand-edited one without it
		// is still revoked, listed as revoked at the Unix epoch rather than
		// left off the list.
		r.RevokedAt = fromMS(revokedAt.Int64)
		r.Reason = int(reason.Int64)
		r.NotAfter = fromMS(notAfter)
		if err := fn(r); err != nil {
			return err
		}
	}
	return classify(rows.Err(), "revoked certificates")
}

// RevokedCertificates lists what EachRevokedCertificate walks.
func (s *Store) RevokedCertificates(ctx context.Context, notAfterSince time.Time) ([]RevokedCert, error) {
	var out []RevokedCert
	err := s.EachRevokedCertificate(ctx, notAfterSince, func(r RevokedCert) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// GetCRL returns the stored CRL; fault.NotFound when none was stored yet.
func (s *Store) GetCRL(ctx context.Context) (CRL, error) {
	var (
		c         CRL
		this, nxt int64
		entries   int64
		der       string
		others    string
	)
	if err := s.queryRow(ctx, sqlGetCRL).Scan(&c.Number, &this, &nxt, &entries, &der, &others); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return CRL{}, fault.New(fault.NotFound, "no CRL has been generated yet")
		}
		return CRL{}, classify(err, "CRL")
	}
	b, err := base64.StdEncoding.DecodeString(der)
	if err != nil {
		return CRL{}, errors.New("stored CRL is not base64")
	}
	c.ThisUpdate, c.NextUpdate, c.Entries, c.DER = fromMS(this), fromMS(nxt), int(entries), b
	if c.Others, err = decodeOthers(others); err != nil {
		return CRL{}, err
	}
	return c, nil
}

// CRLNumber returns the stored CRL's number, 0 when there is none: a cheap
// poll for a list another replica published.
func (s *Store) CRLNumber(ctx context.Context) (int64, error) {
	var n int64
	err := s.queryRow(ctx, sqlCRLNumber).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, classify(err, "CRL")
}

// StoreCRL replaces the stored CRL if c's number is higher. When another
// replica stored an equal or higher number first, nothing changes and the
// error is fault.Conflict: the caller's list may lack revocations the other
// one has, or the reverse, so it must generate again from the new number.
func (s *Store) StoreCRL(ctx context.Context, c CRL) error {
	if c.Number <= 0 || len(c.DER) == 0 {
		return fault.New(fault.InvalidArgument, "a CRL needs a positive number and a body")
	}
	der := base64.StdEncoding.EncodeToString(c.DER)
	return s.writeSQL(ctx, func(ex execer) error {
		res, err := ex.ExecContext(ctx, sqlStoreCRL, c.Number, ms(c.ThisUpdate), ms(c.NextUpdate), int64(c.Entries), der, encodeOthers(c.Others))
		if err != nil {
			return classify(err, "CRL")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return classify(err, "CRL")
		}
		if n == 0 {
			return fault.New(fault.Conflict, "CRL number %d is not above the stored CRL's", c.Number)
		}
		return s.notifyEx(ctx, ex, TopicCRL)
	})
}
