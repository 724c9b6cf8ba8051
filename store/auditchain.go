package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The audit trail is a hash chain, one per database (issue 11). Each row
// appended gets seq = the last row's seq + 1, prev_hash = the last row's
// hash and hash = SHA-256 over its content and prev_hash (auditHash). An
// edited row no longer matches its hash; a deleted one leaves a gap in seq
// and a prev_hash that matches nothing. Rows from before migration 00011
// carry no chain: it starts at the first new row, whose prev_hash is
// GenesisHash.
//
// Appends are serialised, so the chain never forks: on PostgreSQL, where
// several replicas write concurrently, by a transaction-scoped advisory
// lock taken just before the head is read (held until commit, so the next
// appender reads this row); SQLite has one writer already (writeMu
// in-process, BEGIN IMMEDIATE across processes). The unique index on seq
// backs this up: a fork fails the write instead.

// GenesisHash is the prev_hash of the first chained row.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// auditChainLock is the PostgreSQL advisory lock serialising audit appends.
// It is taken as the audit insert is the last statement of every writing
// transaction, so it is held only from there to commit.
const auditChainLock = 0x6761746561 // "gatea"

const (
	sqlAuditChainLock = `SELECT pg_advisory_xact_lock(?)`
	sqlAuditHead      = `SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`
	sqlInsertAudit    = `INSERT INTO audit_events (id, at, actor, action, object_type, object_id, detail, seq, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlAuditChainCols = `SELECT id, at, actor, action, object_type, object_id, detail, seq, prev_hash, hash FROM audit_events `
)

// auditHashDomain versions the canonical encoding.
const auditHashDomain = "gatehouse-audit-v1\x00"

// auditHash is the hex SHA-256 of the row's canonical encoding followed by
// prevHash: the domain string, seq and at as 8-byte big-endian integers,
// then id, actor, action, object_type, object_id and detail, each as an
// 8-byte big-endian length and its bytes, then prevHash's 64 hex
// characters. Lengths make the encoding unambiguous (no field can borrow
// bytes from the next); an external verifier can recompute it from an
// export line.
func auditHash(seq, at int64, id, actor, action, objType, objID, detail, prevHash string) string {
	h := sha256.New()
	var b [8]byte
	h.Write([]byte(auditHashDomain))
	for _, n := range []int64{seq, at} {
		binary.BigEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	for _, f := range []string{id, actor, action, objType, objID, detail} {
		binary.BigEndian.PutUint64(b[:], uint64(len(f)))
		h.Write(b[:])
		h.Write([]byte(f))
	}
	h.Write([]byte(prevHash))
	return hex.EncodeToString(h.Sum(nil))
}

// appendAudit is the one way an audit row is written: it chains e onto the
// last row, inside the caller's transaction ex. ID and At are filled in
// when empty.
func (s *Store) appendAudit(ctx context.Context, ex execer, e *AuditEvent) error {
	if e == nil {
		return nil
	}
	r := s.auditRow(e)
	if s.postgres {
		if _, err := ex.ExecContext(ctx, sqlAuditChainLock, auditChainLock); err != nil {
			return classify(err, "audit chain")
		}
	}
	var (
		seq  int64
		prev string
	)
	switch err := ex.QueryRowContext(ctx, sqlAuditHead).Scan(&seq, &prev); {
	case errors.Is(err, sql.ErrNoRows):
		seq, prev = 0, GenesisHash
	case err != nil:
		return classify(err, "audit chain")
	}
	seq++
	hash := auditHash(seq, r.At, r.ID, r.Actor, r.Action, r.ObjectType, r.ObjectID, r.Detail, prev)
	_, err := ex.ExecContext(ctx, sqlInsertAudit, r.ID, r.At, r.Actor, r.Action, r.ObjectType, r.ObjectID, r.Detail,
		seq, prev, hash)
	return classify(err, "audit event")
}

// gormExecer runs hand-written statements in a gorm transaction; gorm
// rewrites the ? placeholders for PostgreSQL.
type gormExecer struct{ tx *gorm.DB }

func (g gormExecer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res := g.tx.WithContext(ctx).Exec(query, args...)
	return rowsAffected(res.RowsAffected), res.Error
}

func (g gormExecer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return g.tx.WithContext(ctx).Raw(query, args...).Row()
}

type rowsAffected int64

func (rowsAffected) LastInsertId() (int64, error)   { return 0, errors.New("not supported") }
func (n rowsAffected) RowsAffected() (int64, error) { return int64(n), nil }

// ChainedAuditEvent is an audit event with its place in the chain. Seq is
// 0 and the hashes empty for rows written before the chain existed.
type ChainedAuditEvent struct {
	AuditEvent
	Seq      int64
	PrevHash string
	Hash     string
}

// AuditVerification is the outcome of VerifyAuditChain.
type AuditVerification struct {
	OK bool
	// FirstBroken is the id of the first row that fails; empty when OK.
	FirstBroken string
	// Reason says how it fails: "hash" (its content or hash was changed),
	// "prev_hash" (it does not follow the row before it) or "gap" (rows
	// before it are missing).
	Reason  string
	Checked int64
	// HeadSeq and HeadHash are the last row that verified: an operator who
	// records them elsewhere can later tell a truncated tail (the chain
	// ends before HeadSeq) from a chain that only grew (VerifyAuditChainFrom).
	HeadSeq  int64
	HeadHash string
}

// AuditAnchor is a row of the chain known from an earlier check.
type AuditAnchor struct {
	Seq  int64
	Hash string
}

// VerifyAuditChain walks the chain in seq order, streaming, and stops at
// the first row that fails. With since set it starts at the row before the
// first one at or after since (so that row's link is checked too); that row
// missing is a gap like any other.
func (s *Store) VerifyAuditChain(ctx context.Context, since time.Time) (AuditVerification, error) {
	start, ok, err := s.auditChainStart(ctx, since, true)
	if err != nil || !ok {
		return AuditVerification{OK: err == nil}, err
	}
	var prev *ChainedAuditEvent
	if start == 1 {
		prev = &ChainedAuditEvent{Hash: GenesisHash}
	}
	return s.verifyChainFrom(ctx, start, prev)
}

// VerifyAuditChainFrom checks that the anchor row is still in the chain
// with the same hash and that every row after it follows on: what grew
// since an earlier check, without reading what that check already read.
// Checked counts the rows after the anchor.
func (s *Store) VerifyAuditChainFrom(ctx context.Context, from AuditAnchor) (AuditVerification, error) {
	var (
		out    AuditVerification
		anchor *ChainedAuditEvent
	)
	err := s.streamAudit(ctx, sqlAuditChainCols+`WHERE seq = ?`, []any{from.Seq}, func(r ChainedAuditEvent) error {
		anchor = &r
		return nil
	})
	if err != nil {
		return AuditVerification{}, err
	}
	switch {
	case anchor == nil:
		out.FirstBroken, out.Reason = fmt.Sprintf("seq:%d", from.Seq), "truncated"
		return out, nil
	case anchor.Hash != from.Hash ||
		auditHash(anchor.Seq, ms(anchor.At), anchor.ID, anchor.Actor, anchor.Action, anchor.ObjectType,
			anchor.ObjectID, anchor.Detail, anchor.PrevHash) != anchor.Hash:
		out.FirstBroken, out.Reason = anchor.ID, "anchor"
		return out, nil
	}
	return s.verifyChainFrom(ctx, from.Seq+1, anchor)
}

// verifyChainFrom checks the rows from seq start on; prev is the row
// before start (nil: start is taken as the window's first row and must be
// there).
func (s *Store) verifyChainFrom(ctx context.Context, start int64, prev *ChainedAuditEvent) (AuditVerification, error) {
	out := AuditVerification{}
	if prev != nil && prev.Seq > 0 {
		out.HeadSeq, out.HeadHash = prev.Seq, prev.Hash
	}
	want := start
	err := s.streamAudit(ctx, sqlAuditChainCols+`WHERE seq >= ? ORDER BY seq`, []any{start}, func(r ChainedAuditEvent) error {
		reason := ""
		switch {
		case r.Seq != want:
			reason = "gap"
		case prev != nil && r.PrevHash != prev.Hash:
			reason = "prev_hash"
		case auditHash(r.Seq, ms(r.At), r.ID, r.Actor, r.Action, r.ObjectType, r.ObjectID, r.Detail, r.PrevHash) != r.Hash:
			reason = "hash"
		}
		out.Checked++
		if reason != "" {
			out.FirstBroken, out.Reason = r.ID, reason
			return errStopWalk
		}
		prev, want = &r, r.Seq+1
		out.HeadSeq, out.HeadHash = r.Seq, r.Hash
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return AuditVerification{}, err
	}
	out.OK = out.FirstBroken == ""
	return out, nil
}

var errStopWalk = errors.New("stop")

// ExportAudit streams every audit event at or after since (all when zero)
// to fn: rows from before the chain first (by time), then the chain in seq
// order.
func (s *Store) ExportAudit(ctx context.Context, since time.Time, fn func(ChainedAuditEvent) error) error {
	q := sqlAuditChainCols + `WHERE seq IS NULL`
	args := []any{}
	if !since.IsZero() {
		q += ` AND at >= ?`
		args = append(args, ms(since))
	}
	if err := s.streamAudit(ctx, q+` ORDER BY at, id`, args, fn); err != nil {
		return err
	}
	return s.walkAuditChain(ctx, since, false, fn)
}

// walkAuditChain streams the chained rows in seq order from
// auditChainStart.
func (s *Store) walkAuditChain(ctx context.Context, since time.Time, anchor bool, fn func(ChainedAuditEvent) error) error {
	start, ok, err := s.auditChainStart(ctx, since, anchor)
	if err != nil || !ok {
		return err
	}
	return s.streamAudit(ctx, sqlAuditChainCols+`WHERE seq >= ? ORDER BY seq`, []any{start}, fn)
}

// auditChainStart is the seq a walk starts at: 1 without since; else the
// first row at or after since, or, with anchor, the one before it. ok is
// false when no chained row is at or after since.
func (s *Store) auditChainStart(ctx context.Context, since time.Time, anchor bool) (int64, bool, error) {
	if since.IsZero() {
		return 1, true, nil
	}
	var min sql.NullInt64
	err := s.db.WithContext(ctx).Raw(`SELECT MIN(seq) FROM audit_events WHERE seq IS NOT NULL AND at >= ?`,
		ms(since)).Row().Scan(&min)
	if err != nil {
		return 0, false, classify(err, "audit chain")
	}
	if !min.Valid {
		return 0, false, nil
	}
	start := min.Int64
	if anchor && start > 1 {
		start--
	}
	return start, true, nil
}

// streamAudit runs q and hands fn one row at a time.
func (s *Store) streamAudit(ctx context.Context, q string, args []any, fn func(ChainedAuditEvent) error) error {
	rows, err := s.db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return classify(err, "audit events")
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          ChainedAuditEvent
			at         int64
			seq        sql.NullInt64
			prev, hash sql.NullString
		)
		if err := rows.Scan(&r.ID, &at, &r.Actor, &r.Action, &r.ObjectType, &r.ObjectID, &r.Detail,
			&seq, &prev, &hash); err != nil {
			return classify(err, "audit events")
		}
		r.At, r.Seq, r.PrevHash, r.Hash = fromMS(at), seq.Int64, prev.String, hash.String
		if err := fn(r); err != nil {
			return err
		}
	}
	return classify(rows.Err(), "audit events")
}
