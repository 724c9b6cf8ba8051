package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestWriterReopens: a writer connection that broke is replaced on the next
// write rather than failing every write after it.
func TestWriterReopens(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Config{DSN: filepath.Join(t.TempDir(), "gatehouse.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateFleet(ctx, Fleet{Name: "f1"}, nil); err != nil {
		t.Fatal(err)
	}
	s.writeMu.Lock()
	w, err := s.sqliteWriter(ctx)
	if err == nil {
		err = w.conn.Close() // what a broken connection looks like to database/sql
	}
	s.writeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	exec := func() error {
		return s.writeSQL(ctx, func(ex execer) error {
			_, err := ex.ExecContext(ctx, "INSERT INTO fleets (name, created_at, updated_at) VALUES ('f2', 0, 0)")
			return err
		})
	}
	if err := exec(); err == nil {
		t.Fatal("write on a closed writer connection succeeded")
	}
	if err := exec(); err != nil {
		t.Fatalf("write after the writer broke: %v", err)
	}
	if _, err := s.GetFleet(ctx, "f2"); err != nil {
		t.Fatal(err)
	}
}
