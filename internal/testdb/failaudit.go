package testdb

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// FailAuditInserts makes every later INSERT into audit_events of the
// migrated database at dsn fail, with a trigger: the test's way to prove a
// change and its audit event commit together or not at all.
func FailAuditInserts(t testing.TB, dsn string) {
	t.Helper()
	driver, src, stmts := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)", []string{
		`CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit insert refused by test'); END`,
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		driver, src, stmts = "pgx", dsn, []string{
			`CREATE FUNCTION test_fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit insert refused by test'; END $$`,
			`CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION test_fail_audit()`,
		}
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatalf("testdb: open %s: %v", driver, err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("testdb: fail audit inserts: %v", err)
		}
	}
}
