package store

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Postgres reports whether the store is a PostgreSQL database: backups of
// it are pg_dump's job, not Snapshot's.
func (s *Store) Postgres() bool { return s.postgres }

// Snapshot writes a consistent copy of an SQLite database to path, which
// must not exist, while the database stays in use: VACUUM INTO reads in one
// transaction (WAL: writers go on, and the copy holds every transaction
// committed before it began and nothing after). The copy has mode 0600.
// PostgreSQL has no snapshot here: fault.InvalidArgument names pg_dump.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	if s.postgres {
		return fault.New(fault.InvalidArgument, "a PostgreSQL database is backed up with pg_dump, not by gatehouse")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return fault.New(fault.AlreadyExists, "snapshot target %s exists", path)
	}
	// VACUUM INTO creates the file with the process umask; create it empty
	// with 0600 first (SQLite writes into an empty file).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := s.sql.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		_ = os.Remove(path)
		return classify(err, "snapshot")
	}
	return nil
}
