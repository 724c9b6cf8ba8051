package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Change announcements: on PostgreSQL every write that changes what a
// replica's decision core sees issues pg_notify on ChangeChannel inside its
// transaction. PostgreSQL delivers it at commit (never for a rolled-back
// transaction, and once per topic per transaction), so other replicas refresh
// within milliseconds instead of at their next poll. The polls stay: they
// are the only mechanism on SQLite (one process, nothing to announce to) and
// the safety net for notifications lost while a listener reconnects.
const (
	// ChangeChannel is the PostgreSQL LISTEN/NOTIFY channel.
	ChangeChannel = "gatehouse_changes"

	// TopicDevices: a device or certificate changed (revocation, suspension,
	// enrollment, renewal, edit, deletion).
	TopicDevices = "devices"
	// TopicPolicy: a policy version was activated.
	TopicPolicy = "policy"
	// TopicCRL: a new CRL was stored.
	TopicCRL = "crl"
)

// Topics lists every topic, e.g. to refresh everything after a reconnect.
var Topics = []string{TopicDevices, TopicPolicy, TopicCRL}

// ErrNoListen is returned by Listen on SQLite, which has no notifications;
// a single SQLite process changes its own state directly.
var ErrNoListen = errors.New("store: change notifications need PostgreSQL")

const (
	sqlNotify = `SELECT pg_notify(?, ?)`
	// sqlInsertCertNotify is sqlInsertCert announcing TopicDevices as well,
	// for the enrollment path (one round trip fewer than notifyEx).
	sqlInsertCertNotify = sqlInsertCert + ` RETURNING pg_notify('` + ChangeChannel + `', '` + TopicDevices + `')`
)

// notify announces topic when db's transaction commits (or at once, for db
// outside a transaction). It does nothing on SQLite.
func (s *Store) notify(db *gorm.DB, topic string) error {
	if !s.postgres {
		return nil
	}
	return classify(db.Exec(sqlNotify, ChangeChannel, topic).Error, "change notification")
}

// notifyEx is notify for the hand-written-SQL transactions of writeSQL.
func (s *Store) notifyEx(ctx context.Context, ex execer, topic string) error {
	if !s.postgres {
		return nil
	}
	_, err := ex.ExecContext(ctx, sqlNotify, ChangeChannel, topic)
	return classify(err, "change notification")
}

// notifyAfter announces topic after a single autocommitted statement. The
// change is already committed, so a failure here is not the caller's: it is
// dropped and the other replicas' polls pick the change up.
func (s *Store) notifyAfter(ctx context.Context, topic string) {
	_ = s.notify(s.db.WithContext(ctx), topic)
}

// Listen calls fn with the topic of every change announcement other writers
// (this process included) commit, until ctx ends; it then returns nil. It
// uses a connection of its own and reconnects after errors with backoff
// capped at listenMaxBackoff; after every (re)connect it calls fn once for
// each of Topics, because announcements made while it was not listening are
// lost. fn runs on Listen's goroutine and should only wake something up.
//
// On SQLite it returns ErrNoListen at once.
func (s *Store) Listen(ctx context.Context, fn func(topic string)) error {
	if !s.postgres {
		return ErrNoListen
	}
	backoff := listenMinBackoff
	for {
		connected, err := s.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = listenMinBackoff
		}
		s.log.Warn("change notifications interrupted; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
	// listenAppName marks the listening connection in pg_stat_activity.
	listenAppName = "gatehouse-listen"
)

// listenOnce connects, listens and delivers until an error; connected
// reports whether LISTEN succeeded (so the backoff restarts).
func (s *Store) listenOnce(ctx context.Context, fn func(topic string)) (connected bool, err error) {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return false, err
	}
	cfg.RuntimeParams["application_name"] = listenAppName
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ChangeChannel}.Sanitize()); err != nil {
		return false, err
	}
	for _, t := range Topics {
		fn(t)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		fn(n.Payload)
	}
}
