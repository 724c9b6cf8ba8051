package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Cert is one certificate row SeedCertificates writes. Status defaults to
// "revoked" when RevokedAt is set and "active" otherwise.
type Cert struct {
	Serial    string // hex, as the store keys it
	NotAfter  time.Time
	Status    string
	RevokedAt time.Time
	Reason    int
	// PEM is the certificate itself, for readers that check what it says
	// (OCSP checks its issuer); empty by default.
	PEM string
}

// RevokedCerts returns n revoked certificate rows with random positive
// 16-byte serials (like the CA's), valid for 30 more days from now, revoked
// a second apart going back from now, reasons cycling through 0–5: the
// shape of a large CRL for benchmarks.
func RevokedCerts(n int, now time.Time) []Cert {
	certs := make([]Cert, n)
	var raw [16]byte
	for i := range certs {
		_, _ = rand.Read(raw[:])
		raw[0] = raw[0]&0x7f | 0x01 // positive and 16 bytes long
		certs[i] = Cert{Serial: hex.EncodeToString(raw[:]), NotAfter: now.Add(30 * 24 * time.Hour),
			RevokedAt: now.Add(-time.Duration(i) * time.Second), Reason: i % 6}
	}
	return certs
}

// SeedCertificates writes certificate rows straight into a migrated
// Gatehouse database (store.New has run on dsn), in one transaction with
// multi-row INSERTs: tests and benchmarks that need a million revoked
// certificates cannot afford a million enrollments. The rows belong to one
// device, "seed-device" in fleet and profile "seed", created if missing.
func SeedCertificates(t testing.TB, dsn string, certs []Cert) {
	t.Helper()
	pg := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	driver, src := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_pragma=cache_size(-262144)&_pragma=synchronous(OFF)&_txlock=immediate"
	if pg {
		driver, src = "pgx", dsn
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatalf("testdb: open %s: %v", driver, err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("testdb: begin: %v", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UnixMilli()
	seedDevice(t, ctx, tx, now)
	insertCerts(t, ctx, tx, pg, certs, now)
	if err := tx.Commit(); err != nil {
		t.Fatalf("testdb: commit: %v", err)
	}
}

// seedDevice makes fleet and profile "seed" and device "seed-device",
// unless they exist.
func seedDevice(t testing.TB, ctx context.Context, tx *sql.Tx, now int64) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO fleets (name, description, created_at, updated_at) VALUES ('seed', '', %d, %d) ON CONFLICT DO NOTHING`,
		`INSERT INTO profiles (name, key_types, validity_seconds, renew_window_seconds, roles, created_at, updated_at)
VALUES ('seed', 'P-256', 86400, 3600, '', %d, %d) ON CONFLICT DO NOTHING`,
		`INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
VALUES ('seed-device', 'seed', 'seed', 'active', '{}', %d, %d) ON CONFLICT DO NOTHING`,
	} {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(q, now, now)); err != nil {
			t.Fatalf("testdb: seed: %v", err)
		}
	}
}

// insertCerts inserts certs as rows of "seed-device", 1000 a statement.
func insertCerts(t testing.TB, ctx context.Context, tx *sql.Tx, pg bool, certs []Cert, now int64) {
	t.Helper()
	const cols, perStmt = 9, 1000
	var (
		b    strings.Builder
		args = make([]any, 0, cols*perStmt)
	)
	ph := func() string {
		if pg {
			return "$" + strconv.Itoa(len(args)+1)
		}
		return "?"
	}
	flush := func() {
		if len(args) == 0 {
			return
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			t.Fatalf("testdb: insert certificates: %v", err)
		}
		b.Reset()
		args = args[:0]
	}
	for _, c := range certs {
		if len(args) == 0 {
			b.WriteString(`INSERT INTO certificates (serial, fingerprint, device_id, not_before, not_after, status, pem,
revoked_at, revocation_reason, created_at) VALUES `)
		} else {
			b.WriteByte(',')
		}
		status, revokedAt, reason := c.row()
		b.WriteByte('(')
		for i, v := range []any{c.Serial, "seed-fp-" + c.Serial, nil, now - 3600_000, c.NotAfter.UnixMilli(), status,
			c.PEM, revokedAt, reason, now} {
			if i > 0 {
				b.WriteByte(',')
			}
			switch i {
			case 2:
				b.WriteString("'seed-device'")
			default:
				b.WriteString(ph())
				args = append(args, v)
			}
		}
		b.WriteByte(')')
		if len(args) >= cols*perStmt {
			flush()
		}
	}
	flush()
}

// row returns c's status (defaulted as Cert says), revocation time and
// reason as stored; the last two are NULL when c is not revoked.
func (c Cert) row() (status string, revokedAt, reason any) {
	status = c.Status
	if !c.RevokedAt.IsZero() {
		revokedAt, reason = c.RevokedAt.UnixMilli(), c.Reason
		if status == "" {
			status = "revoked"
		}
	}
	if status == "" {
		status = "active"
	}
	return status, revokedAt, reason
}
