package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// writerCacheKiB is the page cache of SQLite's writer connection. An
// enrollment touches a leaf page of a dozen indexes, half of them keyed by
// random values (serials, fingerprints, device ids); with SQLite's default of
// 2 MiB those leaves were read from the file again on most writes once the
// database outgrew the cache. Only the writer keeps a cache worth sizing:
// every other connection drops its whole cache whenever it sees that
// another connection committed.
const writerCacheKiB = 64 << 10

// execer is what the hand-written write paths need from a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteWriter is the one connection that runs SQLite write transactions.
//
// SQLite has a single writer anyway (writeMu serialises writes in-process),
// and a connection of its own keeps two things warm that pooled connections
// lose: prepared statements (database/sql re-prepares a statement in every
// *sql.Tx, and gorm's PrepareStmt caches statements first used in a
// transaction as statements of that transaction, so each enrollment parsed
// its SQL again) and the page cache (see writerCacheKiB).
//
// Transactions are begun and ended with SQL on the connection rather than
// with database/sql's Tx, which would re-prepare every statement. The
// connection is used only with writeMu held.
type sqliteWriter struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func newSQLiteWriter(ctx context.Context, db *sql.DB) (*sqliteWriter, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite writer connection: %w", err)
	}
	// Both pragmas are per connection.
	for _, pragma := range []string{
		"PRAGMA cache_size = " + strconv.Itoa(-writerCacheKiB),
		"PRAGMA wal_autocheckpoint = " + strconv.Itoa(writerAutoCheckpoint), // see checkpoint.go
	} {
		if _, err := conn.ExecContext(ctx, pragma); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("sqlite writer connection: %w", err)
		}
	}
	return &sqliteWriter{conn: conn, stmts: make(map[string]*sql.Stmt)}, nil
}

// stmt returns query prepared on the writer connection, preparing it once.
func (w *sqliteWriter) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

func (w *sqliteWriter) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := w.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (w *sqliteWriter) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := w.stmt(ctx, query)
	if err != nil {
		// Only database/sql builds a *sql.Row; running the query unprepared
		// reports the same error through it.
		return w.conn.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// tx runs fn in an IMMEDIATE transaction on the writer connection; the
// caller holds writeMu. Errors from fn are returned as they are, those of
// BEGIN and COMMIT classified.
//
// ctx may end the wait for SQLite's write lock (another process may hold
// it), but once the transaction has begun it runs to its end: it is short,
// and the driver then needs no goroutine per statement to watch ctx.
func (w *sqliteWriter) tx(ctx context.Context, fn func(ex execer) error) (err error) {
	if _, err := w.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return classify(err, "database")
	}
	ctx = context.WithoutCancel(ctx)
	defer func() {
		if err == nil {
			return
		}
		// SQLite may have rolled back already (after some I/O errors); a
		// ROLLBACK that fails otherwise leaves the connection in an unknown
		// state, so it is dropped and the next write opens a new one.
		if _, rbErr := w.ExecContext(ctx, "ROLLBACK"); rbErr != nil &&
			!strings.Contains(rbErr.Error(), "no transaction is active") {
			w.discard()
		}
	}()
	if err := fn(w); err != nil {
		return err
	}
	if _, err = w.ExecContext(ctx, "COMMIT"); err != nil {
		return classify(err, "database")
	}
	return nil
}

// discard closes the statements and hands the connection back to the pool
// as broken, so that database/sql closes it.
func (w *sqliteWriter) discard() {
	for q, st := range w.stmts {
		_ = st.Close()
		delete(w.stmts, q)
	}
	_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	w.conn = nil
}

func (w *sqliteWriter) close() error {
	if w == nil || w.conn == nil {
		return nil
	}
	for _, st := range w.stmts {
		_ = st.Close()
	}
	return w.conn.Close()
}

// sqliteWriter returns the writer connection, opening it if needed. The
// caller holds writeMu.
func (s *Store) sqliteWriter(ctx context.Context) (*sqliteWriter, error) {
	if s.writer != nil && s.writer.conn != nil {
		return s.writer, nil
	}
	w, err := newSQLiteWriter(ctx, s.sql)
	if err != nil {
		return nil, err
	}
	s.writer = w
	return w, nil
}

// writeSQL runs fn in a transaction of hand-written SQL: on SQLite on the
// writer connection with its prepared statements, on PostgreSQL in a pooled
// transaction (pgx keeps statements prepared per connection itself).
func (s *Store) writeSQL(ctx context.Context, fn func(ex execer) error) error {
	if s.postgres {
		tx, err := s.sql.BeginTx(ctx, nil)
		if err != nil {
			return classify(err, "database")
		}
		if err := fn(pgExecer{tx}); err != nil {
			_ = tx.Rollback()
			return err
		}
		return classify(tx.Commit(), "database")
	}
	if err := ctx.Err(); err != nil {
		return classify(err, "database")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	w, err := s.sqliteWriter(ctx)
	if err != nil {
		return classify(err, "database")
	}
	if err := w.tx(ctx, fn); err != nil {
		s.dropBrokenWriter(err)
		return err
	}
	s.wrote()
	return nil
}

// dropBrokenWriter discards the writer connection after an error that says
// it is unusable, so that the next write opens a new one instead of failing
// for good. The caller holds writeMu.
func (s *Store) dropBrokenWriter(err error) {
	if brokenConn(err) && s.writer != nil && s.writer.conn != nil {
		s.writer.discard()
	}
}

func brokenConn(err error) bool {
	return errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn)
}

// readRow runs a single-row read on the enrollment path and scans it into
// dest. On SQLite it runs on the writer connection when no write is in
// progress: that connection's page cache is warm, while a pooled connection
// drops its cache whenever another connection committed, and so would read
// every page of the lookup from the file again after each enrollment. When
// a write is in progress the read goes to the pool rather than wait.
func (s *Store) readRow(ctx context.Context, query string, args []any, dest ...any) error {
	if !s.postgres && s.writeMu.TryLock() {
		w, err := s.sqliteWriter(ctx)
		if err == nil {
			err = w.QueryRowContext(ctx, query, args...).Scan(dest...)
			s.dropBrokenWriter(err)
		}
		s.writeMu.Unlock()
		if w != nil && !brokenConn(err) {
			return err
		}
	}
	return s.queryRow(ctx, query, args...).Scan(dest...)
}

// queryRow runs a hand-written read on the pool. On SQLite the statement is
// prepared once on the *sql.DB, which keeps it prepared on each pooled
// connection it ran on; on PostgreSQL pgx does the same by itself.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s.postgres {
		return s.sql.QueryRowContext(ctx, pgQuery(query), args...)
	}
	if st, ok := s.readStmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := s.sql.PrepareContext(ctx, query)
	if err != nil {
		return s.sql.QueryRowContext(ctx, query, args...) // reports the error
	}
	if prev, loaded := s.readStmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

// pgExecer runs the hand-written statements on PostgreSQL.
type pgExecer struct{ tx *sql.Tx }

func (p pgExecer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.tx.ExecContext(ctx, pgQuery(query), args...)
}

func (p pgExecer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.tx.QueryRowContext(ctx, pgQuery(query), args...)
}

var pgQueries sync.Map // query with ? placeholders → with $n

// pgQuery returns query with PostgreSQL's $1, $2, … for its ? placeholders.
// The queries are constants of this package with no ? inside literals.
func pgQuery(query string) string {
	if q, ok := pgQueries.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	pgQueries.Store(query, b.String())
	return b.String()
}
