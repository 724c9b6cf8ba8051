//go:build unix

package store_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSQLiteFileMode: the SQLite database and its WAL and shared-memory
// files are readable by their owner only (0600) under the usual umask 022,
// both when the store creates the database and when it opens one an
// earlier version left 0644. File modes mean nothing to PostgreSQL.
func TestSQLiteFileMode(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	check := func(t *testing.T, path string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(p), err)
				continue
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
			}
		}
	}
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s, err := store.New(ctx, store.Config{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFleet(ctx, store.Fleet{Name: "f1"}, nil); err != nil {
		t.Fatal(err)
	}
	check(t, path) // open: the WAL and shared-memory files exist
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A database an earlier version created 0644, with its WAL files left
	// behind (as after a crash).
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			_ = f.Close() // an empty WAL and shared-memory file are valid
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err = store.New(ctx, store.Config{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetFleet(ctx, "f1"); err != nil {
		t.Fatalf("the earlier database's data: %v", err)
	}
	if _, err := s.CreateFleet(ctx, store.Fleet{Name: "f2"}, nil); err != nil {
		t.Fatal(err)
	}
	check(t, path)
}
