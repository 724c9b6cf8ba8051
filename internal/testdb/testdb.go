// Package testdb gives tests a fresh database on every backend Gatehouse
// supports: a temporary SQLite file, and a PostgreSQL database created for
// the test and dropped after it.
//
// PostgreSQL comes from GATEHOUSE_TEST_POSTGRES, an admin DSN such as
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. When it is
// unset, CI (CI=true) uses that loopback default and fails if the server is
// not there; elsewhere the PostgreSQL cases are skipped.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// DefaultPostgres is the admin DSN CI uses when none is given.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Backend is one database to run a test against.
type Backend struct {
	Name string
	DSN  string
}

// SQLite returns a DSN for a new SQLite file in the test's temp dir.
func SQLite(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "gatehouse.db")
}

// adminDSN returns the PostgreSQL admin DSN, or "" when PostgreSQL tests are skipped.
func adminDSN() string {
	if dsn := os.Getenv("GATEHOUSE_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	if os.Getenv("CI") != "" {
		return DefaultPostgres
	}
	return ""
}

// Postgres creates a fresh database and returns its DSN; it is dropped when
// the test ends. It skips the test when no PostgreSQL is configured.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := adminDSN()
	if admin == "" {
		t.Skip("PostgreSQL not configured: set GATEHOUSE_TEST_POSTGRES (CI uses " + DefaultPostgres + ")")
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("open postgres admin connection: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gatehouse_test_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = db.Close()
		t.Fatalf("create test database on %s: %v", redact(admin), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
		_ = db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse postgres DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// All returns one backend per supported database; PostgreSQL is created lazily
// by calling Open on the returned backends inside a subtest.
func All() []string { return []string{"sqlite", "postgres"} }

// DSN returns a fresh database DSN for the named backend.
func DSN(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case "sqlite":
		return SQLite(t)
	case "postgres":
		return Postgres(t)
	}
	t.Fatalf("unknown backend %q", backend)
	return ""
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
