// Package migrations holds the versioned SQL schema of the Gatehouse store.
//
// These files are the single source of truth for the schema on every
// database: the store never auto-migrates from Go structs. The SQL is kept to
// the subset that SQLite and PostgreSQL share (TEXT, BIGINT, INTEGER,
// BOOLEAN-free) so one set of files serves both; times are stored as Unix
// milliseconds in BIGINT columns for the same reason.
package migrations

import "embed"

// FS holds the goose migration files.
//
//go:embed *.sql
var FS embed.FS
