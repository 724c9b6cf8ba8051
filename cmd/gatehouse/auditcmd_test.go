package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/store"
)

// runCLI runs gatehouse in-process with args; main exits 1 whenever
// Execute returns an error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestAuditVerifyAndExportCLI: `audit export` streams one JSON line per row
// with its hashes, `audit verify` succeeds on the intact chain and fails,
// naming the row, once a row is edited in the database.
func TestAuditVerifyAndExportCLI(t *testing.T) {
	dir, dsn := auditDataDir(t, 5)

	out, err := runCLI(t, "audit", "export", "--data-dir", dir, "--format", "jsonl")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("export printed %d lines, want 5:\n%s", len(lines), out)
	}
	var prev auditLine
	for i, l := range lines {
		var e auditLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		if e.Seq != int64(i+1) || e.ID != fmt.Sprintf("ev-%d", i+1) || len(e.Hash) != 64 ||
			(i == 0 && e.PrevHash != store.GenesisHash) || (i > 0 && e.PrevHash != prev.Hash) {
			t.Errorf("line %d = %+v", i, e)
		}
		prev = e
	}
	if out, err := runCLI(t, "audit", "export", "--data-dir", dir, "--format", "csv"); err == nil {
		t.Errorf("export --format csv succeeded: %s", out)
	}

	out, err = runCLI(t, "audit", "verify", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "5 rows checked") {
		t.Fatalf("verify on an intact chain: %v\n%s", err, out)
	}

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_events SET actor = 'mallory' WHERE id = 'ev-3'`); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "audit", "verify", "--data-dir", dir)
	if err == nil || !strings.Contains(describe(err), "row ev-3 ") {
		t.Fatalf("verify on an edited chain: err %v (want one naming ev-3)\n%s", err, out)
	}
}

// TestAuditVerifyExpectHead: a deleted tail leaves a chain that verifies on
// its own; the head printed by an earlier run is what catches it.
func TestAuditVerifyExpectHead(t *testing.T) {
	dir, dsn := auditDataDir(t, 4)
	out, err := runCLI(t, "audit", "verify", "--data-dir", dir)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	var seq int64
	var hash string
	if _, err := fmt.Sscanf(out[strings.Index(out, "head seq"):], "head seq %d hash %s", &seq, &hash); err != nil || seq != 4 {
		t.Fatalf("verify printed no head (seq %d, %v):\n%s", seq, err, out)
	}
	head := fmt.Sprintf("%d:%s", seq, hash)
	if out, err := runCLI(t, "audit", "verify", "--data-dir", dir, "--expect-head", head); err != nil {
		t.Fatalf("verify --expect-head on the same chain: %v\n%s", err, out)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM audit_events WHERE id IN ('ev-3', 'ev-4')`); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "audit", "verify", "--data-dir", dir); err != nil {
		t.Fatalf("without the head a cut tail verifies (that is the point): %v\n%s", err, out)
	}
	for _, tc := range []struct{ head, want string }{
		{head, "tail was removed"},
		{"4:" + strings.Repeat("g", 64), "--expect-head must be"},
		{"0:" + hash, "--expect-head must be"},
	} {
		out, err := runCLI(t, "audit", "verify", "--data-dir", dir, "--expect-head", tc.head)
		if err == nil || !strings.Contains(describe(err), tc.want) {
			t.Errorf("--expect-head %s: err %v, want %q\n%s", tc.head, err, tc.want, out)
		}
	}
}

// auditDataDir is a data directory whose SQLite database holds n audit
// rows ev-1 … ev-n, and that database's path.
func auditDataDir(t *testing.T, n int) (dir, dsn string) {
	t.Helper()
	dir = t.TempDir()
	dsn = filepath.Join(dir, "gatehouse.db")
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := st.AppendAudit(ctx, store.AuditEvent{ID: fmt.Sprintf("ev-%d", i), Actor: "admin",
			Action: "test", ObjectType: "device", ObjectID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, dsn
}
