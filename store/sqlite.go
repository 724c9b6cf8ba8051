package store

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/migrator"
	"gorm.io/gorm/schema"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDialector is a minimal gorm dialector over modernc.org/sqlite.
//
// gorm.io/driver/sqlite links the cgo mattn driver even when another driver
// is used; Gatehouse stays pure Go, so this file carries the few dialect
// hooks gorm needs. Schema changes come from SQL migrations, so the migrator
// is gorm's generic one and is never used to create tables.
type sqliteDialector struct{ conn *sql.DB }

func (sqliteDialector) Name() string { return "sqlite" }

func (d sqliteDialector) Initialize(db *gorm.DB) error {
	db.ConnPool = d.conn
	callbacks.RegisterDefaultCallbacks(db, &callbacks.Config{
		CreateClauses:        []string{"INSERT", "VALUES", "ON CONFLICT", "RETURNING"},
		UpdateClauses:        []string{"UPDATE", "SET", "FROM", "WHERE", "RETURNING"},
		DeleteClauses:        []string{"DELETE", "FROM", "WHERE", "RETURNING"},
		LastInsertIDReversed: true,
	})
	// SQLite has no row locks; a FOR UPDATE clause would be a syntax error.
	db.ClauseBuilders["FOR"] = func(c clause.Clause, b clause.Builder) {}
	return nil
}

func (d sqliteDialector) Migrator(db *gorm.DB) gorm.Migrator {
	return migrator.Migrator{Config: migrator.Config{DB: db, Dialector: d}}
}

func (sqliteDialector) DataTypeOf(f *schema.Field) string {
	switch f.DataType {
	case schema.Bool, schema.Int, schema.Uint:
		return "INTEGER"
	case schema.Float:
		return "REAL"
	case schema.Bytes:
		return "BLOB"
	default:
		return "TEXT"
	}
}

func (sqliteDialector) DefaultValueOf(*schema.Field) clause.Expression {
	return clause.Expr{SQL: "NULL"}
}

func (sqliteDialector) BindVarTo(w clause.Writer, _ *gorm.Statement, _ any) { _ = w.WriteByte('?') }

func (sqliteDialector) QuoteTo(w clause.Writer, s string) {
	_ = w.WriteByte('`')
	_, _ = w.WriteString(strings.ReplaceAll(s, "`", "``"))
	_ = w.WriteByte('`')
}

func (sqliteDialector) Explain(sql string, vars ...any) string {
	return logger.ExplainSQL(sql, nil, `"`, vars...)
}

// sqliteDSN turns a file path into a DSN with the pragmas Gatehouse needs for
// several concurrent writers: WAL so readers never block the writer,
// busy_timeout so writers queue instead of failing, synchronous=NORMAL (safe
// with WAL), foreign keys on, and IMMEDIATE transactions so a transaction that
// will write takes the lock up front rather than failing on upgrade.
//
// The path is escaped for the URI: unescaped, a '?' or '#' in it would end the
// file name (and drop the pragmas) and a '%' would start an escape.
func sqliteDSN(path string) string {
	if strings.HasPrefix(path, "file:") {
		return path
	}
	return "file:" + uriPathEscaper.Replace(path) + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
}

var uriPathEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// sqliteFilePath is the file a DSN names, or "" for an in-memory database.
func sqliteFilePath(dsn string) string {
	rest, isURI := strings.CutPrefix(dsn, "file:")
	if !isURI {
		if dsn == ":memory:" {
			return ""
		}
		return dsn
	}
	path, query, _ := strings.Cut(rest, "?")
	if q, err := url.ParseQuery(query); err == nil && q.Get("mode") == "memory" {
		return ""
	}
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	if path == "" || path == ":memory:" {
		return ""
	}
	return path
}

// sqliteOwnerOnly makes the database file, and its WAL and shared-memory
// files if present, readable by their owner only: the database holds token,
// password and session hashes and the audit trail. SQLite would create the
// file with the process umask (typically 0644) and gives the -wal and -shm
// files it creates later the database file's mode, so creating the file
// 0600 before SQLite opens it covers all three. Files left group- or
// world-readable by an earlier version are tightened.
func sqliteOwnerOnly(dsn string, log *slog.Logger) error {
	path := sqliteFilePath(dsn)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return fmt.Errorf("create sqlite file: %w", err)
		}
	case !errors.Is(err, os.ErrExist):
		return fmt.Errorf("create sqlite file: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("sqlite file mode: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, st.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("sqlite file mode: %w", err)
			}
			log.Info("database file made readable by its owner only", "file", p, "was", st.Mode().Perm().String())
		}
	}
	return nil
}

func sqliteErrCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

func isSQLiteUnique(code int) bool {
	return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isSQLiteFK(code int) bool { return code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }
