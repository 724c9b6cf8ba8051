package revoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// SupersededStore revokes superseded certificates whose grace has ended
// (store.RevokeSupersededDue): a conditional UPDATE, so replicas may sweep
// at once and each certificate is revoked and audited exactly once.
type SupersededStore interface {
	RevokeSupersededDue(ctx context.Context, at time.Time, limit int, audit func(store.Certificate) store.AuditEvent) ([]store.Certificate, error)
}

// SweeperConfig wires a Sweeper.
type SweeperConfig struct {
	Store SupersededStore
	// CRL, when set, is republished after a sweep that revoked anything.
	CRL CRL
	// Interval is how often Run sweeps (default 30s): a superseded
	// certificate is revoked at most this long after its grace ends.
	Interval time.Duration
	// Step is how many certificates one transaction revokes (default 500).
	Step int
	// CRLWait bounds a sweep's wait for the CRL (default 15s); a slower
	// publication goes on in the background and the CRL's own loop retries
	// a failed one.
	CRLWait time.Duration
	Log     *slog.Logger
	Now     func() time.Time
}

// Sweeper revokes, with reason superseded, the certificates renewals
// replaced once their profile's superseded grace has passed, so that a
// broker checking the CRL or OCSP stops accepting a replaced key.
type Sweeper struct{ cfg SweeperConfig }

// NewSweeper returns a Sweeper.
func NewSweeper(cfg SweeperConfig) (*Sweeper, error) {
	if cfg.Store == nil {
		return nil, errors.New("revoke: the sweeper needs a Store")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Step <= 0 {
		cfg.Step = 500
	}
	if cfg.CRLWait <= 0 {
		cfg.CRLWait = 15 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sweeper{cfg: cfg}, nil
}

// Run sweeps every Interval until ctx ends. Failures are logged and retried
// at the next sweep; they never stop it.
func (w *Sweeper) Run(ctx context.Context) error {
	loop.RunNow(ctx, w.cfg.Interval, nil, func(ctx context.Context) {
		if _, err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.cfg.Log.Error("revoking superseded certificates failed", "err", err)
		}
	})
	return nil
}

// Sweep revokes every superseded certificate whose grace has ended, in
// steps of Step, each committed with its audit events, then has the CRL
// republished if it revoked any. It returns how many it revoked.
func (w *Sweeper) Sweep(ctx context.Context) (int, error) {
	now := w.cfg.Now()
	audit := func(c store.Certificate) store.AuditEvent {
		d := fmt.Sprintf("device=%s reason=superseded(%d)", c.DeviceID, store.ReasonSuperseded)
		if c.RevokeAfter != nil {
			d += " grace_ended=" + c.RevokeAfter.UTC().Format(time.RFC3339)
		}
		return store.AuditEvent{Actor: "system:superseded-grace", Action: "certificate.revoke",
			ObjectType: "certificate", ObjectID: c.Serial, Detail: d}
	}
	total := 0
	var err error
	for ctx.Err() == nil {
		var got []store.Certificate
		got, err = w.cfg.Store.RevokeSupersededDue(ctx, now, w.cfg.Step, audit)
		total += len(got)
		if err != nil || len(got) < w.cfg.Step {
			break
		}
	}
	if total > 0 {
		w.cfg.Log.Info("revoked superseded certificates after their grace", "count", total)
		if w.cfg.CRL != nil {
			cctx, cancel := context.WithTimeout(ctx, w.cfg.CRLWait)
			perr := w.cfg.CRL.Publish(cctx)
			cancel()
			if perr != nil && err == nil {
				err = fmt.Errorf("revoked %d superseded certificates, but the CRL was not republished yet: %w", total, perr)
			}
		}
	}
	return total, err
}
