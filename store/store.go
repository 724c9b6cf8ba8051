// Package store is the Gatehouse persistence layer: the only package that
// knows gorm and SQL. It speaks plain domain types (Device, Certificate, …);
// no gorm model leaves this package.
//
// Two backends share one schema (package migrations): SQLite, embedded and
// the default, and PostgreSQL for several stateless replicas on one database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/migrations"
)

// Config selects and tunes the database.
type Config struct {
	// DSN is a postgres:// URL or an SQLite file path.
	DSN string
	// MaxOpenConns caps the pool; 0 picks a default per backend.
	MaxOpenConns int
	// Logger receives migration progress; nil discards it.
	Logger *slog.Logger
}

// Store is a handle on the Gatehouse database. It is safe for concurrent use.
type Store struct {
	db       *gorm.DB
	sql      *sql.DB
	postgres bool
	// dsn and log serve Listen's own connection (notify.go).
	dsn string
	log *slog.Logger
	now func() time.Time
	// writeMu serialises write transactions on SQLite, which has one writer
	// anyway: waiting on a mutex is far cheaper than SQLite's busy handler,
	// which sleeps in millisecond steps. PostgreSQL writes run concurrently.
	writeMu sync.Mutex
	// writer is SQLite's write connection (writer.go), guarded by writeMu;
	// nil until first used.
	writer *sqliteWriter
	// readStmts holds SQLite read statements prepared on the pool (queryRow).
	readStmts sync.Map
	// ckpt checkpoints SQLite's WAL in the background (checkpoint.go); nil
	// on PostgreSQL.
	ckpt *checkpointer
}

// write runs fn in a transaction, on SQLite serialised in-process and run on
// the writer connection.
func (s *Store) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if s.postgres {
		return s.db.WithContext(ctx).Transaction(fn)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	w, err := s.sqliteWriter(ctx)
	if err != nil {
		return classify(err, "database")
	}
	db := s.db.WithContext(ctx)
	db.Statement.ConnPool = w.conn
	if err := db.Transaction(fn); err != nil {
		s.dropBrokenWriter(err)
		return err
	}
	s.wrote()
	return nil
}

// IsPostgres reports whether dsn selects the PostgreSQL backend.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func (c *Config) setDefaults() {
	if c.MaxOpenConns == 0 {
		if IsPostgres(c.DSN) {
			c.MaxOpenConns = 20
		} else {
			c.MaxOpenConns = 8
		}
	}
	if !IsPostgres(c.DSN) && c.MaxOpenConns < 2 {
		// The writer keeps one connection to itself; reads need another.
		c.MaxOpenConns = 2
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// New opens the database, applies pending migrations and returns a Store.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if cfg.DSN == "" {
		return nil, fault.New(fault.InvalidArgument, "database DSN is empty")
	}
	s := &Store{postgres: IsPostgres(cfg.DSN), dsn: cfg.DSN, log: cfg.Logger, now: time.Now}
	gcfg := &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		// Statements are prepared once per connection and reused: parsing SQL
		// was a sixth of an enrollment's cost. On SQLite gorm keeps them; on
		// PostgreSQL pgx does (its per-connection statement cache), and
		// gorm's cache must stay off there: a transaction that meets a
		// statement another goroutine is preparing waits for it while
		// holding its connection, and that preparation waits for a free
		// connection of the pool, so with every connection in such a
		// transaction the process stopped for good (go-gorm/gorm#7465; 60
		// concurrent renew+revoke pairs hit it, TestRenewRevokeRace).
		PrepareStmt: !s.postgres,
		NowFunc:     func() time.Time { return s.now().UTC() },
	}
	var (
		dialector gorm.Dialector
		dialect   goose.Dialect
	)
	if s.postgres {
		dialector = postgres.New(postgres.Config{DSN: cfg.DSN})
		dialect = goose.DialectPostgres
	} else {
		if err := sqliteOwnerOnly(cfg.DSN, cfg.Logger); err != nil {
			return nil, err
		}
		conn, err := sql.Open("sqlite", sqliteDSN(cfg.DSN))
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		dialector = sqliteDialector{conn: conn}
		dialect = goose.DialectSQLite3
	}
	db, err := gorm.Open(dialector, gcfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s.db = db
	if s.sql, err = db.DB(); err != nil {
		return nil, err
	}
	s.sql.SetMaxOpenConns(cfg.MaxOpenConns)
	s.sql.SetMaxIdleConns(cfg.MaxOpenConns)
	s.sql.SetConnMaxIdleTime(5 * time.Minute)
	if err := s.sql.PingContext(ctx); err != nil {
		_ = s.sql.Close()
		return nil, fmt.Errorf("connect database: %w", err)
	}
	if err := s.migrate(ctx, dialect, cfg.Logger); err != nil {
		_ = s.sql.Close()
		return nil, err
	}
	if !s.postgres {
		s.startCheckpointer()
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, dialect goose.Dialect, log *slog.Logger) error {
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.postgres {
		// Several replicas may start at once on one database: one migrates,
		// the others wait on the advisory lock.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, s.sql, migrations.FS, opts...)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// Close releases the database connections.
func (s *Store) Close() error {
	s.stopCheckpointer()
	s.writeMu.Lock()
	_ = s.writer.close()
	s.writer = nil
	s.writeMu.Unlock()
	s.readStmts.Range(func(_, st any) bool { _ = st.(*sql.Stmt).Close(); return true })
	return s.sql.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sql.PingContext(ctx) }

// SetClock replaces the store's clock; tests use it to move time.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// classify maps driver errors to fault codes. what names the object for the message.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fault.Wrap(err, fault.NotFound, "%s not found", what)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return fault.Wrap(err, fault.AlreadyExists, "%s already exists", what)
		case "23503":
			return fault.Wrap(err, fault.Conflict, "%s refers to a missing or in-use object", what)
		case "23514":
			return fault.Wrap(err, fault.InvalidArgument, "%s has an invalid value", what)
		case "22021", "22P05":
			// character_not_in_repertoire, untranslatable_character: a NUL
			// or invalid UTF-8 in a text value. The API refuses such text at
			// the edge (api/text.go); here it is still the caller's input,
			// not a malfunction.
			return fault.Wrap(err, fault.InvalidArgument, "%s: text holds a NUL character or invalid UTF-8", what)
		}
	}
	if code, ok := sqliteErrCode(err); ok {
		switch {
		case isSQLiteUnique(code):
			return fault.Wrap(err, fault.AlreadyExists, "%s already exists", what)
		case isSQLiteFK(code):
			return fault.Wrap(err, fault.Conflict, "%s refers to a missing or in-use object", what)
		case code == 275: // SQLITE_CONSTRAINT_CHECK
			return fault.Wrap(err, fault.InvalidArgument, "%s has an invalid value", what)
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fault.Wrap(err, fault.Unavailable, "database request cancelled")
	}
	return fmt.Errorf("%s: %w", what, err)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func optMS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromOptMS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMS(*v)
	return &t
}

func joinList(v []string) string { return strings.Join(v, ",") }

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
